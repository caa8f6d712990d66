"""The desk's HTTP API, a shell like pages/: ``review/api/app.py`` builds the FastAPI app
(``create_app``), ``security.py`` checks tokens and scopes, ``schemas.py`` holds the bodies and
limits, ``batch.py`` takes ``POST /v1/posts`` into the ingest path, ``reads.py`` answers the
routes over one post and the decision feed. ``python -m review api`` serves it."""

"""``python -m review api``: serve the HTTP API (review/api/) with uvicorn.

Each worker process builds the app itself (``review.api.app:create_app``, a factory) and opens the
desk from the environment (``DATABASE_URL``, ``MEDIA_DIR``, ...), as the other commands do.
``--deliver`` also runs one webhook delivery worker (review/delivery.py) in a thread of this
process (the uvicorn supervisor when there are several workers), stopped with the API.
"""

from __future__ import annotations

import argparse

APP = "review.api.app:create_app"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    api = sub.add_parser(
        "api",
        help="serve the HTTP API (OpenAPI at /docs)",
        description="Serve the HTTP API with uvicorn on the desk of DATABASE_URL. Several API processes and "
        "the app may run at once against one Postgres.",
    )
    api.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    api.add_argument("--port", type=int, default=8000, help="default 8000")
    api.add_argument("--workers", type=_workers, default=1, help="worker processes (default 1)")
    api.add_argument(
        "--deliver", action="store_true", help="also run a webhook delivery worker (as python -m review deliver)"
    )
    api.set_defaults(handler=cmd_api)


def _workers(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= 64:
        raise argparse.ArgumentTypeError(f"not a number of workers from 1 to 64: {value!r}")
    return count


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from review import delivery
    from review.desk import open_desk

    desk = open_desk()  # a missing or out-of-date database fails here, in one line, not in each worker
    delivering = delivery.start_in_thread(desk.sessions, desk.settings) if args.deliver else None
    try:
        uvicorn.run(APP, factory=True, host=args.host, port=args.port, workers=args.workers)
    finally:
        if delivering is not None:
            delivering.stop()
        desk.engine.dispose()
    return 0

"""Posts and their images into the database: JSONL, CSV/TSV, folders of images, uploads, API payloads.

The record schema (see README): ``external_id`` (required), ``source``, ``text``, ``author``,
``created_at``, ``images`` (paths relative to the input file's folder; absolute ones only when allowed),
``metadata`` (a JSON object). Unknown fields are kept in ``metadata``.

Guarantees:
- ``(source, external_id)`` is unique: re-ingesting a post never duplicates it. A record of a
  post stored before counts as "already present" and changes nothing, unless its content (text,
  author, created_at, images) differs: that is reported, and with ``--update``
  (:class:`StorePolicy`) an undecided post takes the new content, as an ``update`` event in its
  history, while a decided one keeps what its moderator saw (``changes``);
- a bad record is rejected with its location (``file:line``) and a reason a person can act on,
  and the good records around it are stored; in a file, a bad optional field (``author``,
  ``created_at``) is left empty instead, with a warning kept in the post's metadata
  (``ingest_warnings``), the offending value shown;
- files whose names or headers do not say how to read them are read as the operator says
  (:class:`ReadOptions`: ``--format``, ``--map`` columns to fields, ``--image-path``,
  ``--no-quoting``), checked before anything is stored;
- a record is stored whole or not at all: if one of its images is bad, the post is rejected; an
  image file that is not there rejects it too, unless the operator says ``--missing-images
  skip`` (the post is stored with the images there are, the missing names kept on it);
- relative image paths may not leave the input's folder (no ``../`` or symlink escapes);
- text is read as UTF-8 (with or without BOM) or UTF-16/32 with a BOM unless the operator names
  the encoding; other text is refused, never guessed (a guess among legacy encodings stores
  mojibake), and a row or line with undecodable bytes is rejected alone;
- file names and other untrusted text in rejections and warnings are escaped to one line.

The package, in the order a record goes through it: ``readers`` (files and encodings → raw
records), ``records`` (validation and limits), ``store`` (batched storage, images; ``changes``: a record
for a post stored before), ``run`` (the
entry points and the audit row), ``uploads`` (the Ingest page's uploads and zip archives).
:func:`ingest_paths` is what ``python -m review ingest`` runs; :func:`ingest_records` takes
already-parsed records (the API entry point); :func:`ingest_upload` takes uploaded files.
"""

from review.ingest.readers import ReadOptions, parse_mapping
from review.ingest.records import IngestReport, PostRecord, Rejection
from review.ingest.run import Progress, audited_ingest, ingest_paths, ingest_records, read_paths
from review.ingest.store import MISSING_IMAGES, StorePolicy
from review.ingest.uploads import ingest_upload

__all__ = [
    "MISSING_IMAGES",
    "IngestReport",
    "PostRecord",
    "Progress",
    "ReadOptions",
    "Rejection",
    "StorePolicy",
    "audited_ingest",
    "ingest_paths",
    "ingest_records",
    "ingest_upload",
    "parse_mapping",
    "read_paths",
]

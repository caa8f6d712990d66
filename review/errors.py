"""Errors a moderator or operator can meet, each with a message that says what to do.

The CLI prints these without a traceback and exits non-zero; pages show them with st.error.
"""

from __future__ import annotations

# the root of the hierarchy and the database layer's errors live in db/errors.py (db imports nothing from review)
from db.errors import ConfigError as ConfigError
from db.errors import DatabaseUnavailable as DatabaseUnavailable
from db.errors import MigrationRefused as MigrationRefused
from db.errors import ReviewError as ReviewError
from db.errors import SchemaOutOfDate as SchemaOutOfDate


class MediaError(ReviewError):
    """An image could not be accepted (corrupt, unsupported, too large, …)."""


class MissingImageError(MediaError):
    """An image file named by a record is not there (``ingest --missing-images skip`` stores the
    post without it)."""


class IngestError(ReviewError):
    """An input file as a whole cannot be read (missing, undecodable, unknown format)."""

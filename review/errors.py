"""Errors a moderator or operator can meet, each with a message that says what to do.

The CLI prints these without a traceback and exits non-zero; pages show them with st.error.
"""

from __future__ import annotations


class ReviewError(Exception):
    """Base class of every error that is meant to be shown to a person."""


class ConfigError(ReviewError):
    """A setting is missing or malformed."""


class SchemaOutOfDate(ReviewError):
    """The database schema is not at the revision this code expects."""


class MediaError(ReviewError):
    """An image could not be accepted (corrupt, unsupported, too large, …)."""


class IngestError(ReviewError):
    """An input file as a whole cannot be read (missing, undecodable, unknown format)."""


class DatabaseUnavailable(ReviewError):
    """The database named by DATABASE_URL cannot be reached."""

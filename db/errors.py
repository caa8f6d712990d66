"""The errors a person can meet, at their root: ``ReviewError`` and the ones the database layer
raises itself. They live here, in the lowest layer, so that ``db`` imports nothing from
``review``; ``review.errors`` re-exports them beside the core's own errors.

The CLI prints these without a traceback and exits non-zero; pages show them with st.error.
"""

from __future__ import annotations


class ReviewError(Exception):
    """Base class of every error that is meant to be shown to a person."""


class ConfigError(ReviewError):
    """A setting is missing or malformed."""


class SchemaOutOfDate(ReviewError):
    """The database schema is not at the revision this code expects."""


class DatabaseUnavailable(ReviewError):
    """The database named by DATABASE_URL cannot be reached."""


class MigrationRefused(ReviewError):
    """A migration found rows it cannot carry over; it changed nothing and says which rows."""

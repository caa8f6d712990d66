"""Schema revisions through Alembic, driven from code (``python -m review db …``).

The Alembic scripts live in ``db/migrations/``; there is no alembic.ini to keep in sync.
The app and the CLI call :func:`require_current` and refuse to run against a database that is
behind (or ahead of) the code.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from db.errors import DatabaseUnavailable, SchemaOutOfDate
from db.session import safe_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
UPGRADE_HINT = "python -m review db upgrade"


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


@cache
def head_revision() -> str:
    heads = ScriptDirectory(str(MIGRATIONS_DIR)).get_heads()
    assert len(heads) == 1, f"migrations have several heads: {heads}"
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseUnavailable(
            f"cannot open the database {safe_url(str(engine.url))}: {reason}. "
            "Check DATABASE_URL and that the server is up"
        ) from None


def upgrade(engine: Engine, revision: str = "head") -> None:
    _run(command.upgrade, engine, revision)


def downgrade(engine: Engine, revision: str) -> None:
    _run(command.downgrade, engine, revision)


def _run(step: Callable[[Config, str], None], engine: Engine, revision: str) -> None:
    current_revision(engine)  # a clear DatabaseUnavailable before Alembic tries
    try:
        step(alembic_config(engine), revision)
    except CommandError as exc:  # unknown revision, a head that cannot be reached, …
        raise SchemaOutOfDate(f"cannot migrate to {revision!r}: {exc}") from None
    _restore_statistics(engine)


def _restore_statistics(engine: Engine) -> None:
    """SQLite loses a table's planner statistics when a migration rebuilds it (batch mode copies
    the table and drops the old one), and without them it may pick slower plans for the queue and
    the metrics. A database that had statistics (ANALYZE ran: ``sqlite_stat1`` exists) gets them
    back for every table that has none now; one that never had them is left as it was."""
    if engine.dialect.name != "sqlite":
        return  # Postgres keeps its statistics through ALTER TABLE
    with engine.begin() as conn:
        if conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first() is None:
            return
        analysed = {row[0] for row in conn.exec_driver_sql("SELECT DISTINCT tbl FROM sqlite_stat1")}
        tables = [
            row[0]
            for row in conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY name"
            )
        ]
        for table in tables:
            if table not in analysed:
                conn.exec_driver_sql(f'ANALYZE "{table}"')


def require_current(engine: Engine) -> None:
    """Raise :class:`SchemaOutOfDate` unless the database is at the head revision."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    where = safe_url(str(engine.url))
    if current is None:
        raise SchemaOutOfDate(f"the database {where} has no review-desk schema yet. Run: {UPGRADE_HINT}")
    known = {rev.revision for rev in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()}
    if current not in known:
        raise SchemaOutOfDate(
            f"the database {where} is at revision {current}, which this code does not know "
            f"(it was migrated by a newer version). Upgrade the code, or point DATABASE_URL elsewhere."
        )
    raise SchemaOutOfDate(
        f"the database {where} is at revision {current} but the code needs {head}. Run: {UPGRADE_HINT}"
    )

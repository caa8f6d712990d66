"""Engine and session factory from DATABASE_URL.

SQLite (the embedded default) runs with WAL, foreign keys on and a busy timeout so that the
app, the CLI and workers can share one file. Postgres goes through psycopg 3 with a small pool
that checks connections before use. Both engines hide statement parameters in their error
messages (``hide_parameters``): a failed INSERT of an account would otherwise quote its password
hash in the traceback and the log.

Outages: :func:`outage_reason` tells a database that went away (a Postgres server stopped or
unreachable, a connection cut, SQLite's file locked past the busy timeout or failing on disk)
from every other error; the CLI and the app turn it into one line (:func:`outage_message`), and
workers wait for the database to come back with :func:`retry_transient`. A Postgres server that
answers and refuses the connection (a wrong password, an unknown role or database, no
pg_hba.conf entry) is no outage: waiting would not help, so the engine raises
:class:`DatabaseRefused` (a ``ConfigError``, one line that names DATABASE_URL) at once.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import psycopg
from sqlalchemy import Connection, CursorResult, Engine, ExceptionContext, create_engine, event, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import UpdateBase

from db.errors import ConfigError

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_BEGIN_OPTION = "sqlite_begin"

log = logging.getLogger(__name__)
T = TypeVar("T")


def normalise_url(url: str) -> str:
    """Accept the URLs people paste (``postgres://``, ``postgresql://``) and pick psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    return make_url(normalise_url(url)).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    # Let SQLAlchemy's "begin" event below issue BEGIN, not the driver (pysqlite's own
    # transaction handling cannot take the write lock up front).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


class DatabaseRefused(ConfigError):
    """The database server answered and refused the connection: DATABASE_URL's user name,
    password or database name is wrong (or the server's pg_hba.conf lets that user not in)."""


def _refuse_at_connect(context: ExceptionContext) -> None:
    """handle_error: a refused connection (:func:`refusal_reason`) becomes :class:`DatabaseRefused`;
    errors of statements (there is a connection) are left alone."""
    reason = None if context.connection is not None else refusal_reason(context.original_exception)
    if reason is None:
        return
    where = context.engine.url.render_as_string(hide_password=True) if context.engine is not None else "DATABASE_URL"
    raise DatabaseRefused(
        f"the database {where} refused the connection ({reason}): check the user name, password and database "
        "name in DATABASE_URL"
    ) from None


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError(f"DATABASE_URL {url!r} is not a database URL (sqlite:///path or postgresql://…)") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            folder = Path(database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                reason = exc.strerror or exc
                raise ConfigError(f"cannot create the folder {folder} for the SQLite database: {reason}") from None
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            hide_parameters=True,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            raise ConfigError("Postgres is supported through psycopg 3: use a postgresql+psycopg:// URL")
        engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, hide_parameters=True)
        event.listen(engine, "handle_error", _refuse_at_connect)
        return engine
    raise ConfigError(f"unsupported database {backend!r}: use sqlite:///path or postgresql://…")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def writing(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session inside one write transaction, committed on success.

    On SQLite the transaction starts with BEGIN IMMEDIATE: it takes the write lock up front, so
    concurrent writers wait for each other on the busy timeout instead of failing with
    "database is locked" when a transaction that has read turns into a writer. Postgres needs
    nothing special (row locks and unique constraints do the work)."""
    with sessions() as session, session.begin():
        session.connection(execution_options={SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        yield session


def rows_changed(session: Session, statement: UpdateBase) -> int:
    """Run an UPDATE or DELETE and return how many rows it changed. (``Session.execute`` is typed
    as returning a plain ``Result``; for these statements it is a ``CursorResult``, which counts.)"""
    return cast(CursorResult[Any], session.execute(statement)).rowcount


# ---------------------------------------------------------------------------------------------
# Text the database can hold, and outages


def db_text(value: str) -> str:
    """``value`` without the characters no database text can hold: NUL (Postgres refuses it in
    text, and the ingest refuses it, so no stored text has one) and lone surrogates (not
    encodable as UTF-8; they come from undecodable command-line bytes). For filter and search
    strings people type or paste: the rest of the string is compared as given."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    if any("\ud800" <= c <= "\udfff" for c in value):
        value = "".join(c for c in value if not "\ud800" <= c <= "\udfff")
    return value


# Postgres SQLSTATEs of a server going away: class 08 (connection exception), and the server
# shutting down, crashing or starting up.
_PG_GONE = {"57P01", "57P02", "57P03"}
_SQLITE_OUTAGES = ("database is locked", "disk i/o error", "unable to open database file", "database or disk is full")


# What a Postgres server says when it refuses a connection (libpq reports these without a
# SQLSTATE: class 28, invalid authorization, and 3D000, no such database). Matched in English,
# the server's default; "no password supplied" is libpq's own.
_PG_REFUSALS = re.compile(
    r"authentication failed|no password supplied|role \".*\" does not exist|database \".*\" does not exist|"
    r"no pg_hba\.conf entry|not permitted to log in|permission denied for database",
    re.IGNORECASE,
)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for prefix in ("connection failed: ", "consuming input failed: ", "sending query failed: "):
        text = text.removeprefix(prefix)
    return " ".join(text.splitlines()[0].split()) if text else type(exc).__name__


def refusal_reason(exc: BaseException) -> str | None:
    """What the server said, when ``exc`` (a psycopg error, or SQLAlchemy's around one) is a
    connection it refused (a wrong password, an unknown role or database: SQLSTATE class 28 or
    3D000); else None."""
    if isinstance(exc, sa_exc.DBAPIError):
        exc = exc.orig if exc.orig is not None else exc
    if not isinstance(exc, psycopg.OperationalError):
        return None
    state = exc.sqlstate
    if state is not None:
        return _first_line(exc) if state.startswith("28") or state == "3D000" else None
    text = _first_line(exc)
    if exc.pgconn is not None and exc.pgconn.needs_password and not exc.pgconn.used_password:
        return text  # the server wants a password and DATABASE_URL gives none
    if not _PG_REFUSALS.search(text):
        return None
    return text.split("FATAL:", 1)[-1].strip()  # the server's words, without libpq's "connection to … failed"


def _reason(exc: BaseException) -> str | None:
    """The outage ``exc`` itself stands for, or None."""
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated and exc.orig is not None:
            return _first_line(exc.orig)
        return None if exc.orig is None else _reason(exc.orig)
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        if refusal_reason(exc) is not None:  # the server answered: waiting would not help
            return None
        state = exc.sqlstate
        if state is None or state.startswith("08") or state in _PG_GONE:  # no state: the client side
            return _first_line(exc)
        return None
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return _first_line(exc) if any(text.startswith(s) for s in _SQLITE_OUTAGES) else None
    return None


def outage_reason(exc: BaseException) -> str | None:
    """Why the database cannot be used, when ``exc`` (or an exception it was raised from or
    while handling: a failed rollback after a cut connection) is an outage; else None."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        reason = _reason(current)
        if reason is not None:
            return reason
        todo += [current.__cause__, current.__context__]
    return None


def outage_message(reason: str, url: str) -> str:
    """The one line for people, from :func:`outage_reason`; ``url`` is the database's
    (``review.config.configured_url()``: the settings'), shown without its password."""
    try:
        where = safe_url(url)
    except Exception:
        where = "named by DATABASE_URL"
    if where.startswith("sqlite"):
        advice = "check the disk and the other processes using the file"
    else:
        advice = "check that it is running and reachable"
    return (
        f"the database {where} is unreachable ({reason}): {advice}; everything saved before the outage is kept: "
        "run it again once the database is back"
    )


def retry_transient(
    step: Callable[[], T],
    *,
    max_wait: float = 120.0,
    first_delay: float = 1.0,
    max_delay: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    on_wait: Callable[[str, float], None] | None = None,
) -> T:
    """Run ``step`` (one whole transaction: it must be safe to run again), and again after an
    outage (:func:`outage_reason`), waiting ``first_delay`` seconds, doubling up to
    ``max_delay``, until the waits would pass ``max_wait`` seconds in all; then the last error
    is raised. Any other error is raised at once."""
    waited, delay = 0.0, first_delay
    while True:
        try:
            return step()
        except Exception as exc:
            reason = outage_reason(exc)
            if reason is None or waited + delay > max_wait:
                raise
            log.warning("database unreachable (%s); trying again in %.1f s", reason, delay)
            if on_wait is not None:
                on_wait(reason, delay)
            sleep(delay)
            waited += delay
            delay = min(delay * 2, max_delay)


def worker_name() -> str:
    """A worker's name in a lease column (the scoring worker's, the delivery worker's): host,
    process and a random tail, so that several workers of one process are told apart."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def lease_rows(session: Session, id_column: Any, free: Any, order_by: Any, limit: int, **values: Any) -> list[int]:
    """The one way a worker leases rows (the scoring worker's posts, the delivery worker's
    deliveries), inside the caller's write transaction: the ids of up to ``limit`` rows matching
    ``free`` in ``order_by`` order, then one UPDATE setting ``values`` on those that still match
    ``free``. On Postgres the read skips rows another worker's transaction has locked (``FOR
    UPDATE SKIP LOCKED``); on SQLite the write lock serialises leasing transactions."""
    table = id_column.table
    query = select(id_column).where(free).order_by(order_by).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=table)
    ids = list(session.scalars(query))
    if ids:
        session.execute(
            update(table).where(id_column.in_(ids), free).values(**values).execution_options(synchronize_session=False)
        )
    return ids

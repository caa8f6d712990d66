"""The audit log: an append-only record of what was done to the desk itself.

Moderation decisions have their own history (``review_event``); this log holds the rest: user
administration, sign-ins and failed sign-ins, ingest runs, exports, purges, retention runs,
backups. Each row says who acted (the account, or the command line), when, what, to what, from
which client, and details as JSON. Rows are written in the transaction of the action they
describe (:func:`record`), or in their own (:func:`log`) when the action has no transaction of
its own (a failed sign-in). The database refuses UPDATE and DELETE on the table (triggers from
migration ``0007``), so not even a purge takes anything out of it; nothing secret (password,
hash, token) is ever put in it.

Admins read it on the Audit page and with ``python -m review audit list|export``.
"""

from __future__ import annotations

import enum
import json
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import AuditEvent
from db.session import writing
from review.errors import ReviewError
from review.files import written_beside
from review.text import one_line

if TYPE_CHECKING:
    from review.auth import Actor

COMMAND_LINE = "(command line)"
MAX_SUBJECT = 255


class Action(enum.StrEnum):
    USER_CREATE = "user.create"
    USER_ROLE = "user.role"
    USER_ACTIVATE = "user.activate"
    USER_DEACTIVATE = "user.deactivate"
    USER_PASSWORD = "user.password"
    USER_UNLOCK = "user.unlock"
    SIGNIN = "signin"
    SIGNIN_FAILED = "signin.failed"
    CLAIMS_RELEASED = "claims.release"
    INGEST = "ingest"
    EXPORT = "export"
    PURGE = "purge"
    RETENTION = "retention"
    MEDIA_GC = "media.gc"
    BACKUP = "backup"
    TOKEN_CREATE = "token.create"
    TOKEN_REVOKE = "token.revoke"
    WEBHOOK_ADD = "webhook.add"
    WEBHOOK_CHANGE = "webhook.change"  # enabled, disabled
    WEBHOOK_REDELIVER = "webhook.redeliver"


@dataclass(frozen=True)
class ApiClient:
    """An actor that is no account: a platform calling the HTTP API with a token."""

    token: str  # the token's name

    @property
    def name(self) -> str:
        return f"(api token {self.token})"


def _who(actor: Actor | ApiClient | None) -> tuple[int | None, str]:
    """The account id to store (None for the command line, an API token and nobody) and the name."""
    from review.auth import account_id  # review.auth imports this module

    if actor is None:
        return None, "(nobody)"
    if isinstance(actor, ApiClient):
        return None, actor.name
    stored = account_id(actor)  # None: review.auth.OPERATOR, whoever runs the CLI on the desk's database
    return (None, COMMAND_LINE) if stored is None else (stored, actor.username)


def record(
    session: Session,
    actor: Actor | ApiClient | None,
    action: Action,
    subject: str | None = None,
    *,
    client: str | None = None,
    **details: Any,
) -> AuditEvent:
    """Add an audit row in ``session``'s transaction: it commits or rolls back with the action."""
    actor_id, name = _who(actor)
    event = AuditEvent(
        actor_id=actor_id,
        actor_name=name[:64],
        action=str(action),
        subject=None if subject is None else subject[:MAX_SUBJECT],
        client=None if client is None else client[:64],
        details=details,
    )
    session.add(event)
    session.flush()
    return event


def log(
    sessions: sessionmaker[Session],
    actor: Actor | ApiClient | None,
    action: Action,
    subject: str | None = None,
    *,
    client: str | None = None,
    **details: Any,
) -> int:
    """Write one audit row in a transaction of its own; its id."""
    with writing(sessions) as session:
        return record(session, actor, action, subject, client=client, **details).id


@dataclass(frozen=True)
class AuditFilter:
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    action: str | None = None  # one action, or a prefix ending in "." ("user.")
    actor: str | None = None  # the name as stored
    limit: int | None = 1000


COLUMNS = ["id", "created_at", "actor", "action", "subject", "client", "details"]
EXPORT_FORMATS = ("csv", "jsonl")
EXPORT_BATCH = 1000


def check_action(value: str | None) -> str | None:
    """An action filter as given, if it names an action or a family of them ("user." or "user");
    a ReviewError listing the actions otherwise, so that a typo does not silently match nothing."""
    if not value:
        return None
    known = [str(a) for a in Action]
    if value in known:
        return value
    family = value if value.endswith(".") else f"{value}."
    if any(a.startswith(family) for a in known):
        return family
    raise ReviewError(f"unknown action {value!r}: use one of {', '.join(known)} (or a family such as 'user.')")


def _filtered(q: Select, flt: AuditFilter) -> Select:
    if flt.since is not None:
        q = q.where(AuditEvent.created_at >= flt.since)
    if flt.until is not None:
        q = q.where(AuditEvent.created_at < flt.until)
    if flt.action:
        if flt.action.endswith("."):  # a family: "signin." is signin and signin.failed
            family = AuditEvent.action.startswith(flt.action, autoescape=True)
            q = q.where(or_(AuditEvent.action == flt.action[:-1], family))
        else:
            q = q.where(AuditEvent.action == flt.action)
    if flt.actor:
        q = q.where(AuditEvent.actor_name == flt.actor)
    return q


def _row(e: AuditEvent) -> tuple[Any, ...]:
    return (e.id, e.created_at, e.actor_name, e.action, e.subject, e.client, e.details)


def _allowed(session: Session, by: Actor, flt: AuditFilter | None = None) -> None:
    """Admins only, as the account is stored now (a role lowered since sign-in applies); and a
    filter Postgres can take (it refuses NUL characters in text)."""
    from review.auth import Permission, require_live

    require_live(session, by, Permission.AUDIT)
    if flt is not None and any("\x00" in (v or "") for v in (flt.action, flt.actor)):
        raise ReviewError("a filter cannot contain a NUL character")


def events(session: Session, flt: AuditFilter, *, by: Actor) -> pd.DataFrame:
    """The log, newest first, for an admin."""
    _allowed(session, by, flt)
    q = _filtered(select(AuditEvent), flt).order_by(AuditEvent.id.desc())
    if flt.limit is not None:
        q = q.limit(flt.limit)
    return pd.DataFrame([_row(e) for e in session.scalars(q)], columns=COLUMNS)


def iter_events(session: Session, flt: AuditFilter, *, by: Actor, batch: int = EXPORT_BATCH) -> Iterator[pd.DataFrame]:
    """Every row matching ``flt``, oldest first, ``batch`` rows at a time: keyset pages on the
    id, so the log is never held in memory whole. With ``flt.limit``, the newest ``limit`` of
    them, the rows :func:`events` shows (still oldest first). Rows written after the call began
    are left out (the export is the log as it stood when it started)."""
    _allowed(session, by, flt)
    last = session.scalar(select(func.max(AuditEvent.id)))
    if last is None or (flt.limit is not None and flt.limit < 1):
        return
    after = 0
    if flt.limit is not None:  # start at the limit-th newest matching row
        newest = _filtered(select(AuditEvent.id), flt).where(AuditEvent.id <= last).order_by(AuditEvent.id.desc())
        first = session.scalar(newest.offset(flt.limit - 1).limit(1))
        after = 0 if first is None else first - 1
    while True:
        q = _filtered(select(AuditEvent), flt).where(AuditEvent.id > after, AuditEvent.id <= last)
        rows = [_row(e) for e in session.scalars(q.order_by(AuditEvent.id).limit(batch))]
        session.expunge_all()  # keep the identity map from growing with the log
        if not rows:
            return
        yield pd.DataFrame(rows, columns=COLUMNS)
        after = rows[-1][0]
        if len(rows) < batch:
            return


def details_text(details: Any) -> str:
    """The details as one line of JSON text (keys sorted; non-ASCII kept)."""
    return json.dumps(details, ensure_ascii=False, sort_keys=True, default=str)


def as_text(df: pd.DataFrame) -> pd.DataFrame:
    """A page of the log for a table or a CSV: times in ISO 8601 UTC, details as JSON text."""
    out = df.copy()
    out["created_at"] = [t.isoformat() for t in out["created_at"]]
    out["details"] = [details_text(d) for d in out["details"]]
    return out


LIST_WIDTHS = {"id": None, "created_at": None, "actor": 24, "action": 16, "subject": 48, "client": 24, "details": 80}


def text_table(df: pd.DataFrame) -> list[str]:
    """The log as aligned lines of text for a terminal (``python -m review audit list``)."""
    header = ["id", "time (UTC)", "actor", "action", "subject", "client", "details"]
    rows = [header]
    for e in df.itertuples(index=False):
        values = {"id": e.id, "created_at": f"{e.created_at:%Y-%m-%d %H:%M:%S}", "actor": e.actor, "action": e.action,
                  "subject": e.subject, "client": e.client, "details": details_text(e.details)}  # fmt: skip
        rows.append([one_line(values[c], w) for c, w in LIST_WIDTHS.items()])  # a subject forges no line
    widths = [max(_cells(r[i]) for r in rows) for i in range(len(header))]
    return [
        "  ".join(cell + " " * (w - _cells(cell)) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]


def _cells(text: str) -> int:
    """Terminal cells taken by ``text`` (East Asian wide characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def export_events(
    session: Session,
    flt: AuditFilter,
    out: Path,
    *,
    by: Actor,
    fmt: str = "csv",
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write every row matching ``flt`` to the new file ``out`` (CSV through the project's CSV
    writer, which neutralises formulas, or JSON lines), streamed in batches; the number of rows.
    The file appears whole or not at all (written beside it, then renamed); an existing file is
    refused, never overwritten."""
    from review.csvout import to_csv

    if fmt not in EXPORT_FORMATS:
        raise ReviewError(f"unknown format {fmt!r}: use csv or jsonl")
    if out.exists() or out.is_symlink():
        raise ReviewError(f"{out} already exists: give a new file name")
    if not out.parent.is_dir():
        raise ReviewError(f"no folder {out.parent} for {out.name}")
    _allowed(session, by, flt)
    written = 0
    try:
        with written_beside(out, text=True, overwrite=False) as fh:  # never replaces a file that appeared
            for chunk in iter_events(session, flt, by=by):
                if fmt == "csv":
                    text = to_csv(as_text(chunk))
                    if written:  # the header once, at the top
                        text = text.split("\n", 1)[1] if "\n" in text else ""
                    fh.write(text)
                else:
                    for row in chunk.itertuples(index=False):
                        record = dict(zip(COLUMNS, row, strict=True))
                        record["created_at"] = record["created_at"].isoformat()
                        fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                written += len(chunk)
                if progress is not None:
                    progress(written)
            if fmt == "csv" and not written:
                fh.write(to_csv(pd.DataFrame(columns=COLUMNS)))
    except FileExistsError:
        raise ReviewError(f"{out} already exists: give a new file name") from None
    return written

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
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import AuditEvent
from db.session import writing

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


def _who(actor: Actor | None) -> tuple[int | None, str]:
    """The account id to store (None for the command line and for nobody) and the name."""
    if actor is None:
        return None, "(nobody)"
    if actor.id == 0:  # review.auth.OPERATOR: whoever runs the CLI on the desk's database
        return None, COMMAND_LINE
    return actor.id, actor.username


def record(
    session: Session,
    actor: Actor | None,
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
    actor: Actor | None,
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


def events(session: Session, flt: AuditFilter, *, by: Actor) -> pd.DataFrame:
    """The log, newest first, for an admin."""
    from review.auth import Permission, require

    require(by, Permission.AUDIT)
    q = select(AuditEvent).order_by(AuditEvent.id.desc())
    if flt.since is not None:
        q = q.where(AuditEvent.created_at >= flt.since)
    if flt.until is not None:
        q = q.where(AuditEvent.created_at < flt.until)
    if flt.action:
        if flt.action.endswith("."):
            q = q.where(AuditEvent.action.startswith(flt.action, autoescape=True))
        else:
            q = q.where(AuditEvent.action == flt.action)
    if flt.actor:
        q = q.where(AuditEvent.actor_name == flt.actor)
    if flt.limit is not None:
        q = q.limit(flt.limit)
    rows = [
        (e.id, e.created_at, e.actor_name, e.action, e.subject, e.client, e.details)
        for e in session.scalars(q)
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)

"""When the lead pages' numbers were last changed: :func:`write_mark`, the highest review event,
verdict, post and audit event ids of the desk, read in one small query (four primary-key index
lookups).

Every write a number counts adds one of these rows — a decision, bulk decision, undo, escalation
or second review is a review event (so is a claim or a release, which recounts for nothing); a
(re-)score is a verdict; an ingest is a post; an erasure or a retention run, which takes posts
out of the live backlog, is an audit event — so a cache keyed by the mark
(``pages/_analytics.cached``) recounts after any of them and reuses its result while nothing was
written. On Postgres ids are taken before commit, so a write that commits after a higher id was
read can be missed: the cache's time limit bounds that.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import AuditEvent, Post, ReviewEvent, Verdict
from review.auth import Actor, Permission, require


def write_mark(session: Session, actor: Actor) -> tuple[int, int, int, int]:
    """(highest review event, verdict, post and audit event id), 0 for an empty table."""
    require(actor, Permission.METRICS)
    row = session.execute(
        select(
            select(func.max(ReviewEvent.id)).scalar_subquery(),
            select(func.max(Verdict.id)).scalar_subquery(),
            select(func.max(Post.id)).scalar_subquery(),
            select(func.max(AuditEvent.id)).scalar_subquery(),
        )
    ).one()
    return (row[0] or 0, row[1] or 0, row[2] or 0, row[3] or 0)

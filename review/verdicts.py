"""What a verdict is for the rest of the desk: the one home of three rules that the queue,
decisions, labels, metrics, export, follow-up questions, the browser and the demo all read.

- **Usable**: a verdict whose parse status is ``ok`` or ``repaired`` (:data:`USABLE`) can be
  shown, confirmed, reused by the cache and counted as the model's answer; a ``failed`` parse or
  a provider ``error`` cannot. :func:`is_usable` in Python, :func:`usable_sql` in a query.
- **Current**: a post's current verdict is its newest verdict row (highest id), usable or not:
  a failed newest verdict hides an older usable one. :func:`current_verdict` for one post,
  :func:`current_verdicts` for many at once (one query). The post row keeps a copy for the
  queue's indexes, written by :func:`point_at` whenever a verdict is stored: ``post.verdict_id``
  and, when that verdict is usable, its ``verdict_violation`` and ``verdict_category``.
- **Category shown**: a verdict's category when it says violation, ``none`` otherwise
  (:func:`category_shown`, :func:`category_shown_sql`).
- **Waiting for a verdict**: a live (not erased) post whose status is ``unscored``
  (:func:`unscored_query`, :func:`unscored_count`): what the worker takes, and what the Ingest
  and score page and ``score`` count.

The scoring worker writes verdicts; every later stage reads them through this module, never
through ``review.scoring``. Migrations keep their own frozen copies of these rules in SQL.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, SQLColumnExpression, case, func, select, update
from sqlalchemy.orm import Session

from db.models import LIVE_POST, EventAction, Post, PostStatus, ReviewEvent, Verdict
from review.policy import NO_VIOLATION

USABLE = ("ok", "repaired")  # parse statuses whose verdict can be shown, confirmed and reused
PARSE_STATUSES = (*USABLE, "failed", "error")  # every status a verdict row is stored with


def is_usable(parse_status: str | None) -> bool:
    """Whether a verdict with this parse status (None: no verdict) is usable."""
    return parse_status in USABLE


def usable_sql(parse_status: SQLColumnExpression[str] = Verdict.parse_status) -> ColumnElement[bool]:
    """The usable rule in SQL, over a parse status column (NULL for NULL, as SQL's ``IN`` has it)."""
    return parse_status.in_(USABLE)


def category_shown(violation: bool | None, category: str | None) -> str | None:
    """The category a verdict shows: its own when it says violation, ``none`` otherwise."""
    return category if violation else NO_VIOLATION


def category_shown_sql(
    violation: SQLColumnExpression[bool | None], category: SQLColumnExpression[str | None]
) -> ColumnElement[str | None]:
    """:func:`category_shown` in SQL (a NULL violation shows ``none``, as None does)."""
    return case((violation.is_(True), category), else_=NO_VIOLATION)


def current_verdict(session: Session, post_id: int) -> Verdict | None:
    """A post's current verdict (see :func:`current_verdicts`), or None."""
    return current_verdicts(session, [post_id]).get(post_id)


def current_verdicts(session: Session, post_ids: list[int]) -> dict[int, Verdict]:
    """The current verdicts of many posts, by post id: each post's newest verdict, unless an
    ingest update replaced the post's content after it (the ``update`` event names the newest
    verdict it superseded): until it is scored again such a post has none. Posts without one are
    left out."""
    if not post_ids:
        return {}
    newest = (
        select(func.max(Verdict.id)).where(Verdict.post_id.in_(post_ids)).group_by(Verdict.post_id).scalar_subquery()
    )
    found = {v.post_id: v for v in session.scalars(select(Verdict).where(Verdict.id.in_(newest)))}
    superseded = session.execute(
        select(ReviewEvent.post_id, func.max(ReviewEvent.verdict_id))
        .where(ReviewEvent.post_id.in_(list(found)), ReviewEvent.action == EventAction.UPDATE)
        .group_by(ReviewEvent.post_id)
    )
    for post_id, verdict_id in superseded:
        if verdict_id is not None and verdict_id >= found[post_id].id:
            del found[post_id]
    return found


def point_at(session: Session, verdict: Verdict) -> None:
    """Make ``verdict`` (flushed, and its post's newest) the copy the post row keeps of its current
    verdict: its id, and its violation and category shown when it is usable, for the queue's
    indexed filters."""
    usable = is_usable(verdict.parse_status)
    session.execute(
        update(Post)
        .where(Post.id == verdict.post_id)
        .values(
            verdict_id=verdict.id,
            verdict_category=category_shown(verdict.violation, verdict.category) if usable else None,
            verdict_violation=verdict.violation if usable else None,
        )
        .execution_options(synchronize_session=False)
    )


# Posts waiting for a verdict


def unscored_query(limit: int | None = None) -> Select[int]:
    """The ids of the posts waiting for a verdict (an erased post waits for nothing), by id; with
    ``limit``, the first ``limit`` of them: the posts a ``score --limit`` run takes."""
    query = select(Post.id).where(Post.status == PostStatus.UNSCORED, LIVE_POST).order_by(Post.id)
    return query if limit is None else query.limit(limit)


def unscored_count(session: Session) -> int:
    """How many posts wait for a verdict (the Ingest and score page, ``score``'s progress bar)."""
    return session.scalar(select(func.count(Post.id)).where(Post.status == PostStatus.UNSCORED, LIVE_POST)) or 0

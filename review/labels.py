"""The ``post_label`` projection: for each settled post (decided, or waiting for its blind second
review), its latest human label beside the model verdict that was on screen for that decision.

This file holds the rule, in one query (with the category a human label stands for,
:func:`human_category`, which the agreement numbers use too); :func:`refresh` applies it to the
posts a transaction touched (decisions.py calls it with every decision and undo, inside the same
transaction), and :func:`rebuild` to the whole database (after bulk loads). The metrics read only this table, so
the accuracy numbers scan one narrow table instead of joining events, posts and verdicts.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import cast

from sqlalchemy import ColumnElement, Exists, Select, SQLColumnExpression, and_, case, delete, func, insert, select
from sqlalchemy.orm import Session, aliased

from db.models import EventAction, Post, PostLabel, PostStatus, ReviewEvent, Verdict
from review.policy import FALLBACK
from review.verdicts import category_shown, category_shown_sql, usable_sql

DECISIONS = (EventAction.CONFIRM.value, EventAction.OVERTURN.value)
SETTLED = (PostStatus.DECIDED.value, PostStatus.SECOND_REVIEW.value)
COLUMNS = ("post_id", "event_id", "decided_at", "decided_day", "first_decided_at", "decided_by_id", "raters",
           "human_violation", "human_category", "verdict_id", "usable", "model_violation", "model_category",
           "confidence", "provider", "model_id", "prompt_version", "model_precision", "source",
           "ingested_at")  # fmt: skip


def utc_day(dialect: str, column: SQLColumnExpression[datetime]) -> ColumnElement[str]:
    """SQL for the UTC day of a timestamp column, as YYYY-MM-DD text."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.date(column)  # SQLite keeps UTC timestamps as ISO text


def human_category(violation: bool | None, category: str | None) -> str:
    """The category a human label stands for: its own when it says violation (the policy's
    fallback, ``other``, when it names none), ``none`` otherwise. post_label's ``human_category``
    (:func:`label_rows`) and each rater's label in the agreement numbers."""
    return cast(str, category_shown(violation, category or FALLBACK))  # never None: it is given a category


def human_category_sql(
    violation: SQLColumnExpression[bool | None], category: SQLColumnExpression[str | None]
) -> ColumnElement[str | None]:
    """:func:`human_category` in SQL, over a review event's label columns."""
    return category_shown_sql(violation, func.coalesce(category, FALLBACK))


def standing_decisions() -> ColumnElement[bool]:
    """The condition for a confirm or overturn that counts: not taken back by an undo."""
    undone = aliased(ReviewEvent)
    taken_back = select(undone.undoes_id).where(undone.undoes_id.is_not(None))
    return and_(ReviewEvent.action.in_(DECISIONS), ReviewEvent.id.not_in(taken_back))


def rated_by(user_id: int) -> Exists:
    """The condition on ``post`` that ``user_id`` has a standing decision on it: such a person
    cannot be one more independent rater of it (second review, QA with several raters), and
    has seen its earlier labels."""
    return (
        select(ReviewEvent.id)
        .where(ReviewEvent.post_id == Post.id, ReviewEvent.user_id == user_id, standing_decisions())
        .exists()
    )


def raters_of(session: Session, post_id: int) -> set[int]:
    """The people with a standing decision on ``post_id``."""
    return set(
        session.scalars(
            select(ReviewEvent.user_id).distinct().where(ReviewEvent.post_id == post_id, standing_decisions())
        )
    )


def label_rows(dialect: str, post_ids: Collection[int] | None = None) -> Select:
    """post_label's rows, in COLUMNS order, for ``post_ids`` (all posts when None): each settled
    post's latest standing decision (an undone one no longer counts)."""
    per_post = (
        select(
            ReviewEvent.post_id,
            func.max(ReviewEvent.id).label("event_id"),
            func.min(ReviewEvent.created_at).label("first_at"),
            func.count(ReviewEvent.user_id.distinct()).label("raters"),
        )
        .where(standing_decisions())
        .group_by(ReviewEvent.post_id)
    )
    if post_ids is not None:
        per_post = per_post.where(ReviewEvent.post_id.in_(list(post_ids)))
    latest = per_post.subquery()
    event = aliased(ReviewEvent)
    said = event.label_violation.is_(True)
    usable = and_(Verdict.id.is_not(None), usable_sql())
    return (
        select(
            latest.c.post_id,
            latest.c.event_id,
            event.created_at,
            utc_day(dialect, event.created_at),
            latest.c.first_at,
            event.user_id,
            latest.c.raters,
            said,
            human_category_sql(event.label_violation, event.label_category),
            event.verdict_id,
            usable,
            case((usable, Verdict.violation.is_(True)), else_=None),
            case((usable, category_shown_sql(Verdict.violation, Verdict.category)), else_=None),
            case((usable, Verdict.confidence), else_=None),
            Verdict.provider,
            Verdict.model_id,
            Verdict.prompt_version,
            Verdict.model_precision,
            Post.source,
            Post.ingested_at,
        )
        .select_from(latest)
        .join(event, event.id == latest.c.event_id)
        .join(Post, Post.id == latest.c.post_id)
        .outerjoin(Verdict, Verdict.id == event.verdict_id)
        .where(Post.status.in_(SETTLED))
    )


def refresh(session: Session, post_ids: Collection[int]) -> None:
    """Make ``post_ids``' rows true to their events and status again (in the caller's transaction)."""
    ids = list(post_ids)
    if not ids:
        return
    session.execute(delete(PostLabel).where(PostLabel.post_id.in_(ids)).execution_options(synchronize_session=False))
    rows = label_rows(session.get_bind().dialect.name, ids)
    session.execute(insert(PostLabel).from_select(list(COLUMNS), rows))


def rebuild(session: Session) -> int:
    """Rebuild the whole table (after a bulk load that bypassed decisions.py); returns its rows."""
    session.execute(delete(PostLabel))
    session.execute(insert(PostLabel).from_select(list(COLUMNS), label_rows(session.get_bind().dialect.name)))
    return session.scalar(select(func.count()).select_from(PostLabel)) or 0

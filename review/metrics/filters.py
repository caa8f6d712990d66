"""Which settled posts a number or an export counts: the one filter over ``post_label``
(:func:`label_conditions`, :func:`labelled`), what a disagreement between the model and the
humans is (:func:`disagreement`, :func:`disagrees`), and the values the lead pages' filter bar
offers (:func:`filter_options`).

Metrics (review/metrics/) and the training export (review/export.py) both read ``post_label``
through these, so "decided from", "source", "the human category" and "a disagreement" mean the
same rows in a chart and in the training data built from it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Select, and_, or_, select, true
from sqlalchemy.orm import Session

from db.models import Post, PostLabel, Verdict
from review.auth import Actor, Permission, require_live


@dataclass(frozen=True)
class MetricFilter:
    """The lead pages' filter bar (and ``python -m review report``'s options)."""

    since: datetime | None = None  # decisions at or after
    until: datetime | None = None  # decisions before
    source: str | None = None
    category: str | None = None  # the human label's category ("none": no violation)
    model_id: str | None = None
    prompt_version: str | None = None


NO_FILTER = MetricFilter()  # every settled post


def label_conditions(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    source: str | None = None,
    categories: Collection[str] = (),
    model_id: str | None = None,
    prompt_version: str | None = None,
    by_day: bool = False,
) -> list[ColumnElement[bool]]:
    """WHERE conditions on ``post_label``: decided in [since, until), from ``source``, with a human
    category among ``categories`` (empty: any), judged by ``model_id`` under ``prompt_version``.
    ``by_day``: also bound the UTC day (implied by the time) so that a query grouped by day seeks
    the days index from that day on; the other queries leave it out on purpose (a full scan of
    their covering index, grouped and filtered in index order, beats seeking and sorting)."""
    conditions: list[ColumnElement[bool]] = []
    if since is not None:
        conditions.append(PostLabel.decided_at >= since)
        if by_day:
            conditions.append(PostLabel.decided_day >= as_utc(since).date().isoformat())
    if until is not None:
        conditions.append(PostLabel.decided_at < until)
        if by_day:
            conditions.append(PostLabel.decided_day <= as_utc(until).date().isoformat())
    if source:
        conditions.append(PostLabel.source == source)
    if len(categories) == 1:
        conditions.append(PostLabel.human_category == next(iter(categories)))
    elif categories:
        conditions.append(PostLabel.human_category.in_(list(categories)))
    if model_id:
        conditions.append(PostLabel.model_id == model_id)
    if prompt_version:
        conditions.append(PostLabel.prompt_version == prompt_version)
    return conditions


def labelled(flt: MetricFilter, *, by_day: bool = False) -> Select:
    """FROM/WHERE over post_label for the settled posts under ``flt`` (``by_day``: see
    :func:`label_conditions`); the metrics add their columns and groups."""
    conditions = label_conditions(
        since=flt.since,
        until=flt.until,
        source=flt.source,
        categories=(flt.category,) if flt.category else (),
        model_id=flt.model_id,
        prompt_version=flt.prompt_version,
        by_day=by_day,
    )
    return select().select_from(PostLabel).where(and_(true(), *conditions))


def disagreement() -> ColumnElement[bool]:
    """SQL: a disagreement between the model and the humans on a settled post: the model gave no
    usable verdict, or its verdict differs from the human label in violation or category. What
    the export takes by default, and what an overturn rate counts (on usable verdicts)."""
    return or_(
        PostLabel.usable.is_(False),
        PostLabel.human_violation != PostLabel.model_violation,
        PostLabel.human_category != PostLabel.model_category,
    )


def disagrees(
    usable: bool,
    human_violation: bool,
    human_category: str,
    model_violation: bool | None,
    model_category: str | None,
) -> bool:
    """:func:`disagreement` for one post_label row's values."""
    return not usable or human_violation != model_violation or human_category != model_category


@dataclass(frozen=True)
class FilterOptions:
    sources: list[str]
    model_ids: list[str]
    prompt_versions: list[str]


def filter_options(session: Session, actor: Actor) -> FilterOptions:
    """The values the filters can take: sources of posts, models and prompt versions of verdicts."""
    require_live(session, actor, Permission.METRICS)
    models = session.execute(select(Verdict.model_id, Verdict.prompt_version).distinct()).all()
    return FilterOptions(
        sources=sorted(session.scalars(select(Post.source).distinct())),
        model_ids=sorted({m for m, _ in models}),
        prompt_versions=sorted({p for _, p in models}),
    )


def as_utc(value: datetime | str) -> datetime:
    """A timestamp as an aware UTC datetime (SQLite hands min() of a timestamp back as its stored
    text; a naive one is UTC already)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)

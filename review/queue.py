"""The review queue: which posts wait for a moderator, in what order, under which filters.

Order: ``post.priority`` descending (escalations 200, model failures 100, otherwise severity ×
confidence of the verdict, plus a boost for the platform's reports; the numbers are in
:mod:`review.priority`), then the oldest post
first. The listing pages by keyset on (priority, id) through the ``(status, priority DESC, id)``
index; each post's current verdict (:mod:`review.verdicts`; the post row keeps its id,
``post.verdict_id``) is joined for the listing and for filters on its other fields, at one
primary-key lookup per post. Filters on the current verdict's category or violation read
copies kept on the post row, with indexes in the same order.
``review.decisions.claim`` takes the next post under the same filter. A filter travels in a link
as query parameters (:func:`filter_params`, :func:`filter_from_params`: the Queue page's URL).
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVarTuple

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select
from sqlalchemy.orm import Session, aliased

from db.models import LIVE_POST, Media, Post, PostMedia, PostStatus, User, Verdict
from db.session import db_text
from review.auth import Actor, Permission, require
from review.labels import rated_by
from review.text import shown
from review.visibility import Viewer, sights

Columns = TypeVarTuple("Columns")  # a query's column types, kept through with_verdict


@dataclass(frozen=True)
class QueueFilter:
    category: str | None = None  # the current verdict's category
    violation: bool | None = None  # the current verdict says violation (True) or not (False)
    min_confidence: float | None = None
    max_confidence: float | None = None
    model_failure: bool | None = None  # True: only posts whose verdict failed; False: only usable ones
    escalated: bool | None = None  # True: only escalated posts; False: no escalated posts
    second_review: bool | None = None  # True: only second reviews; False: no second reviews
    source: str | None = None
    model_id: str | None = None
    prompt_version: str | None = None
    min_age: timedelta | None = None  # ingested at least this long ago
    max_age: timedelta | None = None  # ingested at most this long ago

    def needs_verdict(self) -> bool:
        """Whether the filter reads verdict columns that the post row does not keep."""
        fields = (self.min_confidence, self.max_confidence, self.model_id, self.prompt_version)
        return any(v is not None for v in fields)


ANY = QueueFilter()  # no filter

# The filter in a link (the Queue page's URL): parameter names, and the words of the yes/no fields.
FLAGS = {"violation": "violation", "model_failure": "failure", "escalated": "escalated",
         "second_review": "second_review"}  # fmt: skip
TEXTS = {"source": "source", "model_id": "model", "prompt_version": "prompt"}
CONFIDENCES = {"min_confidence": "min_confidence", "max_confidence": "max_confidence"}
AGES = {"min_age": "older_than_hours", "max_age": "newer_than_hours"}  # whole hours
MAX_AGE_HOURS = 24 * 365
YES, NO = "yes", "no"
MAX_PARAM_CHARS = 200
STREAMLIT_PARAMS = frozenset({"embed", "embed_options"})  # Streamlit's own, not the queue's


def filter_params(flt: QueueFilter) -> dict[str, str]:
    """``flt`` as a link's query parameters (only the fields set): what :func:`filter_from_params`
    reads back. Ages are whole hours, as the Queue page sets them."""
    params: dict[str, str] = {}
    if flt.category is not None:
        params["category"] = flt.category
    for name, param in FLAGS.items():
        if (flag := getattr(flt, name)) is not None:
            params[param] = YES if flag else NO
    for name, param in CONFIDENCES.items():
        if (confidence := getattr(flt, name)) is not None:
            params[param] = repr(confidence)
    for name, param in TEXTS.items():
        if text := getattr(flt, name):
            params[param] = text
    for name, param in AGES.items():
        if (age := getattr(flt, name)) is not None:
            params[param] = str(int(age.total_seconds() // 3600))
    return params


def filter_from_params(
    params: Mapping[str, str | list[str]], categories: Collection[str], actor: Actor
) -> tuple[QueueFilter, list[str]]:
    """The filter a link names, and one line per parameter left out (an unknown name, a bad value, a
    filter ``actor`` may not use), so that a page can say what it ignored instead of failing."""
    fields: dict[str, Any] = {}  # QueueFilter field -> its checked value
    problems: list[str] = []

    def bad(param: str, value: str, expected: str) -> None:
        problems.append(f"Ignored {param}={shown(value)[:40]} in the link: {expected}.")

    for param, given in params.items():
        value = given[-1] if isinstance(given, list) else given  # a name given twice: the last one, as a browser
        if param in STREAMLIT_PARAMS:
            continue
        if len(value) > MAX_PARAM_CHARS:
            bad(param, value, f"at most {MAX_PARAM_CHARS} characters")
        elif param == "category":
            if value in categories:
                fields["category"] = value
            else:
                bad(param, value, "not a category of the policy")
        elif name := _field(FLAGS, param):
            if name == "escalated" and not actor.can(Permission.ESCALATIONS):
                bad(param, value, "only leads see escalated posts")
            elif value in (YES, NO):
                fields[name] = value == YES
            else:
                bad(param, value, f"{YES} or {NO}")
        elif name := _field(CONFIDENCES, param):
            confidence = _number(value)
            if confidence is not None and 0 <= confidence <= 1:
                fields[name] = confidence
            else:
                bad(param, value, "a number from 0 to 1")
        elif name := _field(TEXTS, param):
            if value.strip():
                fields[name] = value.strip()
        elif name := _field(AGES, param):
            hours = _number(value)
            if hours is not None and hours.is_integer() and 0 <= hours <= MAX_AGE_HOURS:
                fields[name] = timedelta(hours=int(hours)) if hours else None
            else:
                bad(param, value, f"whole hours from 0 to {MAX_AGE_HOURS}")
        else:
            problems.append(f"Ignored {shown(param)[:40]} in the link: not a filter of the queue.")
    return replace(ANY, **fields), problems


def _field(names: Mapping[str, str], param: str) -> str | None:
    return next((name for name, p in names.items() if p == param), None)


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def waiting_statuses(actor: Actor, flt: QueueFilter) -> list[str]:
    """The statuses of posts waiting for ``actor`` under ``flt``: the queue, second reviews
    (of other moderators' decisions) and, for leads, escalations."""
    statuses: list[str] = [PostStatus.QUEUED, PostStatus.SECOND_REVIEW]
    if actor.can(Permission.ESCALATIONS):
        statuses.append(PostStatus.ESCALATED)
    if flt.escalated is not None:
        statuses = [s for s in statuses if (s == PostStatus.ESCALATED) is flt.escalated]
    if flt.second_review is not None:
        statuses = [s for s in statuses if (s == PostStatus.SECOND_REVIEW) is flt.second_review]
    return statuses


def _in_status(actor: Actor, status: str) -> list[ColumnElement[bool]]:
    """Posts of ``status`` waiting for ``actor``: nobody rates a post twice in its second review,
    and nobody reviews an erased post (``LIVE_POST``: it keeps the status it had)."""
    out: list[ColumnElement[bool]] = [Post.status == status, LIVE_POST]
    if status == PostStatus.SECOND_REVIEW:
        out.append(~rated_by(actor.id))
    return out


def waiting(actor: Actor, flt: QueueFilter) -> ColumnElement[bool]:
    """The condition on ``post`` for the statuses waiting for ``actor`` under ``flt``."""
    return or_(false(), *(and_(*_in_status(actor, s)) for s in waiting_statuses(actor, flt)))


def in_queue_order(query: Select, actor: Actor, flt: QueueFilter, limit: int, session: Session, now: datetime) -> list:
    """Rows of ``query`` (which must select ``Post.priority`` and ``Post.id`` as its first two
    columns) for the posts waiting for ``actor``, in queue order, at most ``limit``. One query
    per waiting status, merged: a status range of the ``(status, priority, id)`` index is read in
    order, where ``status IN (…)`` would make the database sort all the waiting posts."""
    order = (Post.priority.desc(), Post.id)
    filters = _filters(flt, now)
    runs = [
        session.execute(query.where(*_in_status(actor, status), *filters).order_by(*order).limit(limit)).all()
        for status in waiting_statuses(actor, flt)
    ]
    return list(heapq.merge(*runs, key=lambda row: (-row[0], row[1])))[:limit]


def _filters(flt: QueueFilter, now: datetime) -> list[ColumnElement[bool]]:
    """The filter's conditions; its text fields without what no stored text holds (``db_text``)."""
    out: list[ColumnElement[bool]] = []
    if flt.source:
        out.append(Post.source == db_text(flt.source))
    if flt.min_age is not None:
        out.append(Post.ingested_at <= now - flt.min_age)
    if flt.max_age is not None:
        out.append(Post.ingested_at >= now - flt.max_age)
    if flt.category:
        out.append(Post.verdict_category == db_text(flt.category))
    if flt.violation is not None:
        out.append(Post.verdict_violation.is_(flt.violation))
    if flt.min_confidence is not None:
        out.append(Verdict.confidence >= flt.min_confidence)
    if flt.max_confidence is not None:
        out.append(Verdict.confidence <= flt.max_confidence)
    if flt.model_failure is True:  # the post keeps no category for a failed verdict
        out.append(and_(Post.verdict_id.is_not(None), Post.verdict_category.is_(None)))
    elif flt.model_failure is False:
        out.append(Post.verdict_category.is_not(None))
    if flt.model_id:
        out.append(Verdict.model_id == db_text(flt.model_id))
    if flt.prompt_version:
        out.append(Verdict.prompt_version == db_text(flt.prompt_version))
    return out


def free(now: datetime) -> ColumnElement[bool]:
    """Not claimed, or the claim's lease has run out."""
    return or_(Post.lease_expires_at.is_(None), Post.lease_expires_at <= now)


def with_verdict(query: Select[*Columns], flt: QueueFilter, outer: bool = False) -> Select[*Columns]:
    """Join the current verdict when the filter (or the caller) needs its columns."""
    on = Verdict.id == Post.verdict_id
    if flt.needs_verdict():
        return query.join(Verdict, on)
    return query.outerjoin(Verdict, on) if outer else query


@dataclass(frozen=True)
class QueueRow:
    post_id: int
    source: str
    text: str
    ingested_at: datetime
    status: str
    priority: float
    in_review_by: str | None  # who holds a live claim
    verdict_id: int | None
    parse_status: str | None
    violation: bool | None
    category: str | None
    severity: int | None
    confidence: float | None
    provider: str | None
    model_id: str | None
    prompt_version: str | None
    verdict_hidden: bool = False  # the verdict fields are None: this viewer may not see them (review.visibility)


VERDICT_FIELDS = ("verdict_id", "parse_status", "violation", "category", "severity", "confidence", "provider",
                  "model_id", "prompt_version")  # fmt: skip


@dataclass(frozen=True)
class QueuePage:
    rows: list[QueueRow] = field(default_factory=list)
    next_cursor: tuple[float, int] | None = None  # pass as ``after`` for the next page


def queue_page(
    session: Session,
    viewer: Viewer,
    flt: QueueFilter = ANY,
    *,
    after: tuple[float, int] | None = None,
    limit: int = 50,
    now: datetime | None = None,
) -> QueuePage:
    """One page of the queue in claim order (claimed posts included, marked in review). A row
    whose verdict ``viewer`` may not see (``review.visibility``: a blind second review) comes
    without it."""
    actor = require(viewer.actor, Permission.REVIEW)
    now = now or datetime.now(UTC)
    holder = aliased(User)
    query = select(  # priority and id first, as in_queue_order merges on them; labels are QueueRow's fields
        Post.priority, Post.id.label("post_id"), Post.source, Post.text, Post.ingested_at, Post.status,
        Post.lease_expires_at, holder.username.label("holder"), Verdict.id.label("verdict_id"), Verdict.parse_status,
        Verdict.violation, Verdict.category, Verdict.severity, Verdict.confidence, Verdict.provider, Verdict.model_id,
        Verdict.prompt_version,
    ).outerjoin(holder, holder.id == Post.claimed_by_id)  # fmt: skip
    query = with_verdict(query, flt, outer=True)
    if after is not None:
        priority, post_id = after
        query = query.where(or_(Post.priority < priority, and_(Post.priority == priority, Post.id > post_id)))
    rows = in_queue_order(query, actor, flt, limit + 1, session, now)
    shown = rows[:limit]
    seen = sights(session, viewer, [r.post_id for r in shown]) if viewer.hide_verdict else {}
    page = []
    for row in shown:
        fields = dict(row._mapping)
        expires, holder_name = fields.pop("lease_expires_at"), fields.pop("holder")
        live = expires is not None and expires > now
        hidden = row.post_id in seen and seen[row.post_id].verdict_hidden
        if hidden:
            fields.update(dict.fromkeys(VERDICT_FIELDS))
        page.append(QueueRow(**fields, in_review_by=holder_name if live else None, verdict_hidden=hidden))
    more = len(rows) > limit
    return QueuePage(page, (page[-1].priority, page[-1].post_id) if more and page else None)


def queue_count(session: Session, actor: Actor, flt: QueueFilter = ANY, now: datetime | None = None) -> int:
    """How many posts wait under ``flt`` (claimed ones included)."""
    return sum(category_counts(session, actor, flt, now).values())


def cluster_post_ids(session: Session, post_id: int, limit: int = 1000) -> list[int]:
    """The posts that share a near-duplicate cluster with any image of ``post_id`` (itself
    included), lowest id first, at most ``limit``: the set a bulk decision "whole cluster"
    acts on."""
    clusters = (
        select(Media.dup_cluster)
        .join(PostMedia, PostMedia.media_id == Media.id)
        .where(PostMedia.post_id == post_id, Media.dup_cluster.is_not(None))
    )
    members = (
        select(PostMedia.post_id)
        .join(Media, Media.id == PostMedia.media_id)
        .where(Media.dup_cluster.in_(clusters))
        .distinct()
        .order_by(PostMedia.post_id)
        .limit(limit)
    )
    found = list(session.scalars(members))
    return found or [post_id]


def category_counts(
    session: Session, actor: Actor, flt: QueueFilter = ANY, now: datetime | None = None
) -> dict[str | None, int]:
    """Waiting posts under ``flt`` per current-verdict category (``None``: unscored or model
    failure), largest first: the queue page's counts per filter value."""
    require(actor, Permission.REVIEW)
    now = now or datetime.now(UTC)
    counts: Counter[str | None] = Counter()
    filters = _filters(flt, now)
    # one query per waiting status, as for the listing: each reads its range of the
    # (status, verdict_category, …) index; "status IN (…) OR …" made SQLite scan the table
    for status in waiting_statuses(actor, flt):
        query = (
            with_verdict(select(Post.verdict_category, func.count(Post.id)), flt)
            .where(*_in_status(actor, status), *filters)
            .group_by(Post.verdict_category)
        )
        for category, n in session.execute(query):
            counts[category] += n
    return dict(counts.most_common())

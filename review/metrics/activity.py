"""Is the queue under control: the Activity page's numbers and the report's activity section
(which ``python -m review report`` also accepts as ``operations``, its tables keeping their
names, such as ``operations_days``): decisions and escalations per day and per moderator, median
handling time, the backlog and its oldest post per day, model failures, and per model the
duplicate-cache hit rate and latency."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import ColumnElement, SQLColumnExpression, func, select
from sqlalchemy.orm import Session

from db.models import LIVE_POST, EventAction, Post, PostLabel, PostStatus, ReviewEvent, User, Verdict
from review.auth import Actor, Permission, require_live
from review.labels import SETTLED, utc_day
from review.metrics import ratio
from review.metrics.filters import NO_FILTER, MetricFilter, as_utc
from review.verdicts import usable_sql

LATENCY_STEP_MS = 10  # latencies are counted in 10 ms steps: percentiles to 10 ms


@dataclass(frozen=True)
class DayActivity:
    day: str  # YYYY-MM-DD, UTC
    decisions: int  # confirm / overturn (bulk included)
    escalations: int
    median_handling_s: int | None  # of one-by-one decisions and escalations, in whole seconds
    verdicts: int
    model_failures: int  # verdicts that failed to parse or errored
    waiting: int  # posts ingested and not yet decided at the end of the day
    oldest_waiting_h: float | None  # age of the oldest of those, in hours


@dataclass(frozen=True)
class ModeratorActivity:
    username: str
    decisions: int
    escalations: int
    overturns: int
    median_handling_s: int | None
    days_active: int


@dataclass(frozen=True)
class ModelActivity:
    provider: str
    model_id: str
    verdicts: int
    failures: int
    cache_hits: int
    latency_p50_ms: float | None  # of calls that reached the model (cache hits excluded)
    latency_p95_ms: float | None

    @property
    def cache_hit_rate(self) -> float:
        return ratio(self.cache_hits, self.verdicts)


@dataclass
class Activity:
    days: list[DayActivity]
    per_moderator_day: list[tuple[str, str, int]]  # (day, username, decisions + escalations)
    moderators: list[ModeratorActivity]
    models: list[ModelActivity]


def _quantile(histogram: Counter[int], q: float) -> int | None:
    """The smallest value with at least ``q`` of the counts at or below it (nearest rank; for
    q = 0.5 the lower median, as statistics.median_low gives it)."""
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= q * total:
            return value
    return None  # pragma: no cover - the loop always reaches q <= 1


def activity(session: Session, actor: Actor, flt: MetricFilter = NO_FILTER, now: datetime | None = None) -> Activity:
    """Throughput and health per day, per moderator and per model. Every filter narrows the
    decisions (category: the human label; model and prompt: the verdict on screen); verdict
    counts, latency and the backlog follow the date range, source, model and prompt only."""
    require_live(session, actor, Permission.METRICS)
    now = now or datetime.now(UTC)
    acted = (EventAction.CONFIRM, EventAction.OVERTURN, EventAction.ESCALATE)
    day = _day(session, ReviewEvent.created_at)
    seconds = ReviewEvent.time_spent_ms // 1000
    events = (  # by user id: names are looked up afterwards (joining users here tripled the time)
        select(day, ReviewEvent.user_id, ReviewEvent.action, seconds, func.count())
        .select_from(ReviewEvent)
        .where(ReviewEvent.action.in_([a.value for a in acted]), ReviewEvent.user_id.is_not(None))
        .group_by(day, ReviewEvent.user_id, ReviewEvent.action, seconds)
    )
    if flt.source:
        events = events.join(Post, Post.id == ReviewEvent.post_id).where(Post.source == flt.source)
    if flt.model_id or flt.prompt_version:
        events = events.join(Verdict, Verdict.id == ReviewEvent.verdict_id)
    events = events.where(*_time_and_model(flt, ReviewEvent.created_at))
    if flt.category:
        events = events.where(ReviewEvent.label_category == flt.category)

    per_day: defaultdict[str, Counter[str]] = defaultdict(Counter)
    handling: defaultdict[str, Counter[int]] = defaultdict(Counter)
    per_person: defaultdict[str, Counter[str]] = defaultdict(Counter)
    person_handling: defaultdict[str, Counter[int]] = defaultdict(Counter)
    person_days: defaultdict[str, set[str]] = defaultdict(set)
    person_day: Counter[tuple[str, str]] = Counter()
    grouped = session.execute(events).all()
    ids = {user_id for _, user_id, *_ in grouped}
    names: dict[int | None, str] = (
        dict(session.execute(select(User.id, User.username).where(User.id.in_(ids))).all()) if ids else {}
    )
    for d, user_id, action, secs, n in grouped:
        username = names[user_id]
        kind = "escalations" if action == EventAction.ESCALATE else "decisions"
        per_day[d][kind] += n
        person = per_person[username]
        person[kind] += n
        person["overturns"] += n if action == EventAction.OVERTURN else 0
        person_days[username].add(d)
        person_day[(d, username)] += n
        if secs is not None:
            handling[d][int(secs)] += n
            person_handling[username][int(secs)] += n

    verdict_day = _day(session, Verdict.created_at)
    usable = usable_sql()
    latency = func.round(Verdict.latency_ms / LATENCY_STEP_MS)
    verdicts = (
        select(verdict_day, Verdict.provider, Verdict.model_id, usable, Verdict.cache_hit, latency, func.count())
        .group_by(verdict_day, Verdict.provider, Verdict.model_id, usable, Verdict.cache_hit, latency)
        .where(*_time_and_model(flt, Verdict.created_at))
    )
    if flt.source:
        verdicts = verdicts.join(Post, Post.id == Verdict.post_id).where(Post.source == flt.source)
    made: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    models: dict[tuple[str, str], Counter[str]] = {}
    latencies: dict[tuple[str, str], Counter[int]] = {}
    for d, provider, model_id, ok, hit, step, n in session.execute(verdicts):
        made[d] += n
        failed[d] += 0 if ok else n
        tally = models.setdefault((provider, model_id), Counter())
        tally["verdicts"] += n
        tally["failures"] += 0 if ok else n
        tally["cache_hits"] += n if hit else 0
        if step is not None and not hit:
            latencies.setdefault((provider, model_id), Counter())[int(step) * LATENCY_STEP_MS] += n

    backlog = _backlog(session, flt, now)
    days = sorted(set(per_day) | set(made) | set(backlog))
    out_days = []
    for d in days:
        count = per_day.get(d, Counter())
        waiting, oldest = backlog.get(d, (0, None))
        out_days.append(
            DayActivity(
                d,
                count["decisions"],
                count["escalations"],
                _quantile(handling.get(d, Counter()), 0.5),
                made[d],
                failed[d],
                waiting,
                oldest,
            )
        )
    return Activity(
        days=out_days,
        per_moderator_day=sorted((d, u, n) for (d, u), n in person_day.items()),
        moderators=[
            ModeratorActivity(
                u,
                c["decisions"],
                c["escalations"],
                c["overturns"],
                _quantile(person_handling.get(u, Counter()), 0.5),
                len(person_days[u]),
            )
            for u, c in sorted(per_person.items())
        ],
        models=[
            ModelActivity(
                p,
                m,
                c["verdicts"],
                c["failures"],
                c["cache_hits"],
                _quantile(latencies.get((p, m), Counter()), 0.5),
                _quantile(latencies.get((p, m), Counter()), 0.95),
            )
            for (p, m), c in sorted(models.items())
        ],
    )


def _time_and_model(flt: MetricFilter, at: SQLColumnExpression[datetime]) -> list[ColumnElement[bool]]:
    """The date range on ``at`` and the model and prompt of the verdict (joined or selected)."""
    conditions: list[ColumnElement[bool]] = []
    if flt.since is not None:
        conditions.append(at >= flt.since)
    if flt.until is not None:
        conditions.append(at < flt.until)
    if flt.model_id:
        conditions.append(Verdict.model_id == flt.model_id)
    if flt.prompt_version:
        conditions.append(Verdict.prompt_version == flt.prompt_version)
    return conditions


def _backlog(session: Session, flt: MetricFilter, now: datetime) -> dict[str, tuple[int, float | None]]:
    """Per day: posts ingested by its end and not yet decided then, and the oldest one's age in
    hours. From grouped tables of (day ingested, day first decided, earliest ingest, posts):
    settled posts from post_label, the others (never decided, or reopened) from post, leaving
    out the erased ones that were still waiting (they never will be decided)."""
    came = _day(session, PostLabel.ingested_at)
    left = _day(session, PostLabel.first_decided_at)
    settled = select(came, left, func.min(PostLabel.ingested_at), func.count()).group_by(came, left)
    waiting_day = _day(session, Post.ingested_at)
    waiting = (
        select(waiting_day, func.min(Post.ingested_at), func.count())
        .where(Post.status.in_([s.value for s in PostStatus if s.value not in SETTLED]))  # the queue indexes
        .where(LIVE_POST)  # an erased post keeps its status but waits for nobody
        .group_by(waiting_day)
    )
    if flt.source:
        settled = settled.where(PostLabel.source == flt.source)
        waiting = waiting.where(Post.source == flt.source)
    groups: list[tuple[str, str | None, datetime, int]] = [
        (c, d, as_utc(e), n) for c, d, e, n in session.execute(settled)
    ]
    groups += [(c, None, as_utc(e), n) for c, e, n in session.execute(waiting)]
    if not groups:
        return {}
    first = min(date.fromisoformat(c) for c, _, _, _ in groups)
    last = max(date.fromisoformat(d) for c, left_day, _, _ in groups for d in (c, left_day) if d)
    last = max(last, now.date())
    out = {}
    day = first
    while day <= last:
        key = day.isoformat()
        end = min(datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC), now)
        open_ = [(e, n) for c, left_day, e, n in groups if c <= key and (left_day is None or left_day > key)]
        oldest = min((e for e, _ in open_), default=None)
        in_range = (flt.since is None or end > flt.since) and (flt.until is None or day < flt.until.date())
        if in_range:
            out[key] = (sum(n for _, n in open_), (end - oldest).total_seconds() / 3600 if oldest else None)
        day += timedelta(days=1)
    return out


def _day(session: Session, column: SQLColumnExpression[datetime]) -> ColumnElement[str]:
    return utc_day(session.get_bind().dialect.name, column)

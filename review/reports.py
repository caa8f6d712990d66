"""Reports from the platform on a post: who flagged it (people, or the platform's classifier),
why, how many times. They arrive with a post (``POST /v1/posts``) or later
(``POST /v1/posts/{source}/{external_id}/flags``), and:

- raise the post's place in the queue while it waits (:func:`review.priority.report_boost`);
- show on the Review page (:func:`reports_of`);
- on a decided post, do not silently reopen it: they are counted, and once
  ``requeue_after_reports`` reports (their counts summed; a setting, 3 by default, 0 for never)
  arrived after its latest decision, the post goes back to the queue by a ``requeue`` event (no
  user: the platform's reports did it), which the platform is told of (``post.requeued``). The
  moderator who takes it sees the earlier decision in its history. An escalated post keeps its
  place (escalations come first anyway), a post waiting (in the queue or for a second review)
  rises; an erased post only keeps its reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from db.models import EventAction, Post, PostReport, PostStatus, ReviewEvent
from db.session import writing
from review import events, labels
from review.config import Settings
from review.errors import ReviewError
from review.events import NewEvent
from review.ingest.records import ReportRecord, format_validation
from review.priority import queue_priority
from review.verdicts import current_verdict

# the events that settle where a post stands; reports count towards a re-queue from the latest one
SETTLING = (EventAction.CONFIRM, EventAction.OVERTURN, EventAction.ESCALATE, EventAction.REOPEN, EventAction.REQUEUE)


class ReportError(ReviewError):
    """A report that cannot be stored (no such post, a bad kind or count)."""


@dataclass(frozen=True)
class ReportOutcome:
    report_id: int
    post_status: str  # after the report
    report_count: int  # the post's reports, this one included
    requeued: bool  # this report sent a decided post back to the queue


@dataclass(frozen=True)
class ReportSummary:
    """The reports on a post of one kind and reason."""

    kind: str
    reason: str
    count: int
    last_at: datetime


@dataclass(frozen=True)
class Requeue:
    """Why a decided post is back in the queue: the platform's reports after its decision."""

    decided_at: datetime  # the decision the reports sent back
    requeued_at: datetime
    reports: int  # reports (counts summed) between the two


def _settling(session: Session, post_id: int, n: int) -> list[tuple[int, str, datetime]]:
    """The post's latest ``n`` settling events (id, action, time), newest first."""
    rows = session.execute(
        select(ReviewEvent.id, ReviewEvent.action, ReviewEvent.created_at)
        .where(ReviewEvent.post_id == post_id, ReviewEvent.action.in_(SETTLING))
        .order_by(ReviewEvent.id.desc())
        .limit(n)
    ).all()
    return [(event_id, action, at) for event_id, action, at in rows]


def _reports_after(session: Session, post_id: int, event_id: int | None) -> int:
    """Reports (counts summed) that arrived while ``event_id`` was the post's latest settling
    event (None: before any): by the event each report names, not by anyone's clock."""
    latest = PostReport.after_event_id.is_(None) if event_id is None else PostReport.after_event_id == event_id
    total = session.scalar(
        select(func.coalesce(func.sum(PostReport.count), 0)).where(PostReport.post_id == post_id, latest)
    )
    return int(total or 0)


def requeue_of(session: Session, post_id: int) -> Requeue | None:
    """Why the post waits again, when reports sent it back and nobody has settled it since (its
    latest settling event is a ``requeue``; the one before it is the decision sent back)."""
    latest = _settling(session, post_id, 2)
    if len(latest) < 2 or latest[0][1] != EventAction.REQUEUE:
        return None
    (_, _, requeued_at), (decision_id, _, decided_at) = latest
    return Requeue(decided_at, requeued_at, _reports_after(session, post_id, decision_id))


def add_report(
    sessions: sessionmaker[Session],
    settings: Settings,
    post_id: int,
    kind: str,
    reason: str = "",
    count: int = 1,
    *,
    token_id: int | None = None,
    now: datetime | None = None,
) -> ReportOutcome:
    """Store a report on ``post_id`` and apply its rules (the module's docstring), in one
    transaction. The report is checked as a record's reports are (``ReportRecord``)."""
    try:
        report_in = ReportRecord.model_validate({"kind": kind, "reason": reason, "count": count})
    except ValidationError as exc:
        raise ReportError(f"report refused: {format_validation(exc)}") from None
    now = now or datetime.now(UTC)
    with writing(sessions) as session:
        # the post's row, locked (Postgres; SQLite holds the write lock): its status stays put
        post = session.get(Post, post_id, with_for_update=True, populate_existing=True)
        if post is None:
            raise ReportError(f"there is no post {post_id}")
        status = post.status
        settled = _settling(session, post_id, 1)
        report = PostReport(
            post_id=post_id,
            kind=report_in.kind,
            reason=report_in.reason,
            count=report_in.count,
            created_at=now,
            status_at_arrival=status,
            after_event_id=settled[0][0] if settled else None,
            token_id=token_id,
        )
        session.add(report)
        session.flush()
        total = (post.report_count or 0) + report_in.count
        values: dict[str, object] = {"report_count": total}
        requeued = False
        live = post.purged_at is None
        if live and status in (PostStatus.QUEUED, PostStatus.SECOND_REVIEW):  # waiting: it rises
            values["priority"] = queue_priority(current_verdict(session, post_id), total)
        elif live and status == PostStatus.DECIDED and settings.requeue_after_reports > 0:
            since = _reports_after(session, post_id, report.after_event_id)
            if since >= settings.requeue_after_reports:
                note = f"{since} reports since its decision (the threshold is {settings.requeue_after_reports})"
                events.write(session, NewEvent(post_id, None, EventAction.REQUEUE, now, note=note))
                labels.refresh(session, [post_id])  # the decision no longer settles the post
                values["priority"] = queue_priority(current_verdict(session, post_id), total)
                requeued = True
        session.execute(
            update(Post).where(Post.id == post_id).values(**values).execution_options(synchronize_session=False)
        )
        after = session.scalar(select(Post.status).where(Post.id == post_id))
        return ReportOutcome(report.id, str(after), total, requeued)


def reports_of(session: Session, post_ids: list[int]) -> dict[int, list[ReportSummary]]:
    """The reports on each of ``post_ids``, grouped by kind and reason, most reported first."""
    if not post_ids:
        return {}
    rows = session.execute(
        select(
            PostReport.post_id,
            PostReport.kind,
            PostReport.reason,
            func.sum(PostReport.count),
            func.max(PostReport.created_at),
        )
        .where(PostReport.post_id.in_(post_ids))
        .group_by(PostReport.post_id, PostReport.kind, PostReport.reason)
    ).all()
    out: dict[int, list[ReportSummary]] = {}
    for post_id, kind, reason, count, last_at in rows:
        when = last_at if last_at.tzinfo else last_at.replace(tzinfo=UTC)
        out.setdefault(post_id, []).append(ReportSummary(kind, reason, int(count), when))
    for summaries in out.values():
        summaries.sort(key=lambda s: (-s.count, s.kind, s.reason))
    return out

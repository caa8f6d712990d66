"""The API's routes over one post and the feed: a report on a known post, a post as a platform
reads it back, the decision feed. Thin: the rules are in review/reports.py (reports, priority,
re-queue), review/verdicts.py (the current verdict) and review/outbox.py (the events)."""

from __future__ import annotations

from fastapi import HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Post
from db.session import db_text
from review import outbox
from review.api.schemas import Feed, FlagResult, PostOut, ReportIn, ReportOut, VerdictOut
from review.desk import Desk
from review.reports import add_report, reports_of
from review.tokens import TokenInfo
from review.verdicts import current_verdict


def _post(session: Session, source: str, external_id: str) -> Post:
    """The post, or a 404 (also for a name no post can have: NUL, a lone surrogate)."""
    storable = db_text(source) == source and db_text(external_id) == external_id
    post = storable and session.scalar(select(Post).where(Post.source == source, Post.external_id == external_id))
    if not post:
        raise HTTPException(404, "no post with that source and external id")
    return post


def flag(desk: Desk, source: str, external_id: str, report: ReportIn, token: TokenInfo) -> FlagResult:
    """Add ``report`` to the post; its status and report count after, and whether it re-queued."""
    with desk.sessions() as session:
        post_id = _post(session, source, external_id).id
    outcome = add_report(
        desk.sessions, desk.settings, post_id, report.kind, report.reason, report.count, token_id=token.id
    )
    return FlagResult(post_status=outcome.post_status, report_count=outcome.report_count, requeued=outcome.requeued)


def post(desk: Desk, source: str, external_id: str) -> PostOut:
    """The post as a platform reads it back."""
    with desk.sessions() as session:
        row = _post(session, source, external_id)
        verdict = current_verdict(session, row.id)
        reports = reports_of(session, [row.id]).get(row.id, [])
        events = [outbox.payload_of(event) for event in outbox.post_events(session, row.id)]
        return PostOut(
            source=row.source,
            external_id=row.external_id,
            status=row.status,
            report_count=row.report_count,
            reports=[
                ReportOut(kind=r.kind, reason=r.reason, count=r.count, last_at=r.last_at.isoformat()) for r in reports
            ],
            verdict=None
            if verdict is None
            else VerdictOut(
                violation=verdict.violation,
                category=verdict.category,
                severity=verdict.severity,
                confidence=verdict.confidence,
                parse_status=verdict.parse_status,
            ),
            decisions=events,
        )


def feed(desk: Desk, after: int, limit: int) -> Feed:
    """The events after feed position ``after``; the cursor for the next page."""
    with desk.sessions() as session:
        rows = outbox.feed(session, after, limit)
        return Feed(events=[outbox.payload_of(row) for row in rows], next=str(rows[-1].seq if rows else after))

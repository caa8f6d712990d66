"""The one writer of moderators' events: a typed ``review_event`` row, and the post's status
moved by the table in :mod:`review.status` in the same transaction.

Claims, releases (a moderator's own, a lead's, a deactivation's), decisions one by one and in
bulk, undos and re-queues by reports all go through :func:`write`, which also writes the
outgoing event the platform is told of (:mod:`review.outbox`); nothing else writes ``post.status`` but the
scoring worker, through the same table. The callers keep the conditions that make an action
theirs to take (a live claim, the row lock) and the post's other columns (claim, lease,
priority); the writer owns the event row and the status.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import EventAction, Post, ReviewEvent
from db.session import rows_changed
from review import outbox
from review.status import Move, Step, next_status, step_of


@dataclass(frozen=True)
class NewEvent:
    """A ``review_event`` row to write, its columns named (all of them optional but the first four)."""

    post_id: int
    user_id: int | None  # None: the command line (a deactivation's release)
    action: EventAction
    created_at: datetime
    note: str | None = None
    lease_expires_at: datetime | None = None  # a claim's, or an undo's new claim
    # decisions
    status_before: str | None = None  # where the post waited; an undo restores it
    second_review: bool = False  # taken in a second review
    to_second_review: bool = False  # confirm / overturn: the post waits for a (further) second review after it
    verdict_id: int | None = None  # the verdict on screen
    label_violation: bool | None = None
    label_category: str | None = None
    label_severity: int | None = None
    time_spent_ms: int | None = None
    bulk_id: str | None = None
    idempotency_key: str | None = None
    # a reopen: the decision it takes back, and the status that decision recorded
    undoes_id: int | None = None
    undone_status_before: str | None = None

    def move(self) -> Move:
        """This event's step in the status table."""
        if self.action == EventAction.REOPEN:
            return Move(Step.REOPEN, self.undone_status_before)
        return Move(step_of(self.action, self.to_second_review))


def write(session: Session, event: NewEvent) -> ReviewEvent:
    """Insert ``event`` (flushed: it has its id), move its post's status by the table and write
    its outgoing event (review/outbox.py: for the actions the platform is told of), all in the
    caller's transaction, which holds the post (its row lock, or SQLite's write lock). A step the
    table refuses raises ``review.status.StatusRefused`` and writes nothing."""
    status = session.scalar(select(Post.status).where(Post.id == event.post_id))
    if status is None:
        raise ValueError(f"there is no post {event.post_id}")
    after = next_status(status, event.move())
    row = ReviewEvent(**{k: v for k, v in asdict(event).items() if k != "undone_status_before"})
    session.add(row)
    session.flush()
    if after != status:
        session.execute(
            update(Post)
            .where(Post.id == event.post_id)
            .values(status=after)
            .execution_options(synchronize_session=False)
        )
    outbox.enqueue(session, row, after)
    return row


def end_claim(session: Session, post_id: int, holder_id: int, *, by: int | None, now: datetime, note: str) -> bool:
    """End ``holder_id``'s live claim on ``post_id`` for someone else (a lead, an account's
    deactivation): the claim is cleared on the condition that it is still that live claim, and a
    ``release`` event by ``by`` says why (``note``). False, and nothing written, when it is not."""
    done = rows_changed(
        session,
        update(Post)
        .where(Post.id == post_id, Post.claimed_by_id == holder_id, Post.lease_expires_at > now)
        .values(claimed_by_id=None, lease_expires_at=None)
        .execution_options(synchronize_session=False),
    )
    if done != 1:
        return False
    write(session, NewEvent(post_id, by, EventAction.RELEASE, now, note=note))
    return True

"""A post's status as a projection of what happened to it: one pure transition table.

``post.status`` is a copy, kept for the queue's indexes, of a fold over the post's history: its
verdict rows and its ``review_event`` rows, oldest first (in the spirit of Bluesky Ozone's
moderation status). :data:`TABLE` says, for each status and each kind of step, the status after
it; :func:`next_status` applies one step, :func:`replay` folds a whole history. A step the table
does not allow (deciding a post that is not waiting, scoring a post twice) raises
:class:`StatusRefused`: the desk refuses those before it writes anything, so the table and the
callers' conditions say the same thing.

A step carries every fact its move depends on, so the table stays a pure function: whether a
decision sends (or keeps) the post in second review (the draw, or more labels wanted: stored on
the event as ``to_second_review``) and, for an undo, the status the undone decision recorded
(``status_before`` of the undone decision, on the reopen's step). "In review" is a live claim
(``post.claimed_by_id`` and its lease), not a status: claims and releases leave it alone.

Only :mod:`review.events` (moderators' events, and ingest's content updates) and the scoring
worker (a stored verdict) write ``post.status``, both through this table.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from db.models import EventAction, PostStatus, ReviewEvent
from review.errors import ReviewError


class StatusRefused(ReviewError):
    """A step the status table does not allow from the post's status."""


class Step(enum.StrEnum):
    """The kinds of step the table knows: one per event action, and a decision split by where it
    leaves the post."""

    SCORED = "scored"  # the scorer stored a verdict
    CLAIM = "claim"
    RELEASE = "release"
    DECIDE = "decide"  # confirm / overturn that settles the post
    TO_SECOND_REVIEW = "to_second_review"  # confirm / overturn drawn for (or kept in) a second review
    ESCALATE = "escalate"
    SKIP = "skip"
    REOPEN = "reopen"  # undo: back to the status the undone decision recorded
    REQUEUE = "requeue"  # reports on a decided post sent it back (review/reports.py)
    UPDATE = "update"  # ingest --update replaced an undecided post's content: it is scored again


RESTORED = "restored"  # a table value: the status the undone decision recorded (the step's ``before``)

# where a post's content may still be replaced (ingest --update): nobody has decided on it; a
# decided, escalated or second-review post keeps what its moderators saw
UPDATABLE = (PostStatus.UNSCORED, PostStatus.QUEUED)
_WAITING = (PostStatus.QUEUED, PostStatus.ESCALATED, PostStatus.SECOND_REVIEW)
_AFTER_A_DECISION = (PostStatus.DECIDED, *_WAITING)  # what a decision (a skip included) can leave

TABLE: dict[tuple[PostStatus, Step], str] = {
    (PostStatus.UNSCORED, Step.SCORED): PostStatus.QUEUED,
    # a waiting post: claimed, released and skipped in place, decided, escalated
    **{(s, Step.CLAIM): s for s in _WAITING},
    **{(s, Step.RELEASE): s for s in _WAITING},
    **{(s, Step.SKIP): s for s in _WAITING},
    **{(s, Step.DECIDE): PostStatus.DECIDED for s in _WAITING},
    **{(s, Step.ESCALATE): PostStatus.ESCALATED for s in _WAITING},
    # the draw takes a queued post to its second review; a second review continues until enough labels
    (PostStatus.QUEUED, Step.TO_SECOND_REVIEW): PostStatus.SECOND_REVIEW,
    (PostStatus.SECOND_REVIEW, Step.TO_SECOND_REVIEW): PostStatus.SECOND_REVIEW,
    # undo of the post's latest decision (a skip included)
    **{(s, Step.REOPEN): RESTORED for s in _AFTER_A_DECISION},
    # enough reports after its decision put a settled post back in the queue
    (PostStatus.DECIDED, Step.REQUEUE): PostStatus.QUEUED,
    # new content for a post nobody has decided: its verdict was about the old content
    **{(s, Step.UPDATE): PostStatus.UNSCORED for s in UPDATABLE},
}


@dataclass(frozen=True)
class Move:
    """One step in a post's history, with the facts its move depends on."""

    step: Step
    before: str | None = None  # for REOPEN: the status the undone decision recorded (None: queued)


def next_status(status: str, move: Move) -> str:
    """The status after ``move`` from ``status``; StatusRefused when the table has no such move."""
    after = TABLE.get((PostStatus(status), move.step))
    if after is None:
        raise StatusRefused(f"a post that is {status} cannot take the step {move.step.value!r}")
    if after == RESTORED:
        return move.before or PostStatus.QUEUED
    return after


def step_of(action: str, to_second_review: bool) -> Step:
    """The step of an event action other than reopen (a decision's own, or in bulk; a claim; a release)."""
    if action in (EventAction.CONFIRM, EventAction.OVERTURN):
        return Step.TO_SECOND_REVIEW if to_second_review else Step.DECIDE
    return Step(action)


def move_of(event: ReviewEvent, undone: ReviewEvent | None = None) -> Move:
    """The move of a stored event; a reopen needs the decision it undoes (``undone``)."""
    if event.action == EventAction.REOPEN:
        return Move(Step.REOPEN, undone.status_before if undone is not None else None)
    return Move(step_of(event.action, bool(event.to_second_review)))


SCORED = Move(Step.SCORED)


def replay(moves: Iterable[Move], start: str = PostStatus.UNSCORED) -> str:
    """A post's status from its whole history (oldest first), from ``start`` (an ingested post)."""
    status = start
    for move in moves:
        status = next_status(status, move)
    return status

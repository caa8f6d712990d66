"""The moderator's working session on the review desk, as plain Python: the post held (a claim,
a lease in the database), resuming it after a reload, keeping it alive, taking the next post
under the Queue page's filters (leaving out the posts skipped in this session), deciding,
skipping, undoing the last decision, and the Queue page's hand-off of a chosen post.

:class:`ReviewState` is the whole state (the Review page keeps it in one ``st.session_state``
entry); :class:`ReviewSession` holds the transitions, each a call of the core
(``review.decisions``, ``review.queue``), and the reads of the post under review, redacted by
``review.visibility`` (the reviewer of a blind second review sees neither the earlier decisions
nor, with ``second_review_hide_verdict``, the model's verdict, on the post or its near
duplicates, in the follow-up conversation too).

Nothing is preselected: an overturn without a complete label saves nothing and waits for it
(``awaiting_label``); an escalation without a reason waits for one (``reason_missing``).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy.orm import Session, sessionmaker

from review.auth import Actor
from review.browse import PostRow, get_posts, withheld
from review.config import Settings
from review.decisions import (
    Claim,
    ClaimLost,
    Decision,
    EscalationReasonMissing,
    Label,
    claim,
    decide,
    held_claim,
    new_idempotency_key,
    release,
    renew,
    undo,
)
from review.errors import ReviewError
from review.followup import PostContext, load_post
from review.policy import Policy
from review.queue import ANY, QueueFilter, cluster_post_ids, queue_count
from review.reports import ReportSummary, Requeue, reports_of, requeue_of
from review.visibility import Sight, Viewer, sights

MAX_SKIPPED = 200  # posts skipped in a session that Next leaves out
RENEW_BELOW = 8 * 60  # seconds of lease left under which any action renews it

NoticeKind = Literal["info", "warning", "error"]


@dataclass(frozen=True)
class Notice:
    """A message for the moderator, shown once."""

    kind: NoticeKind
    text: str


class Outcome(enum.Enum):
    """What became of a decision asked for on the review desk."""

    SAVED = "saved"
    NEEDS_LABEL = "needs label"  # an overturn without a complete label: it waits for one
    NEEDS_REASON = "needs reason"  # an escalation without a reason
    REFUSED = "refused"  # the core refused it (the notice says why)
    NOT_HELD = "not held"  # the post is no longer the one held: nothing done


@dataclass(frozen=True)
class LastDecision:
    """This session's last decision, the one Undo takes back."""

    event_id: int
    post_id: int
    action: str


@dataclass
class ReviewState:
    """A moderator's working session; plain data, kept by the page between runs."""

    flt: QueueFilter = ANY  # the Queue page's filters: Next claims under them
    claim: Claim | None = None  # the post held
    started: float = 0.0  # monotonic time the held post was first shown (time spent)
    key: str = ""  # idempotency key of the decision on the held claim
    last: LastDecision | None = None
    skipped: list[int] = field(default_factory=list)  # Next does not hand these straight back
    nothing_free: bool = False  # the last Next found no free post
    opening: int | None = None  # a post the Queue page handed over, opened on the next arrival
    notices: list[Notice] = field(default_factory=list)
    awaiting_label: int | None = None  # the post whose overturn waits for its label
    reason_missing: int | None = None  # the post whose escalation was refused for want of a reason
    focus: str | None = None  # where the page puts the keyboard focus next (the page's names)

    def hand_over(self, post_id: int) -> None:
        """The Queue page's hand-off: the Review page opens ``post_id`` when it next runs."""
        self.opening = post_id

    def take_notices(self) -> list[Notice]:
        """The messages to show now (each once)."""
        out, self.notices = self.notices, []
        return out


@dataclass(frozen=True)
class PostReports:
    """The platform's reports on the post held (review.reports), as the Review page shows them."""

    summaries: list[ReportSummary]  # by kind and reason, most reported first
    requeue: Requeue | None  # set while the post waits again because of reports

    @property
    def total(self) -> int:
        return sum(s.count for s in self.summaries)


class ReviewSession:
    """The transitions of ``state`` for ``actor``, through the core functions."""

    def __init__(
        self, sessions: sessionmaker[Session], actor: Actor, settings: Settings, policy: Policy, state: ReviewState
    ) -> None:
        self.sessions = sessions
        self.actor = actor
        self.settings = settings
        self.policy = policy
        self.state = state
        self.viewer = Viewer.of(actor, settings)

    @property
    def held(self) -> int | None:
        """The id of the post held, if any."""
        return None if self.state.claim is None else self.state.claim.post_id

    def _notify(self, kind: NoticeKind, text: str) -> None:
        self.state.notices.append(Notice(kind, text))

    def _hold(self, new_claim: Claim | None) -> None:
        s = self.state
        s.claim, s.started, s.key = new_claim, time.monotonic(), new_idempotency_key()
        s.awaiting_label = s.reason_missing = s.focus = None

    # -- arriving on the page: the hand-off, or the claim already held, then keep it alive

    def arrive(self, now: datetime | None = None) -> None:
        """What every run of the Review page does first: open the post the Queue page handed
        over, or resume the claim this moderator holds (after a reload, in a second tab);
        then keep the held claim alive."""
        wanted, self.state.opening = self.state.opening, None
        if wanted is not None:
            self.open(wanted)
        elif self.state.claim is None:
            with self.sessions() as session:
                resumed = held_claim(session, self.actor, now)
            if resumed is not None:
                self._hold(resumed)
                self._notify("info", f"You were reviewing post {resumed.post_id}; it is yours again.")
        self.keep_alive(now)

    def open(self, post_id: int) -> None:
        """Hold ``post_id`` (releasing another post held), or say why it cannot be had."""
        if self.held == post_id:
            return
        if self.held is not None:
            release(self.sessions, self.actor, self.held)
        opened = claim(self.sessions, self.actor, post_id)
        if opened is None:
            why = "taken, decided, or not in your queue"
            self._notify("warning", f"Post {post_id} is not free for you to review ({why}).")
        self._hold(opened)

    def keep_alive(self, now: datetime | None = None) -> None:
        """Any action counts as activity: renew the lease when less than ``RENEW_BELOW`` seconds
        are left; a lost claim (expired and taken) is dropped with the reason."""
        held = self.state.claim
        if held is None:
            return
        left = (held.lease_expires_at - (now or datetime.now(UTC))).total_seconds()
        if left >= RENEW_BELOW:
            return
        try:
            expires = renew(self.sessions, self.actor, held.post_id, now=now)
        except ClaimLost as exc:
            self.state.claim = None
            self._notify("warning", str(exc))
        else:
            self.state.claim = replace(held, lease_expires_at=expires)

    # -- taking and giving back posts

    def take_next(self, *, leave_out: tuple[int, ...] = ()) -> None:
        """Claim the next post under the filters, leaving out the ones skipped in this session."""
        try:
            taken = claim(self.sessions, self.actor, flt=self.state.flt, exclude=[*self.state.skipped, *leave_out])
        except ReviewError as exc:
            taken = None
            self._notify("error", str(exc))
        self._hold(taken)
        self.state.nothing_free = taken is None

    def next(self) -> None:
        """N: give back the post held (if any) and take another one."""
        held = self.held
        if held is not None:
            release(self.sessions, self.actor, held)
        self.take_next(leave_out=() if held is None else (held,))

    def release(self) -> None:
        """Give the post held back to the queue."""
        if self.held is not None:
            release(self.sessions, self.actor, self.held)
        self.state.claim = None

    def unskip(self) -> None:
        """Let Next hand back the posts skipped in this session."""
        self.state.skipped = []

    # -- deciding

    def decide(self, post_id: int, decision: Decision, label: Label | None, note: str = "") -> Outcome:
        """Record ``decision`` on ``post_id`` (``label``: the moderator's, for an overturn), then
        take the next post. Nothing happens unless ``post_id`` is the post held (a second key
        press that arrives after the next post was taken). An overturn without a complete label
        saves nothing and waits for it; an escalation without a reason waits for one."""
        s = self.state
        if self.held != post_id:
            return Outcome.NOT_HELD
        if decision is Decision.OVERTURN and label is None:
            s.awaiting_label = post_id
            return Outcome.NEEDS_LABEL
        with self.sessions() as session:
            blind = self.sight(session).blind
        spent = int((time.monotonic() - (s.started or time.monotonic())) * 1000)
        try:
            event = decide(
                self.sessions, self.actor, post_id, decision, label=label if decision is Decision.OVERTURN else None,
                note=note, time_spent_ms=spent, idempotency_key=s.key or None, policy=self.policy,
                share=self.settings.second_review_share, raters=self.settings.qa_raters,
            )  # fmt: skip
        except EscalationReasonMissing:
            s.reason_missing = post_id
            return Outcome.NEEDS_REASON
        except ClaimLost as exc:
            s.claim = None
            self._notify("error", str(exc))
            return Outcome.REFUSED
        except ReviewError as exc:
            self._notify("error", str(exc))
            return Outcome.REFUSED
        s.last = LastDecision(event.id, post_id, event.action)
        if decision is Decision.SKIP:
            s.skipped = [*s.skipped, post_id][-MAX_SKIPPED:]
        # in a blind review, "confirm" or "overturn" would tell how the hidden verdict compares
        what = "decision" if blind and event.action in ("confirm", "overturn") else event.action
        self._notify("info", f"Post {post_id}: {what} saved. Undo with U.")
        self.take_next()
        return Outcome.SAVED

    def undo_last(self) -> None:
        """U: take back this session's last decision and hold its post again (the post held
        meanwhile goes back to the queue)."""
        last = self.state.last
        if last is None:
            return
        try:
            reopened = undo(self.sessions, self.actor, last.event_id)
        except ReviewError as exc:
            self._notify("error", str(exc))
            return
        if self.held is not None and self.held != last.post_id:
            release(self.sessions, self.actor, self.held)
        self.state.last = None
        self._hold(reopened)
        self._notify("info", f"Undone: your {last.action} of post {last.post_id}. Decide it again.")

    # -- what the page shows of the post held

    def waiting(self, session: Session) -> int:
        """Posts waiting under the filters."""
        return queue_count(session, self.actor, self.state.flt)

    def sight(self, session: Session) -> Sight:
        """What the moderator may see of the post held (``review.visibility``)."""
        assert self.held is not None
        return sights(session, self.viewer, [self.held], reviewing=True).get(self.held, Sight())

    def post(self, session: Session) -> PostRow | None:
        """The post held, with its verdict unless hidden from its reviewer; None when it is gone."""
        assert self.held is not None
        return get_posts(session, self.viewer, [self.held], self.policy, reviewing=True).get(self.held)

    def reports(self, session: Session) -> PostReports:
        """The reports on the post held, and whether they sent it back to the queue after a decision
        (its latest settling event is a ``requeue``: no decision since)."""
        assert self.held is not None
        return PostReports(reports_of(session, [self.held]).get(self.held, []), requeue_of(session, self.held))

    def similar(self, session: Session, limit: int) -> tuple[list[PostRow], bool]:
        """The post's near duplicates (at most ``limit``; True when there are more); their verdicts
        are hidden too while the post's own is (they would tell it)."""
        assert self.held is not None
        ids = [i for i in cluster_post_ids(session, self.held, limit=limit + 1) if i != self.held]
        found = get_posts(session, self.viewer, ids[:limit], self.policy)
        rows = [found[i] for i in ids[:limit] if i in found]
        if self.sight(session).verdict_hidden:
            rows = [withheld(r) for r in rows]
        return rows, len(ids) > limit

    def conversation(self, session: Session) -> PostContext:
        """The post held as a follow-up conversation shows it to the model (without a hidden verdict)."""
        assert self.held is not None
        return load_post(session, self.settings, self.viewer, self.held, reviewing=True)

"""The moderator's working session on the review desk, as plain Python: the post held (a claim,
a lease in the database), resuming it after a reload, opening a linked post, keeping it alive
while it is read (up to ``reading_max_minutes`` without an action), taking the next post under
the Queue page's filters (leaving out the posts skipped less than ``skip_defer_minutes`` ago),
deciding, undoing the session's last ``UNDO_DEPTH`` decisions, and the Queue page's hand-off of
a chosen post; and what the page shows around the post (time in queue, near-duplicate count,
the last decision of a post that is back, the filters in words).

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
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session, aliased, sessionmaker

from db.models import EventAction, Post, ReviewEvent, User
from review.auth import Actor
from review.browse import PostRow, get_posts, withheld
from review.config import Settings
from review.decisions import (
    Claim,
    ClaimLost,
    Decision,
    EscalationReasonMissing,
    HistoryEntry,
    Label,
    claim,
    decide,
    held_claim,
    history,
    new_idempotency_key,
    release,
    renew,
    undo,
)
from review.errors import ReviewError
from review.followup import PostContext, load_post
from review.policy import Policy
from review.queue import ANY, QueueFilter, cluster_post_ids, queue_count, waiting_statuses
from review.reports import ReportSummary, Requeue, reports_of, requeue_of
from review.visibility import Sight, Viewer, sights

MAX_SKIPPED = 200  # posts skipped in a session that Next leaves out
RENEW_BELOW = 8 * 60  # seconds of lease left under which any action renews it
HEARTBEAT_SECONDS = 60  # how often an open Review tab renews the lease of the post it shows
UNDO_DEPTH = 10  # this session's decisions that Undo reaches back over
MAX_COUNTED = 100  # near duplicates counted; more reads "100+"
# the events that put a waiting post where it waits now (else: since it was ingested)
QUEUED_BY = (EventAction.REQUEUE, EventAction.ESCALATE, EventAction.CONFIRM, EventAction.OVERTURN, EventAction.UPDATE)

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
class PastDecision:
    """A decision of this session that Undo can take back."""

    event_id: int
    post_id: int
    action: str  # as the moderator may know it: "decision" for a blind second review's confirm or overturn

    @property
    def label(self) -> str:
        """The undo button's label, e.g. "Undo confirm of post 12"."""
        return f"Undo {self.action} of post {self.post_id}"


@dataclass
class ReviewState:
    """A moderator's working session; plain data, kept by the page between runs."""

    flt: QueueFilter = ANY  # the Queue page's filters: Next claims under them
    claim: Claim | None = None  # the post held
    started: float = 0.0  # monotonic time the held post was first shown (time spent)
    key: str = ""  # idempotency key of the decision on the held claim
    undoable: list[PastDecision] = field(default_factory=list)  # oldest first, at most UNDO_DEPTH
    # skipped post → until when Next leaves it out (None: for the rest of the session)
    skipped: dict[int, datetime | None] = field(default_factory=dict)
    unskipped_at: datetime | None = None  # "Show the posts I skipped again": earlier skips no longer defer
    nothing_free: bool = False  # the last Next found no free post
    opening: int | None = None  # a post the Queue page handed over, opened on the next arrival
    linked: int | None = None  # the post held at the last arrival (which the page puts in its ?post=)
    address: int | None = None  # the page's ?post= at the last arrival: a link is acted on when it changes
    viewing: int | None = None  # a linked post this moderator cannot take (decided, taken): shown read-only
    active_at: datetime | None = None  # the moderator's last action on the page (a run of it)
    checked_at: datetime | None = None  # when the claim was last taken or renewed in the database
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
class Surroundings:
    """What the Review page says around the post held, in one plain line."""

    waiting_since: datetime  # since it waits where it waits (a re-queue, an escalation) or was ingested
    near_duplicates: int  # other posts in its near-duplicate clusters, at most MAX_COUNTED
    more_duplicates: bool  # there are more than MAX_COUNTED
    last_decision: HistoryEntry | None  # the standing confirm or overturn of a post back in the queue


def for_how_long(seconds: float) -> str:
    """A duration as a person reads it: "45 s", "12 min", "3 h 12 min", "2 d 5 h"."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def filter_words(flt: QueueFilter) -> str:
    """The Queue page's filters in words ("category fraud_spam, source weibo"); "" without any."""
    words = []
    for f in fields(flt):
        value = getattr(flt, f.name)
        if value is None:
            continue
        if isinstance(value, bool):
            words.append(f.name.replace("_", " ") if value else f"no {f.name.replace('_', ' ')}")
        elif isinstance(value, timedelta):
            words.append(f"{f.name.replace('_', ' ')} {for_how_long(value.total_seconds())}")
        else:
            words.append(f"{f.name.replace('_', ' ')} {value}")
    return ", ".join(words)


def standing_decision(entries: list[HistoryEntry]) -> HistoryEntry | None:
    """The latest confirm or overturn in a post's history (``review.decisions.history``, already
    redacted for the reader) that no later ``reopen`` took back; None when there is none or its
    label is hidden from the reader (a blind second review)."""
    undone = 0
    for entry in reversed(entries):
        if entry.action == EventAction.REOPEN:
            undone += 1  # an undo takes back the latest decision before it
        elif entry.action in (*(d.value for d in Decision), "decision (hidden)"):
            if undone:
                undone -= 1
            elif entry.action in (EventAction.CONFIRM, EventAction.OVERTURN):
                return entry
            elif entry.label_hidden:
                return None
    return None


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
        s.checked_at = datetime.now(UTC)

    # -- arriving on the page: the hand-off, a link, or the claim already held, then keep it alive

    def arrive(self, now: datetime | None = None, link: int | None = None) -> None:
        """What every run of the Review page does first (each run is an action of the
        moderator's): resume the claim this moderator holds (after a reload, in a second tab),
        then open the post the Queue page handed over or the page's address names (``link``,
        when it is not the post the page itself put there); then keep the held claim alive."""
        now = now or datetime.now(UTC)
        self.state.active_at = now
        wanted, self.state.opening = self.state.opening, None
        # a link acts once, when the address changes, and not when it names the post the page
        # itself put there (the post held at the last arrival) or shows read-only
        s = self.state
        from_link = wanted is None and link is not None and link not in (s.address, s.linked, s.viewing)
        s.address = link
        if from_link:
            wanted = link
        if self.state.claim is None:
            with self.sessions() as session:
                resumed = held_claim(session, self.actor, now)
            if resumed is not None:
                self._hold(resumed)
                if wanted in (None, resumed.post_id):
                    self._notify("info", f"You were reviewing post {resumed.post_id}; it is yours again.")
        if wanted is not None:
            self.open(wanted)
        if from_link:  # a link to a post this moderator cannot take (decided, taken): shown read-only
            self.state.viewing = link if link is not None and self.held != link and self._exists(link) else None
        elif link != self.state.viewing:
            self.state.viewing = None
        self.keep_alive(now)
        self.state.linked = self.held

    def open(self, post_id: int) -> None:
        """Hold ``post_id`` (releasing another post held), or say why it cannot be had."""
        if self.held == post_id:
            return
        opened = claim(self.sessions, self.actor, post_id)
        if opened is None:  # the post held (if any) stays held
            self._notify("warning", f"Post {post_id} cannot be opened for you: {self._why_not(post_id)}.")
            return
        if self.held is not None:
            release(self.sessions, self.actor, self.held)
        self._hold(opened)

    def _exists(self, post_id: int) -> bool:
        with self.sessions() as session:
            post = session.get(Post, post_id)
            return post is not None and post.purged_at is None

    def stop_viewing(self) -> None:
        """Leave the read-only view of a linked post (back to the post held, or to Next)."""
        self.state.viewing = None

    def viewed(self, session: Session) -> PostRow | None:
        """The post shown read-only (``state.viewing``), as the Posts page would show it to this
        moderator (the core hides what they may not see); None when it is gone."""
        assert self.state.viewing is not None
        return get_posts(session, self.viewer, [self.state.viewing], self.policy).get(self.state.viewing)

    def _why_not(self, post_id: int) -> str:
        """Why ``claim`` refused ``post_id`` to this moderator, in words."""
        with self.sessions() as session:
            post = session.get(Post, post_id)
            if post is None or post.purged_at is not None:
                return "there is no such post"
            if post.lease_expires_at is not None and post.lease_expires_at > datetime.now(UTC):
                mine = post.claimed_by_id == self.actor.id
                return "you hold it in another tab" if mine else "another moderator is reviewing it"
            if post.status not in waiting_statuses(self.actor, ANY):
                return f"it is {post.status.replace('_', ' ')}, not waiting for you"
            return "you have already labelled it for its second review"

    def _released_by(self, post_id: int) -> str | None:
        """ "lea gave it back to the queue" when the post's latest event is another person's
        ``release`` (a lead's ``force_release``); None otherwise."""
        with self.sessions() as session:
            row = session.execute(
                select(ReviewEvent.action, ReviewEvent.user_id, User.username)
                .outerjoin(User, User.id == ReviewEvent.user_id)
                .where(ReviewEvent.post_id == post_id)
                .order_by(ReviewEvent.id.desc())
                .limit(1)
            ).first()
        if row is None or row.action != EventAction.RELEASE or row.user_id == self.actor.id:
            return None
        return f"{row.username or 'a lead'} gave it back to the queue"

    def keep_alive(self, now: datetime | None = None) -> None:
        """Any action counts as activity: renew the lease when less than ``RENEW_BELOW`` seconds
        are left; a lost claim (expired and taken) is dropped with the reason."""
        held = self.state.claim
        if held is None:
            return
        left = (held.lease_expires_at - (now or datetime.now(UTC))).total_seconds()
        if left < RENEW_BELOW:
            self._renew(now)

    def _renew(self, now: datetime | None) -> bool:
        """Renew the held claim's lease; False (the claim dropped, the reason noted) when it is lost."""
        held = self.state.claim
        assert held is not None
        try:
            expires = renew(self.sessions, self.actor, held.post_id, now=now)
        except ReviewError as exc:  # ClaimLost, or an account deactivated or demoted meanwhile
            self.state.claim = None
            self._notify(
                "warning", f"Post {held.post_id} is no longer yours: {self._released_by(held.post_id) or exc}."
            )
            return False
        self.state.claim = replace(held, lease_expires_at=expires)
        self.state.checked_at = now or datetime.now(UTC)
        return True

    def heartbeat(self, now: datetime | None = None) -> bool:
        """What an open Review tab does every ``HEARTBEAT_SECONDS`` while a post is shown: renew
        its lease (and so learn at once when a lead released it or it was lost), but only within
        ``reading_max_minutes`` of the moderator's last action, so an abandoned tab still gives
        the post back when its lease ends. True when the claim is gone (the page reruns to say so)."""
        s, now = self.state, now or datetime.now(UTC)
        held = s.claim
        if held is None:
            return False
        reading = now - (s.active_at or now)
        if reading > timedelta(minutes=self.settings.reading_max_minutes):
            if held.lease_expires_at > now:
                return False
            s.claim = None
            idle = for_how_long(reading.total_seconds())
            self._notify("warning", f"Post {held.post_id} went back to the queue: no action on it for {idle}. "
                                    "Press N to take a post.")  # fmt: skip
            return True
        if s.checked_at is not None and (now - s.checked_at).total_seconds() < HEARTBEAT_SECONDS / 2:
            return False  # just taken or renewed (this run is a click's, not the timer's)
        return not self._renew(now)

    # -- taking and giving back posts

    def deferred(self, now: datetime | None = None) -> list[int]:
        """The skipped posts that Next still leaves out: this session's whose deferral has not
        ended and, with a deferral in minutes, this moderator's stored skips of that span (so a
        reload or a new tab defers them too), since "Show the posts I skipped again" if pressed."""
        now = now or datetime.now(UTC)
        s = self.state
        s.skipped = {p: until for p, until in s.skipped.items() if until is None or until > now}
        minutes = self.settings.skip_defer_minutes
        stored: list[int] = []
        if minutes:
            since = now - timedelta(minutes=minutes)
            if s.unskipped_at is not None:
                since = max(since, s.unskipped_at)
            undone = aliased(ReviewEvent)
            with self.sessions() as session:
                stored = list(session.scalars(
                    select(ReviewEvent.post_id)
                    .where(ReviewEvent.user_id == self.actor.id, ReviewEvent.created_at > since,
                           ReviewEvent.action == EventAction.SKIP,
                           ~exists().where(undone.undoes_id == ReviewEvent.id))  # an undone skip defers nothing
                    .order_by(ReviewEvent.created_at.desc())
                    .limit(MAX_SKIPPED)
                ))  # fmt: skip
        return list(dict.fromkeys([*s.skipped, *stored]))

    def take_next(self, *, leave_out: tuple[int, ...] = (), now: datetime | None = None) -> None:
        """Claim the next post under the filters, leaving out the ones skipped and still deferred
        (``now``: the time the deferrals are measured at)."""
        try:
            taken = claim(self.sessions, self.actor, flt=self.state.flt, exclude=[*self.deferred(now), *leave_out])
        except ReviewError as exc:
            taken = None
            self._notify("error", str(exc))
        self._hold(taken)
        self.state.nothing_free = taken is None

    def next(self, now: datetime | None = None) -> None:
        """N: give back the post held (if any) and take another one."""
        self.state.viewing = None
        held = self.held
        if held is not None:
            release(self.sessions, self.actor, held)
        self.take_next(leave_out=() if held is None else (held,), now=now)

    def release(self) -> None:
        """Give the post held back to the queue."""
        if self.held is not None:
            release(self.sessions, self.actor, self.held)
        self.state.claim = None

    def unskip(self) -> None:
        """Let Next hand back the posts skipped at once."""
        self.state.skipped = {}
        self.state.unskipped_at = datetime.now(UTC)

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
        # in a blind review, "confirm" or "overturn" would tell how the hidden verdict compares
        what = "decision" if blind and event.action in ("confirm", "overturn") else event.action
        s.undoable = [*s.undoable, PastDecision(event.id, post_id, what)][-UNDO_DEPTH:]
        if decision is Decision.SKIP:
            minutes = self.settings.skip_defer_minutes
            s.skipped.pop(post_id, None)
            s.skipped[post_id] = datetime.now(UTC) + timedelta(minutes=minutes) if minutes else None
            s.skipped = dict(list(s.skipped.items())[-MAX_SKIPPED:])
        self._notify("info", f"Post {post_id}: {what} saved. Undo with U.")
        self.take_next()
        return Outcome.SAVED

    @property
    def undoable(self) -> list[PastDecision]:
        """The decisions Undo can still reach, newest first (the core may yet refuse one)."""
        return self.state.undoable[::-1]

    def undo(self, event_id: int | None = None) -> None:
        """U: take back this session's newest decision, or the one of ``event_id`` among the
        undoable ones, and hold its post again (the post held meanwhile goes back to the queue).
        A decision the core refuses to undo (the post changed since) is dropped with the reason."""
        s = self.state
        target = next((d for d in self.undoable if event_id in (None, d.event_id)), None)
        if target is None:
            return
        s.undoable = [d for d in s.undoable if d != target]
        try:
            reopened = undo(self.sessions, self.actor, target.event_id)
        except ReviewError as exc:
            self._notify("warning", str(exc))
            return
        if self.held is not None and self.held != target.post_id:
            release(self.sessions, self.actor, self.held)
        s.skipped.pop(target.post_id, None)
        self._hold(reopened)
        self._notify("info", f"Undone: your {target.action} of post {target.post_id}. Decide it again.")

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

    def surroundings(self, session: Session) -> Surroundings:
        """Time in queue, near-duplicate count and the standing decision of the post held (what
        the reader may see of it: ``review.decisions.history`` hides a blind reviewer's)."""
        assert self.held is not None
        post_id = self.held
        ingested = session.scalar(select(Post.ingested_at).where(Post.id == post_id))
        queued = session.scalar(
            select(func.max(ReviewEvent.created_at)).where(
                ReviewEvent.post_id == post_id, ReviewEvent.action.in_([a.value for a in QUEUED_BY])
            )
        )
        since = queued or ingested or datetime.now(UTC)
        ids = [i for i in cluster_post_ids(session, post_id, limit=MAX_COUNTED + 2) if i != post_id]
        last = standing_decision(history(session, self.actor, post_id))
        return Surroundings(since, min(len(ids), MAX_COUNTED), len(ids) > MAX_COUNTED, last)

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

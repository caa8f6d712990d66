"""Moderator claims and decisions: append-only events, one transaction per action.

A post waiting for a moderator has status ``queued`` (or ``escalated``, for leads). A moderator
claims it with a lease (``post.claimed_by_id``, ``post.lease_expires_at``); while the lease is
live the post is "in review" and nobody else can claim or decide it. When the lease runs out
the post is claimable again, with no sweeper needed. A decision (confirm, overturn, escalate,
skip) is accepted only from the holder of a live claim: the post's row is updated with a
condition on the claim, and the event is inserted in the same transaction, so a decision on an
expired or foreign claim writes nothing. Every action is a ``review_event`` row; nothing is
updated or deleted there. Undo is a new ``reopen`` event that hands the post back to the
moderator who decided it. Each event is written by ``review.events.write``, which also moves the
post's status by the table in ``review/status.py``; this module sets the claim, lease and
priority columns only.

Transactions take the write lock first (``BEGIN IMMEDIATE`` on SQLite) and, on Postgres, the
claim picks its post with ``FOR UPDATE SKIP LOCKED``; the conditional updates make both safe
under any number of processes.

Every action re-reads the account (``require_live``): a deactivated or demoted account is
refused at once (the command line, no account, holds no claim and decides nothing), and
deactivating an account releases its live claims (``review.auth.release_claims_of``).
A lease is at most ``MAX_LEASE`` (30 minutes; a longer one is refused, not clamped, so a caller
never believes it holds a post longer than it does): an abandoned post returns to the queue.
Leads (``Permission.BULK``, the right to act on posts they do not hold) can release another
moderator's claim (``force_release``), which is recorded as that lead's ``release`` event with a
note naming whose claim it was.

An erased post (``db.models.LIVE_POST``, review/purge.py) keeps its status but is no work: it
cannot be claimed, decided (one by one or in bulk) or undone; purging it ended any claim on it.
"""

from __future__ import annotations

import enum
import hashlib
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.orm import Session, sessionmaker

from db.models import LIVE_POST, EventAction, Post, PostStatus, ReviewEvent, Verdict
from db.session import rows_changed, writing
from review import audit, events, labels
from review.audit import Action
from review.auth import Actor, Permission, PermissionDenied, account_id, require, require_live
from review.errors import ReviewError
from review.events import NewEvent
from review.policy import Policy, load_policy
from review.priority import ESCALATED_PRIORITY, queue_priority
from review.queue import ANY, QueueFilter, free, in_queue_order, waiting, waiting_statuses, with_verdict
from review.status import next_status
from review.verdicts import current_verdict, is_usable
from review.visibility import blind_for, may_read_note

DEFAULT_LEASE = timedelta(minutes=10)
# a closed tab's post is back in the queue after this: longer than the Review page's heartbeat
# (60 s), so another tab of the same moderator that shows the post renews it first
LEAVE_GRACE = timedelta(seconds=90)
MAX_LEASE = timedelta(minutes=30)  # a longer lease is refused: an abandoned post must come back
MAX_NOTE = 2000


class ClaimLost(ReviewError):
    """The action needs a live claim on the post by this moderator, and there is none."""


class EscalationReasonMissing(ReviewError):
    """An escalation without a reason: the lead who takes the post must see why it was escalated."""


class Decision(enum.StrEnum):
    CONFIRM = "confirm"  # the model's verdict is right
    OVERTURN = "overturn"  # the moderator's own label replaces it
    ESCALATE = "escalate"  # for a lead to decide; the note says why (required)
    SKIP = "skip"  # back to the queue, undecided


@dataclass(frozen=True)
class Label:
    violation: bool
    category: str
    severity: int


@dataclass(frozen=True)
class Claim:
    post_id: int
    lease_expires_at: datetime
    event_id: int


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def _checked_lease(lease: timedelta) -> timedelta:
    if lease <= timedelta(0):
        raise ReviewError("a lease must be longer than zero")
    if lease > MAX_LEASE:
        raise ReviewError(f"a lease is at most {MAX_LEASE.total_seconds() / 60:g} minutes (asked for {lease})")
    return lease


def _mine(actor: Actor, now: datetime) -> ColumnElement[bool]:
    """A live claim of ``actor`` on a live (not erased) post."""
    return and_(Post.claimed_by_id == actor.id, Post.lease_expires_at > now, LIVE_POST)


def _erased(session: Session, post_id: int) -> bool:
    return session.scalar(select(Post.id).where(Post.id == post_id, ~LIVE_POST)) is not None


def _acting(session: Session, actor: Actor, permission: Permission) -> Actor:
    """The account as it is stored now (``require_live``). The command line (``OPERATOR``) is no
    account: it holds no claim and decides nothing (an event names a person)."""
    if account_id(actor) is None:
        raise PermissionDenied("the command line holds no claims and decides no posts: sign in to the app")
    return require_live(session, actor, permission)


def claim(
    sessions: sessionmaker[Session],
    actor: Actor,
    post_id: int | None = None,
    *,
    flt: QueueFilter = ANY,
    exclude: Collection[int] = (),
    lease: timedelta = DEFAULT_LEASE,
    now: datetime | None = None,
) -> Claim | None:
    """Claim ``post_id``, or (None) the first free post under ``flt`` in queue order:
    escalations, then model failures, then severity × confidence, then the oldest, leaving
    out ``exclude`` (the posts this moderator just skipped). None when there is nothing to
    claim (or ``post_id`` is taken, decided or not waiting for this actor)."""
    require(actor, Permission.REVIEW)
    lease = _checked_lease(lease)
    now = _now(now)
    claimable = and_(waiting(actor, flt), free(now))
    with writing(sessions) as session:
        actor = _acting(session, actor, Permission.REVIEW)
        query = with_verdict(select(Post.priority, Post.id), flt).where(free(now))
        if post_id is not None:
            query = query.where(Post.id == post_id)
        if exclude:
            query = query.where(Post.id.not_in(list(exclude)))
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(of=Post, skip_locked=True)
        first = in_queue_order(query, actor, flt, 1, session, now)
        if not first:
            return None
        chosen = first[0][1]
        expires = now + lease
        taken = rows_changed(
            session,
            update(Post)
            .where(Post.id == chosen, claimable)
            .values(claimed_by_id=actor.id, lease_expires_at=expires)
            .execution_options(synchronize_session=False),
        )
        if taken != 1:
            return None
        event = events.write(session, NewEvent(chosen, actor.id, EventAction.CLAIM, now, lease_expires_at=expires))
        return Claim(chosen, expires, event.id)


def held_claim(session: Session, actor: Actor, now: datetime | None = None) -> Claim | None:
    """The live claim ``actor`` already holds (the one with the most time left), so a page
    reload or a second tab resumes that post instead of leaving it locked until its lease ends."""
    now = _now(now)
    row = session.execute(
        select(Post.id, Post.lease_expires_at).where(_mine(actor, now)).order_by(Post.lease_expires_at.desc()).limit(1)
    ).first()
    if row is None:
        return None
    event_id = session.scalar(
        select(ReviewEvent.id)
        .where(ReviewEvent.post_id == row.id, ReviewEvent.user_id == actor.id)
        .order_by(ReviewEvent.id.desc())
        .limit(1)
    )
    return Claim(row.id, row.lease_expires_at, event_id or 0)


def renew(
    sessions: sessionmaker[Session],
    actor: Actor,
    post_id: int,
    *,
    lease: timedelta = DEFAULT_LEASE,
    now: datetime | None = None,
) -> datetime:
    """Extend a live claim (the review page does it while the moderator is active) to ``lease``
    from now (at most ``MAX_LEASE``). The account must still be active and allowed to review."""
    require(actor, Permission.REVIEW)
    lease = _checked_lease(lease)
    now = _now(now)
    with writing(sessions) as session:
        actor = _acting(session, actor, Permission.REVIEW)
        expires = now + lease
        done = rows_changed(
            session,
            update(Post)
            .where(Post.id == post_id, _mine(actor, now))
            .values(lease_expires_at=expires)
            .execution_options(synchronize_session=False),
        )
        if done != 1:
            raise ClaimLost(_lost(session, actor, post_id, now))
    return expires


def release(sessions: sessionmaker[Session], actor: Actor, post_id: int, *, now: datetime | None = None) -> None:
    """Give a claimed post back to the queue undecided (a no-op when the claim is gone). The
    account must still be active and allowed to review (deactivation released its claims)."""
    require(actor, Permission.REVIEW)
    now = _now(now)
    with writing(sessions) as session:
        actor = _acting(session, actor, Permission.REVIEW)
        done = rows_changed(
            session,
            update(Post)
            .where(Post.id == post_id, _mine(actor, now))
            .values(claimed_by_id=None, lease_expires_at=None)
            .execution_options(synchronize_session=False),
        )
        if done == 1:
            events.write(session, NewEvent(post_id, actor.id, EventAction.RELEASE, now))


def leave(sessions: sessionmaker[Session], user_id: int, post_id: int, *, now: datetime | None = None) -> bool:
    """The tab that showed ``post_id`` to ``user_id`` was closed or reloaded (app.py's
    ``/auth/leave``): their claim on it now ends ``LEAVE_GRACE`` from now instead of at the end of
    its lease, so a closed tab's post is back in the queue within seconds while a reload, which
    renews the claim when the page returns, keeps it. No event: the claim is not released, its
    lease is shorter. Whether a live claim was shortened."""
    now = _now(now)
    with writing(sessions) as session:
        return (
            rows_changed(
                session,
                update(Post)
                .where(Post.id == post_id, Post.claimed_by_id == user_id, Post.lease_expires_at > now + LEAVE_GRACE)
                .values(lease_expires_at=now + LEAVE_GRACE)
                .execution_options(synchronize_session=False),
            )
            == 1
        )


def force_release(
    sessions: sessionmaker[Session],
    actor: Actor,
    post_id: int,
    *,
    reason: str | None = None,
    client: str | None = None,
    now: datetime | None = None,
) -> str:
    """A lead ends another moderator's live claim on ``post_id`` (someone who left the post
    open and went away): the post is free at once, a ``release`` event by the lead notes whose
    claim it was (and ``reason``), and the audit log has it. The holder's username; a
    ReviewError when nobody holds the post. The holder's next action on it is refused
    (``ClaimLost``). Needs ``Permission.BULK``: acting on posts one does not hold."""
    from db.models import User

    require(actor, Permission.BULK)
    reason = _checked_note(reason)
    now = _now(now)
    with writing(sessions) as session:
        actor = require_live(session, actor, Permission.BULK)
        post = session.get(Post, post_id, with_for_update=True, populate_existing=True)
        if post is None:
            raise ReviewError(f"there is no post {post_id}")
        holder_id = post.claimed_by_id
        if holder_id is None or post.lease_expires_at is None or post.lease_expires_at <= now:
            raise ReviewError(f"nobody is reviewing post {post_id}: there is no claim to release")
        holder = session.scalar(select(User.username).where(User.id == holder_id)) or f"user {holder_id}"
        note = f"released {holder}'s claim" + (f": {reason}" if reason else "")
        if not events.end_claim(session, post_id, holder_id, by=actor.id, now=now, note=note[:MAX_NOTE]):
            # SQLite holds the write lock and Postgres the row: cannot happen
            raise ReviewError(f"the claim on post {post_id} changed meanwhile; nothing was released")
        audit.record(session, actor, Action.CLAIMS_RELEASED, holder, client=client, count=1, post_id=post_id,
                     why=reason or "released by a lead")  # fmt: skip
        return holder


def _lost(session: Session, actor: Actor, post_id: int, now: datetime) -> str:
    post = session.get(Post, post_id)
    if post is None:
        return f"there is no post {post_id}"
    if _erased(session, post_id):
        return f"post {post_id} was erased; nothing was saved"
    if post.claimed_by_id == actor.id:
        return f"your claim on post {post_id} expired; nothing was saved: take it again with Next"
    if post.claimed_by_id is not None and post.lease_expires_at is not None and post.lease_expires_at > now:
        return f"another moderator is reviewing post {post_id}; nothing was saved"
    return f"you do not hold post {post_id} (status {post.status}); nothing was saved: take it again with Next"


def decide(
    sessions: sessionmaker[Session],
    actor: Actor,
    post_id: int,
    decision: Decision | str,
    *,
    label: Label | None = None,
    note: str | None = None,
    time_spent_ms: int | None = None,
    idempotency_key: str | None = None,
    policy: Policy | None = None,
    share: float = 0.0,
    raters: int = 2,
    now: datetime | None = None,
) -> ReviewEvent:
    """Record a decision on a post this moderator holds a live claim on, and end the claim.

    confirm: the on-screen verdict becomes the label (it must be a usable verdict); overturn:
    ``label`` replaces it; escalate: the post waits for a lead, first in their queue, with the
    reason in ``note`` (required: EscalationReasonMissing without one); skip: back
    to the queue undecided. A confirm or overturn of a queued post is drawn, at ``share``, for a
    blind second review (status ``second_review``); it stays there, each time for a moderator
    who has not labelled it yet, until ``raters`` people have labelled it (the first decision
    included; QA_RATERS, 2 by default), and the last of those decisions settles it. Decisions
    taken in the second review are marked ``second_review``. Repeating a call with
    the same ``idempotency_key`` returns the first event and writes nothing (a double-click, a
    retried request)."""
    require(actor, Permission.REVIEW)
    try:
        decision = Decision(decision)
    except ValueError:
        raise ReviewError(f"unknown decision {decision!r}: use confirm, overturn, escalate or skip") from None
    now = _now(now)
    policy = policy or load_policy()
    note = _checked_note(note)
    _reason_given(decision, note)
    if decision is Decision.OVERTURN:
        label = _checked(label, policy)
    elif label is not None:
        raise ReviewError(f"{decision.value} takes no label (overturn does)")
    with writing(sessions) as session:
        actor = _acting(session, actor, Permission.REVIEW)
        verdict = current_verdict(session, post_id)
        decision = _as_confirm(decision, label, verdict)
        seen = _repeated(session, actor, post_id, decision, idempotency_key)
        if seen is not None:
            return seen
        before = session.scalar(select(Post.status).where(Post.id == post_id, _mine(actor, now)))
        if before is None:
            # a first call with the same key may have finished meanwhile (Postgres reads committed rows)
            seen = _repeated(session, actor, post_id, decision, idempotency_key)
            if seen is not None:
                return seen
            raise ClaimLost(_lost(session, actor, post_id, now))  # before anything about the post is told
        if decision is Decision.CONFIRM:
            if verdict is None or not is_usable(verdict.parse_status):
                raise ReviewError(f"post {post_id} has no usable model verdict to confirm: overturn it with a label")
            label = _verdict_label(verdict)
        values = _after(decision, now)
        to_second_review = False
        if decision in (Decision.CONFIRM, Decision.OVERTURN):
            if before == PostStatus.QUEUED and drawn_for_second_review(post_id, share):
                to_second_review = True
                values["first_decider_id"] = actor.id
            elif before == PostStatus.SECOND_REVIEW and len(labels.raters_of(session, post_id) | {actor.id}) < raters:
                to_second_review = True  # more independent labels wanted
        done = rows_changed(
            session,
            update(Post)
            .where(Post.id == post_id, _mine(actor, now))
            .values(**values)
            .execution_options(synchronize_session=False),
        )
        if done != 1:
            # On Postgres a concurrent call with the same key can take the row between our read
            # and this update (the update waits for it, then finds the claim ended): its event
            # is committed now, and this call is a repeat of it, not a failure.
            seen = _repeated(session, actor, post_id, decision, idempotency_key)
            if seen is not None:
                return seen
            raise ClaimLost(_lost(session, actor, post_id, now))
        event = events.write(
            session,
            NewEvent(
                post_id,
                actor.id,
                EventAction(decision.value),
                now,
                status_before=before,
                second_review=before == PostStatus.SECOND_REVIEW,
                to_second_review=to_second_review,
                verdict_id=verdict.id if verdict is not None else None,
                label_violation=label.violation if label else None,
                label_category=label.category if label else None,
                label_severity=label.severity if label else None,
                note=note,
                time_spent_ms=time_spent_ms,
                idempotency_key=idempotency_key,
            ),
        )
        labels.refresh(session, [post_id])
        return event


MAX_BULK = 1000  # posts per bulk decision


@dataclass(frozen=True)
class BulkResult:
    bulk_id: str  # shared by the events of this bulk decision
    decided: list[int]  # post ids, in order
    skipped: dict[int, str]  # post id → why it was left alone


def decide_bulk(
    sessions: sessionmaker[Session],
    actor: Actor,
    post_ids: list[int],
    decision: Decision | str,
    *,
    label: Label | None = None,
    note: str | None = None,
    policy: Policy | None = None,
    now: datetime | None = None,
    shown_at: datetime | None = None,
) -> BulkResult:
    """One decision (confirm, overturn or escalate) for many waiting posts, in one transaction:
    an event per post, all with one ``bulk_id``. A post someone else is reviewing, one that is
    no longer waiting for ``actor`` (decided, in its blind second review), one whose content an
    ingest update replaced after ``shown_at`` (when the list the lead chose from was read) or,
    for confirm, one without a usable verdict, is skipped with the reason. An escalation needs
    ``note``: its reason. Bulk decisions are not drawn for second review: the share is measured
    on one-by-one decisions."""
    require(actor, Permission.BULK)
    try:
        decision = Decision(decision)
    except ValueError:
        raise ReviewError(f"unknown decision {decision!r}: use confirm, overturn or escalate") from None
    if decision is Decision.SKIP:
        raise ReviewError("skip is not a bulk decision")
    ids = list(dict.fromkeys(post_ids))
    if not ids:
        raise ReviewError("no posts selected")
    if len(ids) > MAX_BULK:
        raise ReviewError(f"at most {MAX_BULK} posts per bulk decision ({len(ids)} selected)")
    now = _now(now)
    policy = policy or load_policy()
    note = _checked_note(note)
    _reason_given(decision, note)
    if decision is Decision.OVERTURN:
        label = _checked(label, policy)
    elif label is not None:
        raise ReviewError(f"{decision.value} takes no label (overturn does)")
    bulk_id = str(uuid.uuid4())
    decided: list[int] = []
    skipped: dict[int, str] = {}
    statuses = waiting_statuses(actor, QueueFilter(second_review=False))
    with writing(sessions) as session:
        actor = _acting(session, actor, Permission.BULK)
        found = {
            row.id: row
            for row in session.execute(
                select(Post.id, Post.status, Post.claimed_by_id, Post.lease_expires_at)
                .where(Post.id.in_(ids))
                .with_for_update()
            )
        }
        erased = set(session.scalars(select(Post.id).where(Post.id.in_(ids), ~LIVE_POST)))
        changed: set[int] = set()
        if shown_at is not None:
            replaced = (ReviewEvent.action == EventAction.UPDATE, ReviewEvent.created_at > shown_at)
            changed = set(session.scalars(select(ReviewEvent.post_id).where(ReviewEvent.post_id.in_(ids), *replaced)))
        for post_id in ids:
            row = found.get(post_id)
            if row is None:
                skipped[post_id] = "no such post"
                continue
            if post_id in erased:
                skipped[post_id] = "erased: nothing left to decide"
                continue
            if row.status not in statuses:
                skipped[post_id] = f"not waiting for you (status {row.status})"
                continue
            if post_id in changed:
                skipped[post_id] = "its content was replaced (an ingest update) after the list was shown: look again"
                continue
            live = row.lease_expires_at is not None and row.lease_expires_at > now
            if live and row.claimed_by_id != actor.id:
                skipped[post_id] = "another moderator is reviewing it"
                continue
            verdict = current_verdict(session, post_id)
            post_label = label
            if decision is Decision.CONFIRM:
                if verdict is None or not is_usable(verdict.parse_status):
                    skipped[post_id] = "no usable model verdict to confirm"
                    continue
                post_label = _verdict_label(verdict)
            action = _as_confirm(decision, label, verdict)
            session.execute(
                update(Post)
                .where(Post.id == post_id)
                .values(**_after(action, now))
                .execution_options(synchronize_session=False)
            )
            events.write(
                session,
                NewEvent(
                    post_id,
                    actor.id,
                    EventAction(action.value),
                    now,
                    status_before=row.status,
                    verdict_id=verdict.id if verdict is not None else None,
                    label_violation=post_label.violation if post_label else None,
                    label_category=post_label.category if post_label else None,
                    label_severity=post_label.severity if post_label else None,
                    note=note,
                    bulk_id=bulk_id,
                ),
            )
            decided.append(post_id)
        labels.refresh(session, decided)
    return BulkResult(bulk_id, decided, skipped)


def _checked_note(note: str | None) -> str | None:
    note = (note or "").strip() or None
    if note is not None and len(note) > MAX_NOTE:
        raise ReviewError(f"a note may have at most {MAX_NOTE} characters")
    return note


def _reason_given(decision: Decision, note: str | None) -> None:
    """An escalation carries its reason in the note (already stripped by _checked_note)."""
    if decision is Decision.ESCALATE and note is None:
        raise EscalationReasonMissing("an escalation needs a reason: say in the note why a lead should decide it")


def drawn_for_second_review(post_id: int, share: float) -> bool:
    """Whether a moderator's decision on ``post_id`` goes to a second review: a fixed draw per
    post (a hash of its id), so the share holds exactly over many posts and is reproducible."""
    digest = hashlib.sha256(f"second-review:{post_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < share * 2**64


def _verdict_label(verdict: Verdict) -> Label:
    return _normal(Label(bool(verdict.violation), verdict.category or "none", verdict.severity or 0))


def _as_confirm(decision: Decision, label: Label | None, verdict: Verdict | None) -> Decision:
    """An overturn whose label is the model's own (a blind second review that agrees with a
    hidden verdict, say) is a confirm: "overturn" always means the human disagrees."""
    if decision is not Decision.OVERTURN or label is None or verdict is None or not is_usable(verdict.parse_status):
        return decision
    return Decision.CONFIRM if _normal(label) == _verdict_label(verdict) else decision


def _repeated(session: Session, actor: Actor, post_id: int, decision: Decision, key: str | None) -> ReviewEvent | None:
    """The event an earlier call with the same idempotency key wrote (None: none did). A key is
    one action of one moderator on one post; reusing it for anything else is refused."""
    if key is None:
        return None
    seen = session.scalars(select(ReviewEvent).where(ReviewEvent.idempotency_key == key)).first()
    if seen is not None and (seen.user_id, seen.post_id, seen.action) != (actor.id, post_id, decision.value):
        raise ReviewError("that idempotency key belongs to another action")
    return seen


def _normal(label: Label) -> Label:
    """ "No violation" has no category or severity."""
    return label if label.violation else Label(False, "none", 0)


def _checked(label: Label | None, policy: Policy) -> Label:
    if label is None:
        raise ReviewError("overturn needs a label: violation, category and severity")
    if label.category not in policy.ids:
        raise ReviewError(f"unknown category {label.category!r}")
    if not label.violation:
        return _normal(label)
    if label.category == "none" or not 1 <= label.severity <= 3:
        raise ReviewError("a violation needs a category other than none and a severity of 1–3")
    return label


def _after(decision: Decision, now: datetime) -> dict[str, object]:
    """The post row's new values after ``decision`` on it, but its status (the event's, by the
    table in review/status.py): the claim ends (and an escalation is first in the leads' queue)."""
    values: dict[str, object] = {"claimed_by_id": None, "lease_expires_at": None, "updated_at": now}
    if decision is Decision.ESCALATE:
        values["priority"] = ESCALATED_PRIORITY
    return values


def undo(
    sessions: sessionmaker[Session],
    actor: Actor,
    event_id: int,
    *,
    lease: timedelta = DEFAULT_LEASE,
    now: datetime | None = None,
) -> Claim:
    """Take back this moderator's decision ``event_id``: a ``reopen`` event, and the post is
    claimed by them again to decide anew. Only the post's latest event can be undone (not after
    someone else has claimed or decided it since), and not on an erased post."""
    require(actor, Permission.REVIEW)
    lease = _checked_lease(lease)
    now = _now(now)
    with writing(sessions) as session:
        actor = _acting(session, actor, Permission.REVIEW)
        event = session.get(ReviewEvent, event_id)
        decisions = {d.value for d in Decision}
        if event is None or event.user_id != actor.id or event.action not in decisions:
            raise ReviewError(f"event {event_id} is not a decision of yours")
        # the post's row, locked (Postgres; SQLite holds the write lock): no claim slips in now
        post = session.get(Post, event.post_id, with_for_update=True, populate_existing=True)
        assert post is not None
        if _erased(session, event.post_id):
            raise ReviewError(f"post {event.post_id} was erased; its decisions cannot be undone")
        latest = session.scalar(
            select(ReviewEvent.id).where(ReviewEvent.post_id == event.post_id).order_by(ReviewEvent.id.desc()).limit(1)
        )
        if latest != event.id:
            raise ReviewError(f"post {event.post_id} has changed since that decision; it cannot be undone")
        if post.lease_expires_at is not None and post.lease_expires_at > now and post.claimed_by_id != actor.id:
            raise ReviewError(f"another moderator is reviewing post {event.post_id}; it cannot be undone")
        expires = now + lease
        note = f"undo of event {event.id} ({event.action})"
        reopen = NewEvent(event.post_id, actor.id, EventAction.REOPEN, now, note=note, lease_expires_at=expires,
                          undoes_id=event.id, undone_status_before=event.status_before)  # fmt: skip
        before = next_status(post.status, reopen.move())
        priority = ESCALATED_PRIORITY if before == PostStatus.ESCALATED else _queue_priority(session, event.post_id)
        session.execute(
            update(Post)
            .where(Post.id == event.post_id)
            .values(priority=priority, claimed_by_id=actor.id, lease_expires_at=expires, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        reopened = events.write(session, reopen)
        labels.refresh(session, [event.post_id])
        return Claim(event.post_id, expires, reopened.id)


def _queue_priority(session: Session, post_id: int) -> float:
    """The priority scoring gave a post, with its reports (for an undone escalation or decision)."""
    reports = session.scalar(select(Post.report_count).where(Post.id == post_id)) or 0
    return queue_priority(current_verdict(session, post_id), reports)


def new_idempotency_key() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class HistoryEntry:
    event_id: int
    at: datetime
    who: str | None
    action: str
    label: str | None  # None also when the viewer may not see it (blind second review)
    note: str | None  # None also when the viewer may not read it
    note_hidden: bool
    label_hidden: bool = False
    second_review: bool = False
    bulk_id: str | None = None


def history(session: Session, actor: Actor, post_id: int) -> list[HistoryEntry]:
    """Every event of a post, oldest first. Other moderators' notes are shown only to roles
    that may read them (leads, admins); during a blind second review the earlier decisions'
    labels and notes are hidden from the second reviewer."""
    from db.models import User

    require(actor, Permission.REVIEW)
    blind = blind_for(session, actor, post_id)
    rows = session.execute(
        select(ReviewEvent, User.username)
        .outerjoin(User, User.id == ReviewEvent.user_id)
        .where(ReviewEvent.post_id == post_id)
        .order_by(ReviewEvent.id)
    )
    out = []
    for event, username in rows:
        label = None
        if event.label_violation is not None:
            violated = f"{event.label_category} · severity {event.label_severity}"
            label = violated if event.label_violation else "no violation"
        label_hidden = blind and label is not None
        hidden = bool(event.note) and not may_read_note(actor, event.user_id, event.action, blind=blind)
        out.append(
            HistoryEntry(
                event_id=event.id,
                at=event.created_at,
                who=username,
                action="decision (hidden)" if label_hidden else event.action,  # the action tells the label
                label=None if label_hidden else label,
                note=None if hidden else event.note,
                note_hidden=hidden,
                label_hidden=label_hidden,
                second_review=event.second_review,
                bulk_id=event.bulk_id,
            )
        )
    return out


@dataclass(frozen=True)
class Escalation:
    post_id: int
    by: str | None  # who escalated it
    at: datetime
    reason: str | None  # None: escalated before a reason was required, or not for this viewer
    reason_hidden: bool = False


def escalations(session: Session, actor: Actor, post_ids: Collection[int]) -> dict[int, Escalation]:
    """Why each of ``post_ids`` that is escalated now was escalated: its latest ``escalate``
    event (an undone escalation is followed by a reopen and the post is no longer escalated).
    The reason is a note, read under the notes rule of ``history``: leads and admins read every
    one, a moderator only their own."""
    from db.models import User

    require(actor, Permission.REVIEW)
    ids = list(post_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(ReviewEvent.post_id, ReviewEvent.user_id, User.username, ReviewEvent.created_at, ReviewEvent.note)
        .join(Post, Post.id == ReviewEvent.post_id)
        .outerjoin(User, User.id == ReviewEvent.user_id)
        .where(
            ReviewEvent.post_id.in_(ids),
            ReviewEvent.action == EventAction.ESCALATE,
            Post.status == PostStatus.ESCALATED,
        )
        .order_by(ReviewEvent.id)
    )
    out: dict[int, Escalation] = {}
    for post_id, user_id, username, at, note in rows:  # oldest first: the latest one stays
        hidden = bool(note) and not may_read_note(actor, user_id, EventAction.ESCALATE)
        out[post_id] = Escalation(post_id, username, at, None if hidden else note, hidden)
    return out

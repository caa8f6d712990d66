"""review/decisions.py, claims and decisions: the queue order of claims, leases (bounded, renewed,
released, resumed, a lead's release of another's claim), refusals that write nothing, labels,
escalations, idempotency (also two submits at once), undo, history with hidden notes, the stored
account checked on every call, erased posts refused, and 8 real processes deciding one queue
concurrently. Bulk decisions and second review have files of their own
(test_decisions_bulk.py, test_decisions_second_review.py).

The helpers at the top build the cast and queued posts that those files, and other modules'
tests, use too."""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from db.models import Post, ReviewEvent, User, Verdict
from review.audit import Action
from review.auth import OPERATOR, Actor, PermissionDenied, create_user
from review.decisions import (
    MAX_LEASE,
    ClaimLost,
    EscalationReasonMissing,
    Label,
    claim,
    decide,
    decide_bulk,
    escalations,
    force_release,
    held_claim,
    history,
    release,
    renew,
    undo,
)
from review.errors import ReviewError
from review.priority import ESCALATED_PRIORITY
from review.verdicts import point_at
from tests.conftest import PASSWORD, audit_rows, people
from tests.factories import (
    claim_holder,
    erase_posts,
    event_count,
    moderator_processes,
    queued_posts_with_verdicts,
    spam_queue,
    staff,
)

# --------------------------------------------------------------------------------------------
# This file's builders and readers


def _queue(desk, n: int, *, failed: tuple[int, ...] = ()) -> list[int]:
    """n queued posts with a verdict each (severity i % 4, confidence 0.9), oldest first;
    indexes in ``failed`` get a failed verdict (priority 100) instead."""
    ids = []
    with desk.sessions() as session, session.begin():
        for i in range(n):
            bad = i in failed
            severity = i % 4
            post = Post(source="t", external_id=f"p{i}", text=f"post {i}", status="queued",
                        priority=100.0 if bad else severity * 0.9)  # fmt: skip
            session.add(post)
            session.flush()
            verdict = (
                Verdict(post_id=post.id, provider="transformers", model_id="m", prompt_version="v", input_hash=f"i{i}",
                        text_hash=f"t{i}", parse_status="failed" if bad else "ok",
                        violation=None if bad else severity > 0,
                        category=None if bad else ("fraud_spam" if severity else "none"),
                        severity=None if bad else severity, confidence=None if bad else 0.9, tags=[], parse_notes=[])
            )  # fmt: skip
            session.add(verdict)
            session.flush()
            point_at(session, verdict)
            ids.append(post.id)
    return ids


def _post(desk, post_id: int) -> Post:
    with desk.sessions() as session:
        return session.get(Post, post_id)


def _set_stored(desk, name: str, **values: object) -> None:
    """Change the stored account behind the actor's back (as another admin's session would)."""
    with desk.sessions() as session, session.begin():
        session.execute(update(User).where(User.username == name).values(**values))


# --------------------------------------------------------------------------------------------
# Claims and leases


def test_claims_follow_the_queue_order_and_exclude_each_other(desk) -> None:
    p = people(desk)
    ids = _queue(desk, 6, failed=(4,))  # severities 0 1 2 3 (failed) 1
    first = claim(desk.sessions, p["ann"])
    assert first.post_id == ids[4]  # a model failure first
    second = claim(desk.sessions, p["bob"])
    assert second.post_id == ids[3]  # then severity × confidence
    assert claim(desk.sessions, p["bob"], ids[4]) is None  # taken by ann
    order = [claim(desk.sessions, p["bob"]).post_id for _ in range(4)]
    assert order == [ids[2], ids[1], ids[5], ids[0]]  # equal priority: oldest first
    assert claim(desk.sessions, p["lea"]) is None  # nothing left
    # an expired lease is free again; the late decision of its holder writes nothing
    now = datetime.now(UTC)
    later = now + timedelta(minutes=11)
    taken = claim(desk.sessions, p["lea"], ids[4], now=later)
    assert taken is not None and taken.post_id == ids[4]
    before = event_count(desk)
    with pytest.raises(ClaimLost, match="another moderator is reviewing"):
        decide(desk.sessions, p["ann"], ids[4], "overturn", label=Label(True, "fraud_spam", 2), now=later)
    with pytest.raises(ClaimLost, match="your claim on post .* expired"):
        decide(desk.sessions, p["bob"], ids[3], "skip", now=later + timedelta(minutes=11))
    with pytest.raises(ClaimLost, match="you do not hold post"):
        decide(desk.sessions, p["ann"], ids[3], "skip", now=later + timedelta(minutes=11))
    assert event_count(desk) == before
    assert _post(desk, ids[3]).status == "queued"
    # renewing keeps a claim alive; releasing gives it back
    expires = renew(desk.sessions, p["lea"], ids[4], now=later + timedelta(minutes=5))
    assert expires > later + timedelta(minutes=14)
    with pytest.raises(ClaimLost):
        renew(desk.sessions, p["ann"], ids[4])
    release(desk.sessions, p["lea"], ids[4], now=later)
    assert claim(desk.sessions, p["ann"], ids[4], now=later) is not None


def test_held_claim_resumes_a_live_claim_only(desk) -> None:
    p = staff(desk)
    ann, bob = p["ann"], p["bob"]
    ids = queued_posts_with_verdicts(desk, ["fraud_spam", "sexual", "none"])
    now = datetime.now(UTC)
    with desk.sessions() as session:
        assert held_claim(session, ann, now) is None
    got = claim(desk.sessions, ann, ids[0], now=now)
    with desk.sessions() as session:
        held = held_claim(session, ann, now + timedelta(minutes=1))
        assert held is not None
        assert (held.post_id, held.lease_expires_at, held.event_id) == (ids[0], got.lease_expires_at, got.event_id)
        assert held_claim(session, bob, now) is None
        assert held_claim(session, ann, now + timedelta(minutes=11)) is None  # the lease ran out
    decide(desk.sessions, ann, ids[0], "confirm", share=0.0, now=now + timedelta(minutes=2))
    with desk.sessions() as session:
        assert held_claim(session, ann, now + timedelta(minutes=3)) is None
    # two claims: the one with the most time left
    claim(desk.sessions, ann, ids[1], now=now, lease=timedelta(minutes=5))
    longer = claim(desk.sessions, ann, ids[2], now=now, lease=timedelta(minutes=20))
    with desk.sessions() as session:
        assert held_claim(session, ann, now + timedelta(minutes=1)).post_id == ids[2]
        assert held_claim(session, ann, now + timedelta(minutes=1)).event_id == longer.event_id
        assert held_claim(session, ann, now + timedelta(minutes=6)).post_id == ids[2]
        assert held_claim(session, ann, now + timedelta(minutes=21)) is None
    # after an expiry someone else may take it, and it is theirs to resume
    taken = claim(desk.sessions, bob, ids[2], now=now + timedelta(minutes=21))
    with desk.sessions() as session:
        assert held_claim(session, bob, now + timedelta(minutes=22)).post_id == taken.post_id == ids[2]


def test_renew_and_release_check_the_stored_account(desk) -> None:
    """Before the fix a deactivated account (its Actor still in a browser session) kept renewing
    and releasing."""
    p = people(desk)
    ids = spam_queue(desk, 2)
    assert claim(desk.sessions, p["ann"], ids[0]) is not None
    _set_stored(desk, "ann", active=False)  # not through set_active: the claim stays, only the check stops it
    with pytest.raises(PermissionDenied, match="no longer active"):
        renew(desk.sessions, p["ann"], ids[0])
    with pytest.raises(PermissionDenied, match="no longer active"):
        release(desk.sessions, p["ann"], ids[0])
    assert claim_holder(desk, ids[0]) == p["ann"].id  # nothing changed
    with pytest.raises(PermissionDenied):  # an Actor claiming a role it does not have
        renew(desk.sessions, Actor(p["ann"].id, "ann", "viewer"), ids[0])


def test_leases_are_bounded(desk) -> None:
    """A lease longer than MAX_LEASE (30 minutes) is refused, not clamped; a 10-year lease
    worked before the fix."""
    p = people(desk)
    ids = spam_queue(desk, 2)
    now = datetime.now(UTC)
    got = claim(desk.sessions, p["ann"], ids[0], lease=MAX_LEASE, now=now)
    assert got is not None and got.lease_expires_at == now + MAX_LEASE
    for lease in (timedelta(days=3650), MAX_LEASE + timedelta(seconds=1)):
        with pytest.raises(ReviewError, match="a lease is at most 30 minutes"):
            renew(desk.sessions, p["ann"], ids[0], lease=lease, now=now)
        with pytest.raises(ReviewError, match="a lease is at most 30 minutes"):
            claim(desk.sessions, p["bob"], ids[1], lease=lease)
    with pytest.raises(ReviewError, match="longer than zero"):
        renew(desk.sessions, p["ann"], ids[0], lease=timedelta(0), now=now)
    with desk.sessions() as session:
        expires = session.scalar(select(Post.lease_expires_at).where(Post.id == ids[0]))
    assert expires == now + MAX_LEASE
    assert renew(desk.sessions, p["ann"], ids[0], now=now) == now + timedelta(minutes=10)  # the default
    event = decide(desk.sessions, p["ann"], ids[0], "confirm", now=now)
    with pytest.raises(ReviewError, match="a lease is at most"):
        undo(desk.sessions, p["ann"], event.id, lease=timedelta(hours=2), now=now)
    assert claim_holder(desk, ids[1]) is None


def test_a_lead_releases_another_moderators_claim(desk) -> None:
    p = people(desk)
    ids = spam_queue(desk, 2)
    assert claim(desk.sessions, p["ann"], ids[0]) is not None
    with pytest.raises(PermissionDenied, match="a moderator may not bulk"):
        force_release(desk.sessions, p["bob"], ids[0])
    with pytest.raises(ReviewError, match="nobody is reviewing post"):
        force_release(desk.sessions, p["lea"], ids[1])
    with pytest.raises(ReviewError, match="there is no post"):
        force_release(desk.sessions, p["lea"], 999_999)
    assert force_release(desk.sessions, p["lea"], ids[0], reason="  gone home for the day ") == "ann"
    assert claim_holder(desk, ids[0]) is None
    with pytest.raises(ClaimLost, match="you do not hold post"):
        decide(desk.sessions, p["ann"], ids[0], "confirm")
    with desk.sessions() as session:
        entries = history(session, p["lea"], ids[0])
    assert [(e.who, e.action, e.note) for e in entries][-1] == (
        "lea",
        "release",
        "released ann's claim: gone home for the day",
    )
    (released,) = audit_rows(desk, Action.CLAIMS_RELEASED)
    assert (released.actor_name, released.subject, released.details["post_id"]) == ("lea", "ann", ids[0])
    # a lead demoted since sign-in is refused by the stored role
    assert claim(desk.sessions, p["bob"], ids[1]) is not None
    _set_stored(desk, "lea", role="moderator")
    with pytest.raises(PermissionDenied):
        force_release(desk.sessions, p["lea"], ids[1])
    assert claim_holder(desk, ids[1]) == p["bob"].id


# --------------------------------------------------------------------------------------------
# Decisions


def test_decisions_labels_escalation_and_idempotency(desk) -> None:
    p = people(desk)
    ids = _queue(desk, 4, failed=(0,))
    ann = p["ann"]
    # confirm takes the on-screen verdict as the label
    got = claim(desk.sessions, ann, ids[3])
    event = decide(desk.sessions, ann, ids[3], "confirm", note="clear spam", time_spent_ms=4200, idempotency_key="k1")
    assert (event.label_violation, event.label_category, event.label_severity) == (True, "fraud_spam", 3)
    assert event.verdict_id is not None and event.note == "clear spam" and got.event_id < event.id
    again = decide(desk.sessions, ann, ids[3], "confirm", idempotency_key="k1")  # a double click
    assert again.id == event.id and _post(desk, ids[3]).status == "decided"
    # a failed verdict cannot be confirmed; overturn needs a proper label
    claim(desk.sessions, ann, ids[0])
    with pytest.raises(ReviewError, match="no usable model verdict"):
        decide(desk.sessions, ann, ids[0], "confirm")
    refusals = [(None, "needs a label"), (Label(True, "nonsense", 2), "unknown category"),
                (Label(True, "none", 2), "category other than none"), (Label(True, "sexual", 7), "1–3")]  # fmt: skip
    with pytest.raises(ReviewError, match="unknown decision 'approve'"):
        decide(desk.sessions, ann, ids[0], "approve")
    for bad, message in refusals:
        with pytest.raises(ReviewError, match=message):
            decide(desk.sessions, ann, ids[0], "overturn", label=bad)
    event = decide(desk.sessions, ann, ids[0], "overturn", label=Label(False, "sexual", 3))
    assert (event.label_violation, event.label_category, event.label_severity) == (False, "none", 0)
    # escalate: it needs a reason (refused without one, writing nothing), only leads may take it,
    # and it comes first for them
    claim(desk.sessions, ann, ids[1])
    for blank in (None, "", "  \n "):
        with pytest.raises(EscalationReasonMissing, match="needs a reason"):
            decide(desk.sessions, ann, ids[1], "escalate", note=blank)
        with pytest.raises(EscalationReasonMissing):
            decide_bulk(desk.sessions, p["lea"], [ids[2]], "escalate", note=blank)
    assert (_post(desk, ids[1]).status, _post(desk, ids[2]).status) == ("queued", "queued")
    decide(desk.sessions, ann, ids[1], "escalate", note="not sure: satire?")
    assert (_post(desk, ids[1]).status, _post(desk, ids[1]).priority) == ("escalated", ESCALATED_PRIORITY)
    assert claim(desk.sessions, p["bob"], ids[1]) is None
    assert claim(desk.sessions, p["lea"]).post_id == ids[1]
    decide(desk.sessions, p["lea"], ids[1], "skip")
    assert _post(desk, ids[1]).status == "escalated"  # a skipped escalation stays escalated
    # a moderator's note is hidden from other moderators, shown to leads
    bob_sees = history(desk.sessions(), p["bob"], ids[1])
    assert [h.action for h in bob_sees] == ["claim", "escalate", "claim", "skip"]
    assert bob_sees[1].note is None and bob_sees[1].note_hidden
    assert history(desk.sessions(), p["lea"], ids[1])[1].note == "not sure: satire?"
    assert history(desk.sessions(), ann, ids[1])[1].note == "not sure: satire?"
    # the reason beside the escalated post, under the same rule for notes
    with desk.sessions() as session:
        for who, reason in ((p["lea"], "not sure: satire?"), (ann, "not sure: satire?"), (p["bob"], None)):
            seen = escalations(session, who, ids)
            assert list(seen) == [ids[1]] and (seen[ids[1]].by, seen[ids[1]].reason) == ("ann", reason)
        assert escalations(session, p["bob"], ids)[ids[1]].reason_hidden


def test_moderators_need_a_role_that_reviews(desk) -> None:
    ids = _queue(desk, 1)
    stranger = Actor(999, "x", "nobody")
    with pytest.raises(PermissionDenied):
        claim(desk.sessions, stranger)
    with pytest.raises(PermissionDenied):
        decide(desk.sessions, stranger, ids[0], "confirm")


def test_keys_accounts_and_confirmed_labels_are_checked(desk) -> None:
    p = people(desk)
    ids = _queue(desk, 3)
    ann, bob = p["ann"], p["bob"]
    claim(desk.sessions, ann, ids[1])
    first = decide(desk.sessions, ann, ids[1], "escalate", note="private to leads", idempotency_key="dup")
    claim(desk.sessions, bob, ids[2])
    with pytest.raises(ReviewError, match="belongs to another action"):
        decide(desk.sessions, bob, ids[2], "confirm", idempotency_key="dup")  # not ann's event and note
    assert _post(desk, ids[2]).claimed_by_id == bob.id and first.note == "private to leads"
    # a verdict that says "no violation" but names a category is confirmed as plain "no violation"
    with desk.sessions() as session, session.begin():
        verdict = Verdict(post_id=ids[0], provider="transformers", model_id="m", prompt_version="v", input_hash="x",
                          text_hash="x", parse_status="ok", violation=False, category="sexual", severity=2,
                          confidence=0.4, tags=[], parse_notes=[])  # fmt: skip
        session.add(verdict)
        session.flush()
        point_at(session, verdict)
    assert _post(desk, ids[0]).verdict_category == "none"
    claim(desk.sessions, ann, ids[0])
    confirmed = decide(desk.sessions, ann, ids[0], "confirm")
    assert (confirmed.label_violation, confirmed.label_category, confirmed.label_severity) == (False, "none", 0)
    # a deactivated account cannot finish what it claimed
    from review.auth import set_active

    set_active(desk.sessions, "bob", False, by=p["admin"])
    with pytest.raises(PermissionDenied, match="no longer active"):
        decide(desk.sessions, bob, ids[2], "skip")


def test_decisions_check_the_stored_account_as_everything_else_does(desk) -> None:
    """Decisions use require_live, as every other core function: an Actor whose id is now
    another account's (its name differs) is refused, and the command line, which is no account,
    is told it decides nothing. Before the fix decisions had their own copy of the check, which
    took the stored account for the id whatever the name (the lead "bob" claimed as ann) and
    said "no longer active" to the command line."""
    p = people(desk)
    ids = spam_queue(desk, 2)
    stale = Actor(p["ann"].id, "bob", "lead")
    with pytest.raises(PermissionDenied, match="no longer active: sign in again"):
        claim(desk.sessions, stale, ids[0])
    with pytest.raises(PermissionDenied, match="no longer active: sign in again"):
        decide_bulk(desk.sessions, stale, [ids[0]], "confirm")
    with pytest.raises(PermissionDenied, match="^the command line holds no claims and decides no posts"):
        claim(desk.sessions, OPERATOR, ids[0])
    with pytest.raises(PermissionDenied, match="^the command line holds no claims"):
        decide_bulk(desk.sessions, OPERATOR, [ids[0]], "confirm")
    assert claim_holder(desk, ids[0]) is None and event_count(desk) == 0


def test_concurrent_decisions_with_one_key_are_one_decision(desk) -> None:
    """Two threads send the same decision with the same key at once (a double submit), 15
    times: both get the one event, and one event is written. Before the fix the second said
    "nothing was saved" on Postgres although the first had saved it (94 in 100)."""
    p = people(desk)
    ids = spam_queue(desk, 15)
    outcomes = []
    with ThreadPoolExecutor(2) as pool:
        for i, post_id in enumerate(ids):
            assert claim(desk.sessions, p["ann"], post_id) is not None
            start = threading.Barrier(2)

            def send(post_id: int = post_id, key: str = f"double-{i}", start: threading.Barrier = start) -> object:
                start.wait(10)
                try:
                    return decide(desk.sessions, p["ann"], post_id, "confirm", idempotency_key=key).id
                except ClaimLost as exc:
                    return str(exc)

            outcomes.append(list(pool.map(lambda _: send(), range(2))))
    refused = [o for o in outcomes if o[0] != o[1] or not isinstance(o[0], int)]
    assert not refused, refused
    with desk.sessions() as session:
        keys = session.scalars(select(ReviewEvent.idempotency_key).where(ReviewEvent.action == "confirm")).all()
    assert sorted(keys) == sorted(f"double-{i}" for i in range(len(ids)))


def test_eight_processes_never_decide_a_post_twice(db_url: str, desk) -> None:
    """8 moderator processes × 200 attempts on one queue of 2,000 posts, with leases that run
    out and decisions without claims thrown in: no post decided twice, no decision without a
    live claim, no event lost. (bench/hammer.py holds the desk to this at a larger scale.)"""
    admin = create_user(desk.sessions, "admin", PASSWORD, "admin", by=None)
    users = [create_user(desk.sessions, f"mod{i}", PASSWORD, "moderator", by=admin) for i in range(8)]
    _queue(desk, 2000)
    workers = moderator_processes(db_url, users, 200)
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err
        results.append(json.loads(out))
    reported = [event_id for r in results for _, event_id in r["decided"]]
    assert None not in reported  # no decision without a claim was accepted
    assert sum(r["refused_foreign"] for r in results) > 0 and sum(r["refused_expired"] for r in results) > 0
    with desk.sessions() as session:
        decisions = session.execute(
            select(ReviewEvent.id, ReviewEvent.post_id, ReviewEvent.user_id, ReviewEvent.created_at).where(
                ReviewEvent.action == "confirm"
            )
        ).all()
        claims = session.execute(
            select(
                ReviewEvent.post_id, ReviewEvent.user_id, ReviewEvent.created_at, ReviewEvent.lease_expires_at
            ).where(ReviewEvent.action == "claim")
        ).all()
        decided_posts = session.scalar(select(func.count(Post.id)).where(Post.status == "decided"))
    assert sorted(reported) == sorted(d.id for d in decisions)  # every accepted decision stored, no other
    per_post = Counter(d.post_id for d in decisions)
    assert max(per_post.values()) == 1 and decided_posts == len(per_post) == len(decisions)
    by_claim = {}
    for c in claims:
        by_claim.setdefault((c.post_id, c.user_id), []).append(c)
    for d in decisions:  # each decision lies inside a live claim of the same moderator
        assert any(c.created_at <= d.created_at < c.lease_expires_at for c in by_claim[(d.post_id, d.user_id)])
    assert len(decisions) >= 1000


# --------------------------------------------------------------------------------------------
# Undo


def test_undo_reopens_for_the_same_moderator(desk) -> None:
    p = people(desk)
    ids = _queue(desk, 2)
    ann, bob = p["ann"], p["bob"]
    claim(desk.sessions, ann, ids[1])
    event = decide(desk.sessions, ann, ids[1], "confirm")
    with pytest.raises(ReviewError, match="not a decision of yours"):
        undo(desk.sessions, bob, event.id)
    reopened = undo(desk.sessions, ann, event.id)
    post = _post(desk, ids[1])
    assert reopened.post_id == ids[1] and post.status == "queued" and post.claimed_by_id == ann.id
    with pytest.raises(ReviewError, match="changed since"):
        undo(desk.sessions, ann, event.id)  # already undone
    overturned = decide(desk.sessions, ann, ids[1], "overturn", label=Label(True, "false_advertising", 1))
    with desk.sessions() as session:
        actions = list(session.scalars(select(ReviewEvent.action).where(ReviewEvent.post_id == ids[1])
                                       .order_by(ReviewEvent.id)))  # fmt: skip
    assert actions == ["claim", "confirm", "reopen", "overturn"]  # every action kept
    # once someone else has claimed the post, the decision stands
    claim(desk.sessions, bob, ids[0])
    escalated = decide(desk.sessions, bob, ids[0], "escalate", note="needs a lead")
    claim(desk.sessions, p["lea"], ids[0])
    with pytest.raises(ReviewError, match="changed since"):
        undo(desk.sessions, bob, escalated.id)
    assert overturned.label_category == "false_advertising"


def test_undo_restores_where_the_post_waited(desk) -> None:
    p = people(desk)
    ids = _queue(desk, 1)
    post = ids[0]
    claim(desk.sessions, p["ann"], post)
    decide(desk.sessions, p["ann"], post, "escalate", note="needs a lead")
    lea = p["lea"]
    for _ in range(2):  # decide and undo twice: the escalation must survive both undos
        claim(desk.sessions, lea, post)
        event = decide(desk.sessions, lea, post, "confirm")
        undo(desk.sessions, lea, event.id)
        assert (_post(desk, post).status, _post(desk, post).priority) == ("escalated", ESCALATED_PRIORITY)
        release(desk.sessions, lea, post)
    assert claim(desk.sessions, p["bob"]) is None  # still a lead's post
    # a skip leaves it escalated, and the event records where it waited
    claim(desk.sessions, lea, post)
    back = decide(desk.sessions, lea, post, "skip")
    assert back.status_before == "escalated" and _post(desk, post).status == "escalated"


# --------------------------------------------------------------------------------------------
# Erased posts


def test_an_erased_post_cannot_be_decided_or_undone(desk) -> None:
    """An erased post keeps its status, so only the live-post rule keeps it out of work. Before
    the fix the moderator's undo reopened the tombstone as queued and claimed by them, and a
    lead's bulk decision decided it."""
    p = people(desk)
    ids = spam_queue(desk, 4)
    assert claim(desk.sessions, p["ann"], ids[0]) is not None
    decided = decide(desk.sessions, p["ann"], ids[0], "confirm")
    assert claim(desk.sessions, p["ann"], ids[1]) is not None  # held while it is erased
    erase_posts(desk, ids[:3])
    before = event_count(desk)
    with pytest.raises(ReviewError, match=f"^post {ids[0]} was erased; its decisions cannot be undone$"):
        undo(desk.sessions, p["ann"], decided.id)
    with pytest.raises(ClaimLost, match=f"^post {ids[1]} was erased; nothing was saved$"):
        decide(desk.sessions, p["ann"], ids[1], "confirm")
    with pytest.raises(ClaimLost, match="was erased"):
        renew(desk.sessions, p["ann"], ids[1])
    assert claim(desk.sessions, p["bob"], ids[2]) is None  # not even when asked for by id
    bulk = decide_bulk(desk.sessions, p["lea"], [ids[0], ids[2], ids[3]], "confirm")
    assert bulk.decided == [ids[3]]
    assert bulk.skipped == {ids[0]: "erased: nothing left to decide", ids[2]: "erased: nothing left to decide"}
    assert event_count(desk) == before + 1  # the live post's bulk decision, nothing else
    with desk.sessions() as session:
        rows = session.execute(select(Post.id, Post.status, Post.claimed_by_id).where(Post.id.in_(ids[:3]))).all()
    assert sorted(rows) == [(ids[0], "decided", None), (ids[1], "queued", None), (ids[2], "queued", None)]

"""Claims and decisions: leases, the queue order, refusals that write nothing, idempotency,
undo, history with hidden notes, and 8 real processes deciding one queue concurrently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from db.models import Post, ReviewEvent, Verdict
from review.auth import Actor, PermissionDenied, create_user
from review.decisions import (
    ClaimLost,
    EscalationReasonMissing,
    Label,
    claim,
    decide,
    decide_bulk,
    escalations,
    history,
    release,
    renew,
    undo,
)
from review.errors import ReviewError
from review.priority import ESCALATED_PRIORITY
from review.verdicts import point_at
from tests.conftest import PASSWORD, REPO, people


def _queue(desk, n: int, *, failed: tuple[int, ...] = ()) -> list[int]:  # type: ignore[no-untyped-def]
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


def _events(desk) -> int:  # type: ignore[no-untyped-def]
    with desk.sessions() as session:
        return session.scalar(select(func.count(ReviewEvent.id))) or 0


def _post(desk, post_id: int) -> Post:  # type: ignore[no-untyped-def]
    with desk.sessions() as session:
        return session.get(Post, post_id)


def test_claims_follow_the_queue_order_and_exclude_each_other(desk) -> None:  # type: ignore[no-untyped-def]
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
    before = _events(desk)
    with pytest.raises(ClaimLost, match="another moderator is reviewing"):
        decide(desk.sessions, p["ann"], ids[4], "overturn", label=Label(True, "fraud_spam", 2), now=later)
    with pytest.raises(ClaimLost, match="your claim on post .* expired"):
        decide(desk.sessions, p["bob"], ids[3], "skip", now=later + timedelta(minutes=11))
    with pytest.raises(ClaimLost, match="you do not hold post"):
        decide(desk.sessions, p["ann"], ids[3], "skip", now=later + timedelta(minutes=11))
    assert _events(desk) == before
    assert _post(desk, ids[3]).status == "queued"
    # renewing keeps a claim alive; releasing gives it back
    expires = renew(desk.sessions, p["lea"], ids[4], now=later + timedelta(minutes=5))
    assert expires > later + timedelta(minutes=14)
    with pytest.raises(ClaimLost):
        renew(desk.sessions, p["ann"], ids[4])
    release(desk.sessions, p["lea"], ids[4], now=later)
    assert claim(desk.sessions, p["ann"], ids[4], now=later) is not None


def test_decisions_labels_escalation_and_idempotency(desk) -> None:  # type: ignore[no-untyped-def]
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


def test_undo_reopens_for_the_same_moderator(desk) -> None:  # type: ignore[no-untyped-def]
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


def test_moderators_need_a_role_that_reviews(desk) -> None:  # type: ignore[no-untyped-def]
    ids = _queue(desk, 1)
    stranger = Actor(999, "x", "nobody")
    with pytest.raises(PermissionDenied):
        claim(desk.sessions, stranger)
    with pytest.raises(PermissionDenied):
        decide(desk.sessions, stranger, ids[0], "confirm")


def test_eight_processes_never_decide_a_post_twice(db_url: str, desk) -> None:  # type: ignore[no-untyped-def]
    """8 moderator processes × 500 attempts on one queue of 3,000 posts, with leases that run
    out and decisions without claims thrown in: no post decided twice, no decision without a
    live claim, no event lost."""
    admin = create_user(desk.sessions, "admin", PASSWORD, "admin", by=None)
    users = [create_user(desk.sessions, f"mod{i}", PASSWORD, "moderator", by=admin) for i in range(8)]
    _queue(desk, 3000)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    workers = [
        subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "decide_worker.py"), db_url, str(u.id), "500", str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i, u in enumerate(users)
    ]
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
    assert len(decisions) >= 2500


def test_undo_restores_where_the_post_waited(desk) -> None:  # type: ignore[no-untyped-def]
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


def test_keys_accounts_and_confirmed_labels_are_checked(desk) -> None:  # type: ignore[no-untyped-def]
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

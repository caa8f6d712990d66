"""The transactional outbox (review/outbox.py): every decision, bulk decision, undo and re-queue
writes its outgoing event and deliveries in the review event's transaction, and nothing else
does; the payload says what the platform should do; ``seq`` is the feed's commit order, so a
poller during concurrent decisions sees every event exactly once."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest
from sqlalchemy import func, select

from db.models import OutboxEvent, ReviewEvent, WebhookDelivery, WebhookEndpoint
from review import outbox
from review.auth import create_user
from review.decisions import ClaimLost, Label, claim, decide, decide_bulk, release, undo
from review.errors import ReviewError
from review.reports import add_report
from tests.factories import claim_and_decide, moderator_processes, spam_queue, staff


def _endpoint(desk, events: str = "*", active: bool = True) -> int:
    with desk.sessions() as session, session.begin():
        row = WebhookEndpoint(url="https://example.com/hook", description="", event_types=events,
                              secret="whsec_" + "A" * 43 + "=", active=active)  # fmt: skip
        session.add(row)
        session.flush()
        return row.id


def _events(desk) -> list[dict]:
    with desk.sessions() as session:
        return [outbox.payload_of(row) for row in session.scalars(select(OutboxEvent).order_by(OutboxEvent.seq))]


def _deliveries(desk) -> Counter:
    with desk.sessions() as session:
        rows = session.execute(select(WebhookDelivery.endpoint_id, OutboxEvent.type).join(OutboxEvent)).all()
    return Counter((endpoint, kind) for endpoint, kind in rows)


def test_each_decision_writes_one_event_and_its_deliveries(desk) -> None:
    p = staff(desk)
    every, overturns, off = _endpoint(desk), _endpoint(desk, "decision.overturned"), _endpoint(desk, active=False)
    ids = spam_queue(desk, 6)
    ann, lea = p["ann"], p["lea"]
    confirmed = claim_and_decide(desk, ann, ids[0], "confirm", idempotency_key="once")
    assert claim(desk.sessions, ann, ids[0]) is None and len(_events(desk)) == 1  # decided: not claimable
    again = decide(desk.sessions, ann, ids[0], "confirm", idempotency_key="once")  # a double click
    assert again.id == confirmed.id and len(_events(desk)) == 1
    claim_and_decide(desk, ann, ids[1], "overturn", label=Label(True, "sexual", 1))
    claim_and_decide(desk, ann, ids[2], "overturn", label=Label(False, "none", 0))
    claim_and_decide(desk, ann, ids[3], "escalate", note="satire?")
    claim(desk.sessions, ann, ids[4])
    skipped = decide(desk.sessions, ann, ids[4], "skip")  # claims, releases and skips tell the platform nothing
    undo(desk.sessions, ann, skipped.id)  # nor does the undo of a skip
    release(desk.sessions, ann, ids[4])
    claim(desk.sessions, ann, ids[5])
    release(desk.sessions, ann, ids[5])
    undo(desk.sessions, ann, confirmed.id)
    decide_bulk(desk.sessions, lea, [ids[4], ids[5]], "confirm", note="bulk")

    sent = _events(desk)
    assert [e["type"] for e in sent] == ["decision.confirmed", "decision.overturned", "decision.overturned",
                                         "decision.escalated", "decision.undone", "decision.confirmed",
                                         "decision.confirmed"]  # fmt: skip
    assert [e["data"]["seq"] for e in sent] == sorted(e["data"]["seq"] for e in sent)
    first, sexual, cleared, escalated, undone, bulk, _ = (e["data"] for e in sent)
    assert first["post"] == {"source": "t", "external_id": "p0", "status": "decided"} and first["final"]
    assert first["label"] == {"violation": True, "category": "fraud_spam", "severity": 2}
    assert first["policy_action"] == "remove" and first["policy_version"] == 1 and first["undoes"] is None
    assert (sexual["label"]["category"], sexual["policy_action"]) == ("sexual", "restrict")  # severity 1
    assert (cleared["label"]["violation"], cleared["policy_action"]) == (False, "none")
    assert (escalated["final"], escalated["label"], escalated["policy_action"]) == (False, None, None)
    assert escalated["post"]["status"] == "escalated"
    assert undone["undoes"] == {"event_id": first["event_id"], "action": "confirm", "policy_action": "remove"}
    assert undone["post"]["status"] == "queued" and not undone["final"]
    assert bulk["bulk_id"] and bulk["final"]
    for event in sent:  # no content, no notes: a purge need not chase what was sent
        assert "text" not in json.dumps(event) and "satire" not in json.dumps(event)
    # one delivery per event for the catch-all endpoint, overturns only for the other, none when disabled
    expected = Counter({(every, kind): n for kind, n in Counter(e["type"] for e in sent).items()})
    expected[(overturns, "decision.overturned")] = 2
    assert _deliveries(desk) == expected
    assert off not in {endpoint for endpoint, _ in _deliveries(desk)}
    # the outbox and the review events the platform is told of are one to one (not the skip's undo)
    with desk.sessions() as session:
        told = session.scalar(select(func.count(ReviewEvent.id)).where(ReviewEvent.action.in_(list(outbox.TYPES))))
        assert told - 1 == len(sent) == session.scalar(select(func.count(OutboxEvent.id)))
        reopens = session.scalars(select(ReviewEvent).where(ReviewEvent.action == "reopen")).all()
        assert sorted(session.get(ReviewEvent, r.undoes_id).action for r in reopens) == ["confirm", "skip"]


def test_a_refused_decision_writes_no_event(desk) -> None:
    p = staff(desk)
    _endpoint(desk)
    ids = spam_queue(desk, 2)
    with pytest.raises(ClaimLost):
        decide(desk.sessions, p["ann"], ids[0], "confirm")  # never claimed
    claim(desk.sessions, p["ann"], ids[1])
    with pytest.raises(ReviewError):
        decide(desk.sessions, p["ann"], ids[1], "overturn", label=Label(True, "nonsense", 2))
    assert _events(desk) == [] and _deliveries(desk) == Counter()


def test_the_payload_is_the_exact_text_that_is_stored(desk) -> None:
    p = staff(desk)
    ids = spam_queue(desk, 1)
    claim_and_decide(desk, p["ann"], ids[0], "overturn", label=Label(True, "misinformation", 3))
    with desk.sessions() as session:
        row = session.scalars(select(OutboxEvent)).one()
    assert row.payload == json.dumps(json.loads(row.payload), ensure_ascii=False, separators=(",", ":"))
    assert row.uid.startswith("evt_") and "." not in row.uid and json.loads(row.payload)["data"]["event_id"] == row.uid
    assert json.loads(row.payload)["data"]["policy_action"] == "remove"  # misinformation: label, but remove at 3


def test_reports_requeue_a_decided_post_and_the_platform_is_told(desk) -> None:
    p = staff(desk)
    ids = spam_queue(desk, 1)
    decided = claim_and_decide(desk, p["ann"], ids[0], "confirm")
    assert not add_report(desk.sessions, desk.settings, ids[0], "user_report", "spam", 2).requeued
    got = add_report(desk.sessions, desk.settings, ids[0], "classifier", "nsfw")
    assert got.requeued and got.post_status == "queued" and got.report_count == 3
    requeued = _events(desk)[-1]
    assert requeued["type"] == "post.requeued" and requeued["data"]["post"]["status"] == "queued"
    with pytest.raises(ReviewError, match="changed since"):  # the decision is history now
        undo(desk.sessions, p["ann"], decided.id)


def test_a_poller_during_concurrent_decisions_sees_every_event_once(db_url: str, desk) -> None:
    """4 moderator processes decide while this test polls the feed by cursor: every event is
    seen exactly once and in seq order (commit order: no event committed behind the cursor)."""
    admin = create_user(desk.sessions, "admin", "a long enough password", "admin", by=None)
    users = [create_user(desk.sessions, f"mod{i}", "a long enough password", "moderator", by=admin) for i in range(4)]
    spam_queue(desk, 400)
    workers = moderator_processes(db_url, users, 60)
    seen: list[int] = []
    cursor = 0
    done = threading.Event()

    def wait() -> None:
        for worker in workers:
            worker.communicate(timeout=600)
        done.set()

    threading.Thread(target=wait, daemon=True).start()
    while True:
        finished = done.is_set()
        with desk.sessions() as session:
            page = outbox.feed(session, cursor, 25)
        seen.extend(row.seq for row in page)
        cursor = page[-1].seq if page else cursor
        if finished and not page:
            break
        time.sleep(0.005)
    assert all(w.returncode == 0 for w in workers)
    with desk.sessions() as session:
        stored = list(session.scalars(select(OutboxEvent.seq).order_by(OutboxEvent.seq)))
    assert len(stored) >= 100 and seen == stored  # each once, in order, none skipped

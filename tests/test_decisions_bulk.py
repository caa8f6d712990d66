"""review/decisions.py, bulk decisions (``decide_bulk``): what a bulk confirm skips and why, one bulk
id for its events, refusals that write nothing, bulk escalation and overturn."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from db.models import ReviewEvent
from review.auth import PermissionDenied
from review.decisions import MAX_BULK, Label, claim, decide_bulk
from review.errors import ReviewError
from review.priority import ESCALATED_PRIORITY
from review.queue import QueueFilter, queue_count
from tests.conftest import post_status
from tests.factories import claim_and_decide, event_count, post_row, queued_posts_with_verdicts, staff


def test_bulk_confirm_skips_what_it_must_and_shares_one_id(desk) -> None:
    p = staff(desk)
    ann, bob, lea = p["ann"], p["bob"], p["lea"]
    ids = queued_posts_with_verdicts(desk, ["fraud_spam", "none", None, "sexual", "fraud_spam", "sexual", "fraud_spam"])
    ok1, ok2, failed, held, done, in_second, ok3 = ids
    assert claim(desk.sessions, bob, held) is not None
    claim_and_decide(desk, ann, done, "confirm", share=0.0)
    claim_and_decide(desk, ann, in_second, "confirm", share=1.0)
    missing = max(ids) + 1000
    result = decide_bulk(
        desk.sessions, lea, [ok1, ok2, failed, held, done, missing, in_second, ok3, ok1], "confirm", note="batch"
    )
    assert result.decided == [ok1, ok2, ok3]
    assert set(result.skipped) == {failed, held, done, missing, in_second}
    assert "another moderator" in result.skipped[held]
    assert "decided" in result.skipped[done] and "not waiting" in result.skipped[done]
    assert "second_review" in result.skipped[in_second]
    assert "no such post" in result.skipped[missing]
    assert "no usable model verdict" in result.skipped[failed]
    with desk.sessions() as session:
        events = list(session.scalars(select(ReviewEvent).where(ReviewEvent.bulk_id == result.bulk_id)))
    assert sorted(e.post_id for e in events) == [ok1, ok2, ok3]
    assert {(e.user_id, e.action, e.note, e.status_before, e.second_review) for e in events} == {
        (lea.id, "confirm", "batch", "queued", False)
    }
    labels = {e.post_id: (e.label_violation, e.label_category) for e in events}
    assert labels[ok2] == (False, "none") and labels[ok1] == (True, "fraud_spam")
    assert all(e.verdict_id is not None for e in events)
    for post_id in (ok1, ok2, ok3, done):
        assert post_status(desk, post_id) == "decided"
    assert post_status(desk, failed) == "queued" and post_status(desk, in_second) == "second_review"
    assert post_row(desk, held)["claimed_by_id"] == bob.id and post_status(desk, held) == "queued"


def test_bulk_refusals_write_nothing(desk) -> None:
    p = staff(desk)
    ids = queued_posts_with_verdicts(desk, ["fraud_spam", "sexual"])
    before = event_count(desk)
    with pytest.raises(PermissionDenied):
        decide_bulk(desk.sessions, p["ann"], ids, "confirm")
    with pytest.raises(ReviewError, match="needs a label"):
        decide_bulk(desk.sessions, p["lea"], ids, "overturn")
    with pytest.raises(ReviewError, match=f"at most {MAX_BULK}"):
        decide_bulk(desk.sessions, p["lea"], list(range(1, MAX_BULK + 2)), "confirm")
    with pytest.raises(ReviewError, match="not a bulk decision"):
        decide_bulk(desk.sessions, p["lea"], ids, "skip")
    with pytest.raises(ReviewError, match="no posts"):
        decide_bulk(desk.sessions, p["lea"], [], "confirm")
    with pytest.raises(ReviewError, match="takes no label"):
        decide_bulk(desk.sessions, p["lea"], ids, "confirm", label=Label(True, "sexual", 1))
    assert event_count(desk) == before
    assert [post_status(desk, i) for i in ids] == ["queued", "queued"]
    # exactly MAX_BULK ids are allowed (the missing ones are skipped)
    result = decide_bulk(desk.sessions, p["lea"], [*ids, *range(max(ids) + 1, max(ids) + MAX_BULK - 1)], "confirm")
    assert result.decided == ids and len(result.skipped) == MAX_BULK - 2


def test_bulk_escalate_and_overturn(desk) -> None:
    p = staff(desk)
    lea = p["lea"]
    ids = queued_posts_with_verdicts(desk, ["fraud_spam", "none", None, "sexual", "fraud_spam"])
    escalated = decide_bulk(desk.sessions, lea, ids[:3], "escalate", note="needs a lead")
    assert escalated.decided == ids[:3] and escalated.skipped == {}
    for post_id in ids[:3]:
        row = post_row(desk, post_id)
        assert (row["status"], row["priority"]) == ("escalated", ESCALATED_PRIORITY)
    with desk.sessions() as session:
        assert queue_count(session, p["bob"], QueueFilter()) == 2
        assert queue_count(session, lea, QueueFilter(escalated=True)) == 3
    label = Label(True, "illegal_goods", 3)
    overturned = decide_bulk(desk.sessions, lea, ids, "overturn", label=label)
    assert overturned.decided == ids  # escalated posts wait for a lead: they can be decided in bulk
    with desk.sessions() as session:
        events = list(session.scalars(select(ReviewEvent).where(ReviewEvent.bulk_id == overturned.bulk_id)))
    assert {(e.action, e.label_category, e.label_severity) for e in events} == {("overturn", "illegal_goods", 3)}
    assert {e.post_id: e.status_before for e in events} == {
        ids[0]: "escalated", ids[1]: "escalated", ids[2]: "escalated", ids[3]: "queued", ids[4]: "queued"
    }  # fmt: skip
    assert {post_status(desk, i) for i in ids} == {"decided"}
    assert escalated.bulk_id != overturned.bulk_id

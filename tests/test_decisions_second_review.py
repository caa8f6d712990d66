"""review/decisions.py, second review: the draw (its share, reproducible), a drawn decision waiting
for a second reviewer who is never the first decider, the blind second reviewer's history, an
overturn that agrees with the model counted as a confirm, and undo during a second review."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from db.models import Verdict
from review.decisions import Label, claim, decide, drawn_for_second_review, held_claim, history, release, undo
from review.errors import ReviewError
from review.queue import queue_count, queue_page
from review.visibility import Viewer, blind_for
from tests.conftest import post_status
from tests.factories import SECOND_REVIEWS, claim_and_decide, page_ids, post_row, queued_posts_with_verdicts, staff


def _verdict_label(desk, post_id: int) -> str:
    with desk.sessions() as session:
        v = session.scalars(select(Verdict).where(Verdict.post_id == post_id)).one()
        return f"{v.category} · severity {v.severity}" if v.violation else "no violation"


def test_a_drawn_decision_waits_for_second_review(desk) -> None:
    p = staff(desk)
    ann = p["ann"]
    ids = queued_posts_with_verdicts(desk, ["fraud_spam"] * 6)
    claim_and_decide(desk, ann, ids[0], "confirm", share=1.0)
    claim_and_decide(desk, ann, ids[1], "overturn", label=Label(True, "sexual", 3), share=1.0)
    claim_and_decide(desk, ann, ids[2], "confirm", share=0.0)
    claim_and_decide(desk, ann, ids[3], "overturn", label=Label(True, "sexual", 3), share=0.0)
    claim_and_decide(desk, ann, ids[4], "escalate", share=1.0, note="needs a lead")
    claim_and_decide(desk, ann, ids[5], "skip", share=1.0)
    for post_id in ids[:2]:
        row = post_row(desk, post_id)
        assert (row["status"], row["first_decider_id"]) == ("second_review", ann.id)
        assert row["claimed_by_id"] is None and row["lease_expires_at"] is None
    for post_id in ids[2:4]:
        assert (post_status(desk, post_id), post_row(desk, post_id)["first_decider_id"]) == ("decided", None)
    # only a confirm or an overturn is drawn: an escalation waits for a lead, a skip goes back
    assert post_status(desk, ids[4]) == "escalated" and post_row(desk, ids[4])["first_decider_id"] is None
    assert post_status(desk, ids[5]) == "queued" and post_row(desk, ids[5])["first_decider_id"] is None


def test_the_draw_holds_its_share_and_is_reproducible() -> None:
    ids = range(1, 10_001)
    drawn = [drawn_for_second_review(i, 0.1) for i in ids]
    assert 0.08 <= sum(drawn) / len(drawn) <= 0.12
    assert drawn == [drawn_for_second_review(i, 0.1) for i in ids]  # the same posts every time
    assert not any(drawn_for_second_review(i, 0.0) for i in ids)
    assert all(drawn_for_second_review(i, 1.0) for i in ids)
    # a post drawn at some share stays drawn at a larger one
    wider = [drawn_for_second_review(i, 0.3) for i in ids]
    assert all(w for d, w in zip(drawn, wider, strict=True) if d)
    assert 0.27 <= sum(wider) / len(wider) <= 0.33


def test_the_first_decider_never_takes_the_second_review(desk) -> None:
    p = staff(desk)
    ann, bob = p["ann"], p["bob"]
    ids = queued_posts_with_verdicts(desk, ["fraud_spam", "sexual"])
    first = claim_and_decide(desk, ann, ids[0], "confirm", share=1.0)
    assert first.second_review is False and first.action == "confirm"
    assert claim(desk.sessions, ann, ids[0]) is None
    assert claim(desk.sessions, ann, flt=SECOND_REVIEWS) is None
    taken = claim(desk.sessions, ann)
    assert taken is not None and taken.post_id == ids[1]  # the only post waiting for ann
    with desk.sessions() as session:
        assert queue_count(session, ann, SECOND_REVIEWS) == 0
        assert queue_count(session, bob, SECOND_REVIEWS) == 1
        assert page_ids(queue_page(session, Viewer(ann))) == {ids[1]}
    got = claim(desk.sessions, bob, flt=SECOND_REVIEWS)
    assert got is not None and got.post_id == ids[0]
    second = decide(desk.sessions, bob, ids[0], "overturn", label=Label(True, "illegal_goods", 2), share=1.0)
    assert second.second_review is True and second.status_before == "second_review"
    assert second.action == "overturn" and second.label_category == "illegal_goods"
    assert post_status(desk, ids[0]) == "decided"  # settled, not drawn a second time
    assert claim(desk.sessions, p["cid"], ids[0]) is None


def test_an_escalation_decided_by_a_lead_is_not_drawn(desk) -> None:
    p = staff(desk)
    ids = queued_posts_with_verdicts(desk, ["fraud_spam"])
    claim_and_decide(desk, p["ann"], ids[0], "escalate", share=1.0, note="needs a lead")
    got = claim(desk.sessions, p["lea"])
    assert got is not None and got.post_id == ids[0]
    event = decide(desk.sessions, p["lea"], ids[0], "confirm", share=1.0)
    assert event.status_before == "escalated" and event.second_review is False
    assert (post_status(desk, ids[0]), post_row(desk, ids[0])["first_decider_id"]) == ("decided", None)


def test_the_second_reviewer_works_blind(desk) -> None:
    p = staff(desk)
    ann, bob, cid, lea = p["ann"], p["bob"], p["cid"], p["lea"]
    ids = queued_posts_with_verdicts(desk, ["fraud_spam"])
    post_id = ids[0]
    verdict_label = _verdict_label(desk, post_id)
    first = claim_and_decide(desk, ann, post_id, "confirm", note="spam, obviously", share=1.0)
    assert claim(desk.sessions, bob, post_id) is not None

    with desk.sessions() as session:
        assert blind_for(session, bob, post_id) is True  # holds the claim
        assert blind_for(session, ann, post_id) is False  # their own decision
        assert blind_for(session, cid, post_id) is True  # may not read others' decisions
        assert blind_for(session, lea, post_id) is False  # a lead who is not the reviewer
        seen_by_bob = {h.event_id: h for h in history(session, bob, post_id)}
        seen_by_ann = {h.event_id: h for h in history(session, ann, post_id)}
        seen_by_lea = {h.event_id: h for h in history(session, lea, post_id)}
    hidden = seen_by_bob[first.id]
    assert (hidden.label, hidden.label_hidden, hidden.action) == (None, True, "decision (hidden)")
    assert (hidden.note, hidden.note_hidden) == (None, True)
    assert [h.action for h in seen_by_bob.values()] == ["claim", "decision (hidden)", "claim"]
    own = seen_by_ann[first.id]
    assert (own.label, own.label_hidden, own.action, own.note) == (verdict_label, False, "confirm", "spam, obviously")
    assert (seen_by_lea[first.id].label, seen_by_lea[first.id].note) == (verdict_label, "spam, obviously")

    # a lead who takes the second review is blind too
    release(desk.sessions, bob, post_id)
    assert claim(desk.sessions, lea, post_id) is not None
    with desk.sessions() as session:
        assert blind_for(session, lea, post_id) is True
        assert history(session, lea, post_id)[1].label is None
    release(desk.sessions, lea, post_id)

    assert claim(desk.sessions, bob, post_id) is not None
    second = decide(desk.sessions, bob, post_id, "overturn", label=Label(True, "sexual", 2), note="nope")
    with desk.sessions() as session:
        assert blind_for(session, bob, post_id) is False
        after = {h.event_id: h for h in history(session, bob, post_id)}
    assert (after[first.id].label, after[first.id].label_hidden, after[first.id].action) == (
        verdict_label,
        False,
        "confirm",
    )
    assert after[first.id].note is None  # another moderator's note stays hidden from a moderator
    assert (after[second.id].label, after[second.id].second_review, after[second.id].note) == (
        "sexual · severity 2",
        True,
        "nope",
    )

    # undoing the second review's decision puts the post back in its (blind) second review
    reopened = undo(desk.sessions, bob, second.id)
    assert reopened.post_id == post_id
    row = post_row(desk, post_id)
    assert (row["status"], row["claimed_by_id"], row["first_decider_id"]) == ("second_review", bob.id, ann.id)
    with desk.sessions() as session:
        assert history(session, bob, post_id)[1].label_hidden is True


def test_an_overturn_that_agrees_with_the_model_is_a_confirm(desk) -> None:
    p = staff(desk)
    ann, bob = p["ann"], p["bob"]
    ids = queued_posts_with_verdicts(desk, ["fraud_spam", "none", "fraud_spam", None])
    with desk.sessions() as session:
        severity = session.scalars(select(Verdict.severity).where(Verdict.post_id == ids[0])).one()
    agree = claim_and_decide(desk, ann, ids[0], "overturn", label=Label(True, "fraud_spam", severity))
    assert agree.action == "confirm"
    assert (agree.label_violation, agree.label_category, agree.label_severity) == (True, "fraud_spam", severity)
    # "no violation" with any category or severity is the model's "none"
    clean = claim_and_decide(desk, ann, ids[1], "overturn", label=Label(False, "sexual", 2))
    assert clean.action == "confirm" and (clean.label_category, clean.label_severity) == ("none", 0)
    # a different severity is a real overturn
    other = Label(True, "fraud_spam", severity % 3 + 1)
    assert claim_and_decide(desk, ann, ids[2], "overturn", label=other).action == "overturn"
    # a failed verdict has no label to agree with
    assert claim_and_decide(desk, ann, ids[3], "overturn", label=Label(False, "none", 0)).action == "overturn"
    # a blind second reviewer who agrees with the (hidden) verdict confirms it
    more = queued_posts_with_verdicts(desk, ["sexual"], prefix="q")
    with desk.sessions() as session:
        sev = session.scalars(select(Verdict.severity).where(Verdict.post_id == more[0])).one()
    claim_and_decide(desk, ann, more[0], "overturn", label=Label(True, "fraud_spam", 1), share=1.0)
    assert claim(desk.sessions, bob, more[0]) is not None
    second = decide(desk.sessions, bob, more[0], "overturn", label=Label(True, "sexual", sev))
    assert (second.action, second.second_review) == ("confirm", True)


def test_undo_while_waiting_for_second_review_reopens_for_the_first_decider(desk) -> None:
    p = staff(desk)
    ann, bob = p["ann"], p["bob"]
    ids = queued_posts_with_verdicts(desk, ["fraud_spam", "sexual"])
    first = claim_and_decide(desk, ann, ids[0], "confirm", share=1.0)
    assert post_status(desk, ids[0]) == "second_review"
    reopened = undo(desk.sessions, ann, first.id)
    row = post_row(desk, ids[0])
    assert reopened.post_id == ids[0]
    assert (row["status"], row["claimed_by_id"]) == ("queued", ann.id)
    assert row["lease_expires_at"] is not None and row["lease_expires_at"] > datetime.now(UTC)
    assert claim(desk.sessions, bob, ids[0]) is None  # ann holds it again
    with desk.sessions() as session:
        assert held_claim(session, ann).post_id == ids[0]
        assert queue_count(session, bob, SECOND_REVIEWS) == 0
    again = decide(desk.sessions, ann, ids[0], "overturn", label=Label(True, "sexual", 1), share=0.0)
    assert again.second_review is False and post_status(desk, ids[0]) == "decided"

    # once the second reviewer has taken the post, the first decision stands
    first = claim_and_decide(desk, ann, ids[1], "confirm", share=1.0)
    assert claim(desk.sessions, bob, ids[1]) is not None
    with pytest.raises(ReviewError, match="changed since"):
        undo(desk.sessions, ann, first.id)
    assert post_row(desk, ids[1])["claimed_by_id"] == bob.id

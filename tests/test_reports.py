"""review/reports.py: reports from the platform raise a waiting post's priority by the queue's
rule, are counted on a decided post until the re-queue threshold, never move an escalated, second
review or erased post, and are refused with a reason when they make no sense."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from db.models import Post, PostLabel, PostReport, Verdict
from db.session import writing
from review import scoring
from review.decisions import claim, decide
from review.priority import REPORT_BOOST_CAP, queue_priority, report_boost
from review.reports import ReportError, add_report, reports_of, requeue_of
from review.verdicts import current_verdict
from tests.factories import claim_and_decide, erase_posts, post_row, spam_queue, staff


def test_the_boost_grows_with_reports_up_to_its_cap() -> None:
    assert [report_boost(n) for n in (0, 1, 2, 6, 7, 10_000)] == [0, 0.5, 1.0, 3.0, 3.0, REPORT_BOOST_CAP]
    assert report_boost(-3) == 0
    assert queue_priority(None, 4) == 102.0  # a model failure still sorts before every verdict


def test_reports_raise_a_waiting_post_and_count_everywhere(desk) -> None:
    ids = spam_queue(desk, 3)
    before = post_row(desk, ids[0])["priority"]
    got = add_report(desk.sessions, desk.settings, ids[0], "user_report", "spam", 4)
    assert (got.post_status, got.report_count, got.requeued) == ("queued", 4, False)
    with desk.sessions() as session:
        expected = queue_priority(current_verdict(session, ids[0]), 4)
    assert post_row(desk, ids[0])["priority"] == expected == pytest.approx(2 * 0.9 + 2.0) and expected > before
    add_report(desk.sessions, desk.settings, ids[0], "classifier", "nsfw")
    add_report(desk.sessions, desk.settings, ids[0], "user_report", "spam", 2)
    with desk.sessions() as session:
        summary = reports_of(session, [ids[0], ids[1]])
    assert list(summary) == [ids[0]]
    assert [(s.kind, s.reason, s.count) for s in summary[ids[0]]] == [
        ("user_report", "spam", 6),
        ("classifier", "nsfw", 1),
    ]
    assert post_row(desk, ids[0])["priority"] == pytest.approx(1.8 + REPORT_BOOST_CAP)


def test_an_unscored_post_keeps_its_reports_for_the_scorer(desk) -> None:
    with desk.sessions() as session, session.begin():
        post = Post(source="t", external_id="u", text="x", status="unscored")
        session.add(post)
        session.flush()
        post_id = post.id
    add_report(desk.sessions, desk.settings, post_id, "user_report", "scam", 2)
    worker = scoring.worker_name()
    assert scoring.lease_batch(desk.sessions, worker, 5) == [post_id]
    row = Verdict(post_id=post_id, provider="transformers", model_id="m", prompt_version="v", input_hash="i",
                  parse_status="ok", violation=True, category="fraud_spam", severity=1, confidence=1.0, tags=[],
                  parse_notes=[])  # fmt: skip
    with writing(desk.sessions) as session:
        assert scoring._store(session, worker, row)
    assert post_row(desk, post_id)["priority"] == pytest.approx(1 * 1.0 + report_boost(2))


def test_a_decided_post_comes_back_after_the_threshold_and_not_before(desk) -> None:
    p = staff(desk)
    ids = spam_queue(desk, 3)
    early = add_report(desk.sessions, desk.settings, ids[0], "user_report", "spam", 5)  # before the decision
    claim_and_decide(desk, p["ann"], ids[0], "confirm")
    assert early.post_status == "queued"
    # reports from before the decision do not count towards bringing it back
    assert not add_report(desk.sessions, desk.settings, ids[0], "user_report", "spam", 2).requeued
    assert post_row(desk, ids[0])["status"] == "decided"
    with desk.sessions() as session:
        assert session.get(PostLabel, ids[0]) is not None
    # counted by the decision it followed, not by a clock: a report stamped long ago still counts
    back = add_report(desk.sessions, desk.settings, ids[0], "user_report", "spam", now=datetime(2001, 1, 1, tzinfo=UTC))
    assert back.requeued and back.post_status == "queued" and back.report_count == 8
    with desk.sessions() as session:  # the decision no longer settles the post: no label counts it
        assert session.get(PostLabel, ids[0]) is None
        assert requeue_of(session, ids[0]).reports == 3
    assert post_row(desk, ids[0])["priority"] == pytest.approx(1.8 + REPORT_BOOST_CAP)
    # decided again, the count starts over
    claim_and_decide(desk, p["bob"], ids[0], "confirm")
    assert not add_report(desk.sessions, desk.settings, ids[0], "user_report", "spam", 2).requeued
    # 0: never
    never = desk.settings.with_overrides(requeue_after_reports=0)
    claim_and_decide(desk, p["ann"], ids[1], "confirm")
    assert not add_report(desk.sessions, never, ids[1], "user_report", "spam", 1000).requeued
    assert post_row(desk, ids[1])["status"] == "decided"


def test_escalated_and_erased_posts_only_count_reports(desk) -> None:
    p = staff(desk)
    ids = spam_queue(desk, 2)
    claim_and_decide(desk, p["ann"], ids[0], "escalate", note="unsure")
    row = post_row(desk, ids[0])
    got = add_report(desk.sessions, desk.settings, ids[0], "user_report", "spam", 10)
    assert (got.post_status, got.requeued) == ("escalated", False) and post_row(desk, ids[0]) == row
    claim_and_decide(desk, p["ann"], ids[1], "confirm")
    erase_posts(desk, [ids[1]])
    got = add_report(desk.sessions, desk.settings, ids[1], "user_report", "spam", 10)
    assert (got.post_status, got.requeued, got.report_count) == ("decided", False, 10)
    with desk.sessions() as session:
        assert [r.status_at_arrival for r in session.scalars(select(PostReport).order_by(PostReport.id))] == [
            "escalated",
            "decided",
        ]


@pytest.mark.parametrize(
    ("kind", "reason", "count", "message"),
    [
        ("angry_user", "", 1, "kind: Input should be 'user_report' or 'classifier'"),
        ("user_report", "", 0, "count: Input should be greater than or equal to 1"),
        ("user_report", "", 10**9, "count: Input should be less than or equal to 1000000"),
        ("user_report", "x" * 256, 1, "reason: String should have at most 255 characters"),
        ("user_report", "a\x00b", 1, "reason: String should match pattern"),
        ("user_report", "a\ud800b", 1, "unable to parse raw data as a unicode string"),
    ],
)
def test_senseless_reports_are_refused_and_nothing_is_stored(desk, kind, reason, count, message) -> None:
    ids = spam_queue(desk, 1)
    with pytest.raises(ReportError, match=message):
        add_report(desk.sessions, desk.settings, ids[0], kind, reason, count)
    with pytest.raises(ReportError, match="no post 999999"):
        add_report(desk.sessions, desk.settings, 999_999, "user_report")
    with desk.sessions() as session:
        assert session.scalars(select(PostReport)).first() is None
    assert post_row(desk, ids[0])["priority"] == 1.0


def test_the_rule_holds_for_a_random_walk(desk) -> None:
    """Whatever order reports and decisions come in, a decided post is back in the queue exactly
    when the reports since its latest decision reach the threshold."""
    p = staff(desk)
    ids = spam_queue(desk, 4)
    rng = random.Random(16)
    since = dict.fromkeys(ids, 0)
    for _ in range(60):
        post_id = rng.choice(ids)
        status = post_row(desk, post_id)["status"]
        if status == "queued" and rng.random() < 0.5:
            claim_and_decide(desk, rng.choice([p["ann"], p["bob"]]), post_id, "confirm")
            since[post_id] = 0
            continue
        count = rng.randint(1, 2)
        got = add_report(desk.sessions, desk.settings, post_id, "user_report", "spam", count)
        if status == "decided":
            since[post_id] += count
            assert got.requeued == (since[post_id] >= desk.settings.requeue_after_reports)
        else:
            assert not got.requeued


def test_a_post_waiting_for_its_second_review_rises_too(desk) -> None:
    p = staff(desk)
    ids = spam_queue(desk, 1)
    claim(desk.sessions, p["ann"], ids[0])
    decide(desk.sessions, p["ann"], ids[0], "confirm", share=1.0)  # drawn for a second review
    assert post_row(desk, ids[0])["status"] == "second_review"
    got = add_report(desk.sessions, desk.settings, ids[0], "user_report", "spam", 2)
    assert (got.post_status, got.requeued) == ("second_review", False)
    assert post_row(desk, ids[0])["priority"] == pytest.approx(1.8 + report_boost(2))

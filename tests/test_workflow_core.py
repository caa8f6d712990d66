"""The moderator workflow added with migration 0005: blind second review, bulk decisions, near-
duplicate clusters, counts per category, held claims, display preferences, uploads and scoring
jobs from the Operations page, the second-review settings, and the migration itself."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db import schema
from db.models import Media, Post, PostMedia, ReviewEvent, User, Verdict
from db.session import make_engine
from review.auth import (
    Actor,
    PermissionDenied,
    Preferences,
    active_actor,
    preferences,
    set_active,
    set_preferences,
    set_role,
)
from review.config import Settings, load_settings, settings_env
from review.decisions import (
    MAX_BULK,
    Label,
    blind_for,
    claim,
    decide,
    decide_bulk,
    drawn_for_second_review,
    held_claim,
    history,
    release,
    undo,
)
from review.errors import ConfigError, IngestError, ReviewError
from review.ingest import ingest_paths
from review.operations import ingest_upload, start_scoring
from review.priority import ESCALATED_PRIORITY
from review.queue import QueueFilter, category_counts, cluster_post_ids, queue_count, queue_page
from review.verdicts import point_at

SECOND = QueueFilter(second_review=True)


# --------------------------------------------------------------------------------------------
# Helpers


def _people(desk) -> dict[str, Actor]:  # type: ignore[no-untyped-def]
    """An admin, three moderators and a lead (accounts without passwords: argon2 hashing would
    only slow these tests down; authentication has its own tests)."""
    people = {}
    with desk.sessions() as session, session.begin():
        for name, role in (("admin", "admin"), ("ann", "moderator"), ("bob", "moderator"), ("cid", "moderator"),
                           ("lea", "lead")):  # fmt: skip
            user = User(username=name, password_hash=None, role=role, active=True)
            session.add(user)
            session.flush()
            people[name] = Actor(user.id, name, role)
    return people


def _posts(desk, categories: list[str | None], prefix: str = "p") -> list[int]:  # type: ignore[no-untyped-def]
    """One queued post per entry, oldest first, each with a current verdict: a violation of that
    category (severity 1–3), "none" (no violation), or None (a failed verdict, priority 100)."""
    ids = []
    with desk.sessions() as session, session.begin():
        for i, category in enumerate(categories):
            failed = category is None
            severity = 0 if category in (None, "none") else 1 + i % 3
            post = Post(source="t", external_id=f"{prefix}{i}", text=f"post {i}", status="queued",
                        priority=100.0 if failed else severity * 0.9)  # fmt: skip
            session.add(post)
            session.flush()
            verdict = Verdict(
                post_id=post.id, provider="transformers", model_id="m", prompt_version="v", input_hash=f"{prefix}i{i}",
                text_hash=f"{prefix}t{i}", parse_status="failed" if failed else "ok",
                violation=None if failed else severity > 0, category=category,
                severity=None if failed else severity, confidence=None if failed else 0.9, tags=[], parse_notes=[],
            )  # fmt: skip
            session.add(verdict)
            session.flush()
            point_at(session, verdict)
            ids.append(post.id)
    return ids


def _row(desk, post_id: int) -> dict:  # type: ignore[no-untyped-def]
    with desk.sessions() as session:
        post = session.get(Post, post_id)
        assert post is not None
        return {
            "status": post.status,
            "first_decider_id": post.first_decider_id,
            "claimed_by_id": post.claimed_by_id,
            "lease_expires_at": post.lease_expires_at,
            "priority": post.priority,
        }


def _status(desk, post_id: int) -> str:  # type: ignore[no-untyped-def]
    return _row(desk, post_id)["status"]


def _event_count(desk) -> int:  # type: ignore[no-untyped-def]
    with desk.sessions() as session:
        return session.scalar(select(func.count(ReviewEvent.id))) or 0


def _verdict_label(desk, post_id: int) -> str:  # type: ignore[no-untyped-def]
    with desk.sessions() as session:
        v = session.scalars(select(Verdict).where(Verdict.post_id == post_id)).one()
        return f"{v.category} · severity {v.severity}" if v.violation else "no violation"


def _decide_first(desk, actor: Actor, post_id: int, *args, **kwargs):  # type: ignore[no-untyped-def]
    got = claim(desk.sessions, actor, post_id)
    assert got is not None and got.post_id == post_id
    return decide(desk.sessions, actor, post_id, *args, **kwargs)


def _ids(page) -> set[int]:  # type: ignore[no-untyped-def]
    return {row.post_id for row in page.rows}


# --------------------------------------------------------------------------------------------
# Second review


def test_a_drawn_decision_waits_for_second_review(desk) -> None:  # type: ignore[no-untyped-def]
    p = _people(desk)
    ann = p["ann"]
    ids = _posts(desk, ["fraud_spam"] * 6)
    _decide_first(desk, ann, ids[0], "confirm", share=1.0)
    _decide_first(desk, ann, ids[1], "overturn", label=Label(True, "sexual", 3), share=1.0)
    _decide_first(desk, ann, ids[2], "confirm", share=0.0)
    _decide_first(desk, ann, ids[3], "overturn", label=Label(True, "sexual", 3), share=0.0)
    _decide_first(desk, ann, ids[4], "escalate", share=1.0, note="needs a lead")
    _decide_first(desk, ann, ids[5], "skip", share=1.0)
    for post_id in ids[:2]:
        row = _row(desk, post_id)
        assert (row["status"], row["first_decider_id"]) == ("second_review", ann.id)
        assert row["claimed_by_id"] is None and row["lease_expires_at"] is None
    for post_id in ids[2:4]:
        assert (_status(desk, post_id), _row(desk, post_id)["first_decider_id"]) == ("decided", None)
    # only a confirm or an overturn is drawn: an escalation waits for a lead, a skip goes back
    assert _status(desk, ids[4]) == "escalated" and _row(desk, ids[4])["first_decider_id"] is None
    assert _status(desk, ids[5]) == "queued" and _row(desk, ids[5])["first_decider_id"] is None


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


def test_the_first_decider_never_takes_the_second_review(desk) -> None:  # type: ignore[no-untyped-def]
    p = _people(desk)
    ann, bob = p["ann"], p["bob"]
    ids = _posts(desk, ["fraud_spam", "sexual"])
    first = _decide_first(desk, ann, ids[0], "confirm", share=1.0)
    assert first.second_review is False and first.action == "confirm"
    assert claim(desk.sessions, ann, ids[0]) is None
    assert claim(desk.sessions, ann, flt=SECOND) is None
    taken = claim(desk.sessions, ann)
    assert taken is not None and taken.post_id == ids[1]  # the only post waiting for ann
    with desk.sessions() as session:
        assert queue_count(session, ann, SECOND) == 0
        assert queue_count(session, bob, SECOND) == 1
        assert _ids(queue_page(session, ann)) == {ids[1]}
    got = claim(desk.sessions, bob, flt=SECOND)
    assert got is not None and got.post_id == ids[0]
    second = decide(desk.sessions, bob, ids[0], "overturn", label=Label(True, "illegal_goods", 2), share=1.0)
    assert second.second_review is True and second.status_before == "second_review"
    assert second.action == "overturn" and second.label_category == "illegal_goods"
    assert _status(desk, ids[0]) == "decided"  # settled, not drawn a second time
    assert claim(desk.sessions, p["cid"], ids[0]) is None


def test_an_escalation_decided_by_a_lead_is_not_drawn(desk) -> None:  # type: ignore[no-untyped-def]
    p = _people(desk)
    ids = _posts(desk, ["fraud_spam"])
    _decide_first(desk, p["ann"], ids[0], "escalate", share=1.0, note="needs a lead")
    got = claim(desk.sessions, p["lea"])
    assert got is not None and got.post_id == ids[0]
    event = decide(desk.sessions, p["lea"], ids[0], "confirm", share=1.0)
    assert event.status_before == "escalated" and event.second_review is False
    assert (_status(desk, ids[0]), _row(desk, ids[0])["first_decider_id"]) == ("decided", None)


def test_the_second_reviewer_works_blind(desk) -> None:  # type: ignore[no-untyped-def]
    p = _people(desk)
    ann, bob, cid, lea = p["ann"], p["bob"], p["cid"], p["lea"]
    ids = _posts(desk, ["fraud_spam"])
    post_id = ids[0]
    verdict_label = _verdict_label(desk, post_id)
    first = _decide_first(desk, ann, post_id, "confirm", note="spam, obviously", share=1.0)
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
    row = _row(desk, post_id)
    assert (row["status"], row["claimed_by_id"], row["first_decider_id"]) == ("second_review", bob.id, ann.id)
    with desk.sessions() as session:
        assert history(session, bob, post_id)[1].label_hidden is True


def test_an_overturn_that_agrees_with_the_model_is_a_confirm(desk) -> None:  # type: ignore[no-untyped-def]
    p = _people(desk)
    ann, bob = p["ann"], p["bob"]
    ids = _posts(desk, ["fraud_spam", "none", "fraud_spam", None])
    with desk.sessions() as session:
        severity = session.scalars(select(Verdict.severity).where(Verdict.post_id == ids[0])).one()
    agree = _decide_first(desk, ann, ids[0], "overturn", label=Label(True, "fraud_spam", severity))
    assert agree.action == "confirm"
    assert (agree.label_violation, agree.label_category, agree.label_severity) == (True, "fraud_spam", severity)
    # "no violation" with any category or severity is the model's "none"
    clean = _decide_first(desk, ann, ids[1], "overturn", label=Label(False, "sexual", 2))
    assert clean.action == "confirm" and (clean.label_category, clean.label_severity) == ("none", 0)
    # a different severity is a real overturn
    other = Label(True, "fraud_spam", severity % 3 + 1)
    assert _decide_first(desk, ann, ids[2], "overturn", label=other).action == "overturn"
    # a failed verdict has no label to agree with
    assert _decide_first(desk, ann, ids[3], "overturn", label=Label(False, "none", 0)).action == "overturn"
    # a blind second reviewer who agrees with the (hidden) verdict confirms it
    more = _posts(desk, ["sexual"], prefix="q")
    with desk.sessions() as session:
        sev = session.scalars(select(Verdict.severity).where(Verdict.post_id == more[0])).one()
    _decide_first(desk, ann, more[0], "overturn", label=Label(True, "fraud_spam", 1), share=1.0)
    assert claim(desk.sessions, bob, more[0]) is not None
    second = decide(desk.sessions, bob, more[0], "overturn", label=Label(True, "sexual", sev))
    assert (second.action, second.second_review) == ("confirm", True)


def test_undo_while_waiting_for_second_review_reopens_for_the_first_decider(desk) -> None:  # type: ignore[no-untyped-def]
    p = _people(desk)
    ann, bob = p["ann"], p["bob"]
    ids = _posts(desk, ["fraud_spam", "sexual"])
    first = _decide_first(desk, ann, ids[0], "confirm", share=1.0)
    assert _status(desk, ids[0]) == "second_review"
    reopened = undo(desk.sessions, ann, first.id)
    row = _row(desk, ids[0])
    assert reopened.post_id == ids[0]
    assert (row["status"], row["claimed_by_id"]) == ("queued", ann.id)
    assert row["lease_expires_at"] is not None and row["lease_expires_at"] > datetime.now(UTC)
    assert claim(desk.sessions, bob, ids[0]) is None  # ann holds it again
    with desk.sessions() as session:
        assert held_claim(session, ann).post_id == ids[0]
        assert queue_count(session, bob, SECOND) == 0
    again = decide(desk.sessions, ann, ids[0], "overturn", label=Label(True, "sexual", 1), share=0.0)
    assert again.second_review is False and _status(desk, ids[0]) == "decided"

    # once the second reviewer has taken the post, the first decision stands
    first = _decide_first(desk, ann, ids[1], "confirm", share=1.0)
    assert claim(desk.sessions, bob, ids[1]) is not None
    with pytest.raises(ReviewError, match="changed since"):
        undo(desk.sessions, ann, first.id)
    assert _row(desk, ids[1])["claimed_by_id"] == bob.id


def test_queue_filters_on_second_review_and_escalation(desk) -> None:  # type: ignore[no-untyped-def]
    p = _people(desk)
    ann, bob, lea = p["ann"], p["bob"], p["lea"]
    queued, second, escalated, decided, failed = _posts(desk, ["fraud_spam", "sexual", "fraud_spam", "none", None])
    _decide_first(desk, ann, second, "confirm", share=1.0)
    _decide_first(desk, ann, escalated, "escalate", note="needs a lead")
    _decide_first(desk, ann, decided, "confirm", share=0.0)
    cases = [
        (bob, QueueFilter(), {queued, second, failed}),
        (bob, SECOND, {second}),
        (bob, QueueFilter(second_review=False), {queued, failed}),
        (bob, QueueFilter(escalated=True), set()),
        (bob, QueueFilter(escalated=False), {queued, second, failed}),
        (bob, QueueFilter(second_review=True, model_failure=False), {second}),
        (ann, QueueFilter(), {queued, failed}),
        (ann, SECOND, set()),
        (lea, QueueFilter(), {queued, second, escalated, failed}),
        (lea, QueueFilter(escalated=True), {escalated}),
        (lea, QueueFilter(escalated=False), {queued, second, failed}),
        (lea, QueueFilter(escalated=False, second_review=False), {queued, failed}),
        (lea, QueueFilter(escalated=True, second_review=True), set()),
        (lea, QueueFilter(second_review=True, category="sexual"), {second}),
        (lea, QueueFilter(second_review=True, category="fraud_spam"), set()),
    ]
    with desk.sessions() as session:
        for actor, flt, expected in cases:
            page = queue_page(session, actor, flt)
            assert _ids(page) == expected, (actor.username, flt)
            assert queue_count(session, actor, flt) == len(expected), (actor.username, flt)
        # the escalation comes first for a lead, then the model failure
        assert [r.post_id for r in queue_page(session, lea).rows][:2] == [escalated, failed]
        assert {r.status for r in queue_page(session, lea, SECOND).rows} == {"second_review"}


# --------------------------------------------------------------------------------------------
# Bulk decisions


def test_bulk_confirm_skips_what_it_must_and_shares_one_id(desk) -> None:  # type: ignore[no-untyped-def]
    p = _people(desk)
    ann, bob, lea = p["ann"], p["bob"], p["lea"]
    ids = _posts(desk, ["fraud_spam", "none", None, "sexual", "fraud_spam", "sexual", "fraud_spam"])
    ok1, ok2, failed, held, done, in_second, ok3 = ids
    assert claim(desk.sessions, bob, held) is not None
    _decide_first(desk, ann, done, "confirm", share=0.0)
    _decide_first(desk, ann, in_second, "confirm", share=1.0)
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
        assert _status(desk, post_id) == "decided"
    assert _status(desk, failed) == "queued" and _status(desk, in_second) == "second_review"
    assert _row(desk, held)["claimed_by_id"] == bob.id and _status(desk, held) == "queued"


def test_bulk_refusals_write_nothing(desk) -> None:  # type: ignore[no-untyped-def]
    p = _people(desk)
    ids = _posts(desk, ["fraud_spam", "sexual"])
    before = _event_count(desk)
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
    assert _event_count(desk) == before
    assert [_status(desk, i) for i in ids] == ["queued", "queued"]
    # exactly MAX_BULK ids are allowed (the missing ones are skipped)
    result = decide_bulk(desk.sessions, p["lea"], [*ids, *range(max(ids) + 1, max(ids) + MAX_BULK - 1)], "confirm")
    assert result.decided == ids and len(result.skipped) == MAX_BULK - 2


def test_bulk_escalate_and_overturn(desk) -> None:  # type: ignore[no-untyped-def]
    p = _people(desk)
    lea = p["lea"]
    ids = _posts(desk, ["fraud_spam", "none", None, "sexual", "fraud_spam"])
    escalated = decide_bulk(desk.sessions, lea, ids[:3], "escalate", note="needs a lead")
    assert escalated.decided == ids[:3] and escalated.skipped == {}
    for post_id in ids[:3]:
        row = _row(desk, post_id)
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
    assert {_status(desk, i) for i in ids} == {"decided"}
    assert escalated.bulk_id != overturned.bulk_id


# --------------------------------------------------------------------------------------------
# Clusters, counts, held claims


def test_cluster_post_ids_follow_shared_duplicate_clusters(desk) -> None:  # type: ignore[no-untyped-def]
    with desk.sessions() as session, session.begin():
        media = []
        for i in range(7):
            m = Media(sha256=f"{i:064x}", path=f"m/{i}.png", thumb_path=f"t/{i}.jpg", mime="image/png", width=10,
                      height=10, frames=1, size_bytes=100, phash=f"{i:016x}")  # fmt: skip
            session.add(m)
            media.append(m)
        session.flush()
        # clusters: {m0, m1, m5}, {m2}, {m3, m6}; m4 not computed yet
        for member, first in ((0, 0), (1, 0), (5, 0), (2, 2), (3, 3), (6, 3)):
            media[member].dup_cluster = media[first].id
        posts = [Post(source="c", external_id=f"c{i}", text="", status="queued") for i in range(7)]
        session.add_all(posts)
        session.flush()
        links = {0: [0], 1: [1, 4], 2: [2], 3: [4], 4: [], 5: [3, 5], 6: [6]}
        for post_index, media_indexes in links.items():
            for position, m in enumerate(media_indexes):
                session.add(PostMedia(post_id=posts[post_index].id, position=position, media_id=media[m].id))
        pid = [post.id for post in posts]
    with desk.sessions() as session:
        first_cluster = sorted([pid[0], pid[1], pid[5]])
        assert cluster_post_ids(session, pid[0]) == first_cluster
        assert cluster_post_ids(session, pid[1]) == first_cluster
        # a post in two clusters brings both
        assert cluster_post_ids(session, pid[5]) == sorted([pid[0], pid[1], pid[5], pid[6]])
        assert cluster_post_ids(session, pid[6]) == sorted([pid[5], pid[6]])
        assert cluster_post_ids(session, pid[2]) == [pid[2]]  # a cluster of one
        assert cluster_post_ids(session, pid[3]) == [pid[3]]  # its image has no cluster yet
        assert cluster_post_ids(session, pid[4]) == [pid[4]]  # no images
        assert cluster_post_ids(session, pid[5], limit=2) == first_cluster[:2]


def test_category_counts_match_the_waiting_posts(desk) -> None:  # type: ignore[no-untyped-def]
    p = _people(desk)
    ann, bob, lea = p["ann"], p["bob"], p["lea"]
    categories = ["fraud_spam"] * 4 + ["sexual"] * 3 + ["none"] * 2 + [None] * 2 + ["illegal_goods"]
    ids = _posts(desk, categories)
    with desk.sessions() as session:
        assert category_counts(session, bob) == {"fraud_spam": 4, "sexual": 3, "none": 2, None: 2, "illegal_goods": 1}
    _decide_first(desk, ann, ids[0], "confirm", share=0.0)  # decided: no longer waiting
    _decide_first(desk, ann, ids[4], "escalate", note="needs a lead")  # waits for leads only
    _decide_first(desk, ann, ids[5], "confirm", share=1.0)  # second review: not for ann
    assert claim(desk.sessions, bob, ids[1]) is not None  # claimed posts still count

    def manual(actor: Actor, violation: bool | None = None) -> dict[str | None, int]:
        statuses = {"queued", "second_review"} | ({"escalated"} if actor.role == "lead" else set())
        with desk.sessions() as session:
            rows = session.execute(
                select(Post.status, Post.first_decider_id, Post.verdict_category, Post.verdict_violation)
            ).all()
        return dict(
            Counter(
                r.verdict_category
                for r in rows
                if r.status in statuses
                and not (r.status == "second_review" and r.first_decider_id == actor.id)
                and (violation is None or r.verdict_violation is violation)
            )
        )

    with desk.sessions() as session:
        for actor in (ann, bob, lea):
            counts = category_counts(session, actor)
            assert counts == manual(actor), actor.username
            assert list(counts.values()) == sorted(counts.values(), reverse=True)  # largest first
            assert sum(counts.values()) == queue_count(session, actor)
            assert category_counts(session, actor, QueueFilter(violation=True)) == manual(actor, violation=True)
        assert category_counts(session, bob) == {"fraud_spam": 3, "sexual": 2, "none": 2, None: 2, "illegal_goods": 1}
        assert category_counts(session, ann)["sexual"] == 1
        assert category_counts(session, lea)["sexual"] == 3
        assert category_counts(session, bob, SECOND) == {"sexual": 1}


def test_held_claim_resumes_a_live_claim_only(desk) -> None:  # type: ignore[no-untyped-def]
    p = _people(desk)
    ann, bob = p["ann"], p["bob"]
    ids = _posts(desk, ["fraud_spam", "sexual", "none"])
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


# --------------------------------------------------------------------------------------------
# Preferences and the live account


def test_preferences_default_round_trip_and_stay_per_user(desk) -> None:  # type: ignore[no-untyped-def]
    p = _people(desk)
    ann, bob = p["ann"], p["bob"]
    with desk.sessions() as session:
        assert preferences(session, ann) == Preferences(blur_flagged=True, greyscale=False)
    set_preferences(desk.sessions, ann, Preferences(blur_flagged=False, greyscale=True))
    with desk.sessions() as session:
        assert preferences(session, ann) == Preferences(blur_flagged=False, greyscale=True)
        assert preferences(session, bob) == Preferences(blur_flagged=True, greyscale=False)
    set_preferences(desk.sessions, bob, Preferences(blur_flagged=True, greyscale=True))
    set_preferences(desk.sessions, ann, Preferences(blur_flagged=False, greyscale=False))
    with desk.sessions() as session:
        assert preferences(session, ann) == Preferences(blur_flagged=False, greyscale=False)
        assert preferences(session, bob) == Preferences(blur_flagged=True, greyscale=True)
        assert preferences(session, p["cid"]) == Preferences()
        stored = session.scalar(select(User.preferences).where(User.id == ann.id))
    assert stored == {"blur_flagged": False, "greyscale": False}
    # unknown keys stored by a future version are ignored
    with desk.sessions() as session, session.begin():
        session.get(User, bob.id).preferences = {"greyscale": True, "zoom": 3}
    with desk.sessions() as session:
        assert preferences(session, bob) == Preferences(blur_flagged=True, greyscale=True)


def test_active_actor_reflects_the_account_now(desk) -> None:  # type: ignore[no-untyped-def]
    p = _people(desk)
    admin, bob = p["admin"], p["bob"]
    with desk.sessions() as session:
        assert active_actor(session, bob.id) == bob
        assert active_actor(session, 987654) is None
    set_role(desk.sessions, "bob", "lead", by=admin)
    with desk.sessions() as session:
        now_lead = active_actor(session, bob.id)
    assert now_lead is not None and now_lead.role == "lead" and now_lead.username == "bob"
    ids = _posts(desk, ["fraud_spam"])
    assert decide_bulk(desk.sessions, now_lead, ids, "confirm").decided == ids
    set_active(desk.sessions, "bob", False, by=admin)
    with desk.sessions() as session:
        assert active_actor(session, bob.id) is None
    with pytest.raises(PermissionDenied, match="no longer active"):
        claim(desk.sessions, now_lead)  # the old handle is refused by the core too
    set_active(desk.sessions, "bob", True, by=admin)
    with desk.sessions() as session:
        assert active_actor(session, bob.id) == now_lead


# --------------------------------------------------------------------------------------------
# Uploads (Operations page)


def _png(seed: int, size: tuple[int, int] = (32, 24)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, ((seed * 53) % 256, (seed * 97) % 256, (seed * 31) % 256)).save(out, format="PNG")
    return out.getvalue()


def _jsonl(*records: dict) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def _stored(desk) -> dict[str, tuple[str, str, int]]:  # type: ignore[no-untyped-def]
    """external_id → (source, text, number of images) of every stored post."""
    with desk.sessions() as session:
        rows = session.execute(
            select(Post.external_id, Post.source, Post.text, func.count(PostMedia.media_id))
            .outerjoin(PostMedia, PostMedia.post_id == Post.id)
            .group_by(Post.id)
        ).all()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_upload_of_a_jsonl_with_its_images(desk) -> None:  # type: ignore[no-untyped-def]
    p = _people(desk)
    data = _jsonl(
        {"external_id": "u1", "text": "one image", "images": ["a.png"]},
        {"external_id": "u2", "text": "two images", "images": ["a.png", "b.png"]},
        {"external_id": "u3", "text": "text only"},
        {"external_id": "u4", "text": "missing image", "images": ["nowhere.png"]},
    )
    files = [("posts.jsonl", data), ("a.png", _png(1)), ("b.png", _png(2))]
    report = ingest_upload(desk.sessions, desk.settings, p["lea"], files, source="upload")
    assert (report.added, report.already_present) == (3, 0)
    assert [r.location for r in report.rejected] == ["posts.jsonl:4"]
    assert len(report.post_ids) == 3
    assert _stored(desk) == {
        "u1": ("upload", "one image", 1),
        "u2": ("upload", "two images", 2),
        "u3": ("upload", "text only", 0),
    }
    with desk.sessions() as session:
        assert session.scalar(select(func.count(Media.id))) == 2  # a.png stored once
        statuses = set(session.scalars(select(Post.status)))
    assert statuses == {"unscored"}
    # the same upload again adds nothing
    again = ingest_upload(desk.sessions, desk.settings, p["admin"], files[:1] + files[1:], source="upload")
    assert (again.added, again.already_present) == (0, 3)


def test_upload_of_a_zip_keeps_its_folder_layout(desk) -> None:  # type: ignore[no-untyped-def]
    p = _people(desk)
    members = {
        "batch/posts.jsonl": _jsonl(
            {"external_id": "z1", "text": "from a zip", "images": ["img/c.png"]},
            {"external_id": "z2", "source": "forum", "text": "two", "images": ["img/c.png", "img/sub/d.png"]},
        ),
        "batch/img/c.png": _png(3),
        "batch/img/sub/d.png": _png(4),
    }
    report = ingest_upload(desk.sessions, desk.settings, p["lea"], [("export.zip", _zip(members))])
    assert report.rejected == [] and report.added == 2
    assert _stored(desk) == {"z1": ("local", "from a zip", 1), "z2": ("forum", "two", 2)}


@pytest.mark.parametrize("bad", ["../evil.png", "batch/../../evil.png", "/abs/evil.png"])
def test_upload_refuses_a_zip_that_leaves_its_folder(desk, bad: str) -> None:  # type: ignore[no-untyped-def]
    p = _people(desk)
    members = {
        "batch/posts.jsonl": _jsonl({"external_id": "ok", "text": "fine", "images": ["c.png"]}),
        "batch/c.png": _png(5),
        bad: _png(6),
    }
    plain = ("plain.jsonl", _jsonl({"external_id": "plain", "text": "also fine"}))
    with pytest.raises(IngestError, match="refused member"):
        ingest_upload(desk.sessions, desk.settings, p["lea"], [plain, ("evil.zip", _zip(members))])
    assert _stored(desk) == {}
    with desk.sessions() as session:
        assert session.scalar(select(func.count(Media.id))) == 0


def test_upload_needs_the_ingest_permission(desk) -> None:  # type: ignore[no-untyped-def]
    p = _people(desk)
    files = [("posts.jsonl", _jsonl({"external_id": "m1", "text": "x"}))]
    with pytest.raises(PermissionDenied):
        ingest_upload(desk.sessions, desk.settings, p["ann"], files)
    assert _stored(desk) == {}
    with pytest.raises(IngestError, match="no files"):
        ingest_upload(desk.sessions, desk.settings, p["lea"], [])
    with pytest.raises(IngestError, match="not a readable zip"):
        ingest_upload(desk.sessions, desk.settings, p["lea"], [("broken.zip", b"not a zip at all")])


def test_upload_of_images_alone_is_a_folder_ingest(desk) -> None:  # type: ignore[no-untyped-def]
    p = _people(desk)
    files = [("cat.png", _png(7)), ("dog.png", _png(8)), ("dog.txt", b"a dog")]
    report = ingest_upload(desk.sessions, desk.settings, p["lea"], files, source="photos")
    assert report.rejected == [] and report.added == 2
    assert _stored(desk) == {"cat": ("photos", "", 1), "dog": ("photos", "a dog", 1)}


def test_upload_keeps_the_file_names_a_jsonl_refers_to(sqlite_desk) -> None:  # type: ignore[no-untyped-def]
    desk = sqlite_desk
    p = _people(desk)
    data = _jsonl(
        {"external_id": "s1", "text": "space", "images": ["my photo.png"]},
        {"external_id": "s2", "text": "中文", "images": ["截图 1.png"]},
    )
    files = [("posts.jsonl", data), ("my photo.png", _png(9)), ("截图 1.png", _png(10))]
    report = ingest_upload(desk.sessions, desk.settings, p["lea"], files)
    assert report.rejected == [] and report.added == 2


def test_upload_of_images_with_chinese_names(sqlite_desk) -> None:  # type: ignore[no-untyped-def]
    desk = sqlite_desk
    p = _people(desk)
    report = ingest_upload(desk.sessions, desk.settings, p["lea"], [("猫.png", _png(11)), ("狗.png", _png(12))])
    assert report.rejected == [] and report.added == 2


# --------------------------------------------------------------------------------------------
# Scoring jobs (Operations page)


def test_start_scoring_runs_a_baseline_worker(sqlite_desk, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    desk = sqlite_desk
    p = _people(desk)
    folder = tmp_path / "input"
    folder.mkdir()
    for i in range(4):
        (folder / f"{i}.png").write_bytes(_png(20 + i, (64, 48)))
    (folder / "posts.jsonl").write_bytes(
        _jsonl(
            {"external_id": "s0", "text": "加微信 abc123 领取免费 iPhone", "images": ["0.png"]},
            {"external_id": "s1", "text": "a quiet afternoon", "images": ["1.png"]},
            {"external_id": "s2", "text": "100%有效 最好的产品", "images": ["2.png"]},
            {"external_id": "s3", "text": "left for later", "images": ["3.png"]},
        )
    )
    report = ingest_paths(desk.sessions, [folder / "posts.jsonl"], desk.settings)
    assert report.added == 4

    with pytest.raises(PermissionDenied):
        start_scoring(desk.settings, p["ann"], limit=3, provider="baseline")
    with pytest.raises(IngestError, match="at least 1"):
        start_scoring(desk.settings, p["lea"], limit=0, provider="baseline")

    job = start_scoring(desk.settings, p["lea"], limit=3, provider="baseline")
    assert job.started_by == "lea" and job.command[-4:] == ["--limit", "3", "--provider", "baseline"]
    deadline = time.monotonic() + 120
    while job.running and time.monotonic() < deadline:
        time.sleep(0.2)
    if job.running:
        job.process.kill()
        pytest.fail(f"the scoring worker did not finish in 120 s:\n{job.log_tail()}")
    log = job.log_tail(50)
    assert job.returncode == 0, log
    assert "baseline" in log
    assert job.log_path.parent == desk.settings.media_dir.resolve().parent / "jobs"
    with desk.sessions() as session:
        scored = session.scalar(select(func.count(func.distinct(Verdict.post_id))))
        providers = set(session.scalars(select(Verdict.provider)))
        statuses = Counter(session.scalars(select(Post.status)))
    assert scored == 3
    assert providers == {"baseline"}
    assert statuses == {"queued": 3, "unscored": 1}


# --------------------------------------------------------------------------------------------
# Settings


@pytest.fixture
def no_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory without a review.toml (load_settings reads ./review.toml)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_second_review_settings_are_parsed(no_config_file: Path) -> None:
    default = load_settings({})
    assert (default.second_review_share, default.second_review_hide_verdict) == (0.1, False)
    got = load_settings({"SECOND_REVIEW_SHARE": "0.25", "SECOND_REVIEW_HIDE_VERDICT": "yes"})
    assert (got.second_review_share, got.second_review_hide_verdict) == (0.25, True)
    for text, value in (("0", 0.0), ("1", 1.0), ("1.0", 1.0), (" 0.5 ", 0.5)):
        assert load_settings({"SECOND_REVIEW_SHARE": text}).second_review_share == value
    for text, value in (("true", True), ("ON", True), ("1", True), ("false", False), ("no", False), ("0", False)):
        assert load_settings({"SECOND_REVIEW_HIDE_VERDICT": text}).second_review_hide_verdict is value
    config = no_config_file / "desk.toml"
    config.write_text("second_review_share = 0.3\nsecond_review_hide_verdict = true\n", encoding="utf-8")
    from_file = load_settings({"REVIEW_CONFIG": str(config)})
    assert (from_file.second_review_share, from_file.second_review_hide_verdict) == (0.3, True)
    env_wins = load_settings({"REVIEW_CONFIG": str(config), "SECOND_REVIEW_SHARE": "0.05"})
    assert env_wins.second_review_share == 0.05 and env_wins.second_review_hide_verdict is True


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("SECOND_REVIEW_SHARE", "1.5", "between 0 and 1"),
        ("SECOND_REVIEW_SHARE", "-0.1", "between 0 and 1"),
        ("SECOND_REVIEW_SHARE", "nan", "between 0 and 1"),
        ("SECOND_REVIEW_SHARE", "inf", "between 0 and 1"),
        ("SECOND_REVIEW_SHARE", "10%", "must be a number"),
        ("SECOND_REVIEW_SHARE", "a tenth", "must be a number"),
        ("SECOND_REVIEW_HIDE_VERDICT", "maybe", "must be true or false"),
        ("SECOND_REVIEW_HIDE_VERDICT", "2", "must be true or false"),
    ],
)
def test_second_review_settings_are_refused(no_config_file: Path, var: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({var: value})


def test_a_share_out_of_range_in_the_config_file_is_refused(no_config_file: Path) -> None:
    config = no_config_file / "desk.toml"
    config.write_text("second_review_share = 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="between 0 and 1"):
        load_settings({"REVIEW_CONFIG": str(config)})
    config.write_text('second_review_hide_verdict = "sometimes"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="true or false"):
        load_settings({"REVIEW_CONFIG": str(config)})


def test_settings_env_round_trips(no_config_file: Path, tmp_path: Path) -> None:
    assert load_settings(settings_env(Settings())) == Settings()
    custom = Settings(
        database_url=f"sqlite:///{tmp_path / 'other.db'}",
        media_dir=tmp_path / "media store",
        max_image_pixels=12_345_678,
        max_image_bytes=1_000_000,
        max_text_chars=5000,
        thumbnail_size=200,
        provider="openai",
        model="some/model-7B",
        model_base_url="http://127.0.0.1:8000/v1",
        model_max_pixels=200_704,
        second_review_share=0.35,
        second_review_hide_verdict=True,
    )
    env = settings_env(custom)
    assert env["SECOND_REVIEW_SHARE"] == "0.35" and env["SECOND_REVIEW_HIDE_VERDICT"] == "true"
    assert load_settings(env) == custom
    for share in (0.0, 1.0, 1 / 3, 0.1 + 0.2):
        again = Settings(second_review_share=share)
        assert load_settings(settings_env(again)) == again


# --------------------------------------------------------------------------------------------
# Migration 0005


def _columns(engine, table: str) -> set[str]:  # type: ignore[no-untyped-def]
    return {c["name"] for c in inspect(engine).get_columns(table)}


def _indexes(engine, table: str) -> set[str]:  # type: ignore[no-untyped-def]
    return {i["name"] for i in inspect(engine).get_indexes(table)}


def _queue_index_sql(engine) -> str:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'ix_post_queue'").scalar()
        return conn.exec_driver_sql("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_post_queue'").scalar()


def test_migration_0005_down_and_up(db_url: str) -> None:
    """The status, the columns and the index step down and up; a second review becomes decided.
    (No row refers to a user here: see the two tests below for a desk with a review history.)"""
    engine = make_engine(db_url)
    try:
        schema.upgrade(engine)
        indexes = _indexes(engine, "post")
        assert {"ix_post_claimed_by_id", "ix_post_queue"} <= indexes
        with Session(engine) as session, session.begin():
            ann = User(username="ann", role="moderator", preferences={"greyscale": True})
            session.add(ann)
            posts = [
                Post(source="m", external_id="a", text="in second review", status="second_review", priority=1.8),
                Post(source="m", external_id="b", text="queued", status="queued", priority=0.9),
                Post(source="m", external_id="c", text="decided", status="decided"),
            ]
            session.add_all(posts)
            session.flush()
            ids = [post.id for post in posts]
            user_id = ann.id
        with Session(engine) as session:
            assert session.get(Post, ids[0]).status == "second_review"
            assert preferences(session, Actor(user_id, "ann", "moderator")) == Preferences(greyscale=True)

        schema.downgrade(engine, "0004")
        assert schema.current_revision(engine) == "0004"
        assert "first_decider_id" not in _columns(engine, "post")
        assert "preferences" not in _columns(engine, "app_user")
        assert _indexes(engine, "post") == indexes - {"ix_post_claimed_by_id"}
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT id, status, priority, text FROM post ORDER BY id").all()
            users = conn.exec_driver_sql("SELECT username FROM app_user").scalars().all()
        assert [tuple(r) for r in rows] == [
            (ids[0], "decided", 1.8, "in second review"),
            (ids[1], "queued", 0.9, "queued"),
            (ids[2], "decided", 0.0, "decided"),
        ]
        assert users == ["ann"]
        # 0004 knows no second_review status
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE post SET status = 'second_review' WHERE id = {ids[1]}")

        schema.upgrade(engine)
        schema.require_current(engine)
        assert "first_decider_id" in _columns(engine, "post") and "preferences" in _columns(engine, "app_user")
        assert _indexes(engine, "post") == indexes
        assert "DESC" in _queue_index_sql(engine).upper()
        with Session(engine) as session, session.begin():
            assert [session.get(Post, i).status for i in ids] == ["decided", "queued", "decided"]
            assert preferences(session, Actor(user_id, "ann", "moderator")) == Preferences()  # back to defaults
            session.get(Post, ids[1]).status = "second_review"  # allowed again
            session.get(Post, ids[1]).first_decider_id = user_id
        with Session(engine) as session:
            assert session.get(Post, ids[1]).status == "second_review"
    finally:
        engine.dispose()


HISTORY_TABLES = ("app_user", "post", "media", "post_media", "signal", "verdict", "review_event")
NOW = "2026-11-23 10:00:00"


def _history_rows(engine) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return {t: conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar() for t in HISTORY_TABLES}


def _insert_history(engine, *, second_review: bool) -> None:  # type: ignore[no-untyped-def]
    """A reviewed post as a desk has them: a user, the post (claimed by them), an image with a
    signal, a verdict and a decision. Plain SQL, so that it works at 0004 and at 0005."""
    extra_cols, extra_vals = (", first_decider_id", ", 1") if second_review else ("", "")
    status = "second_review" if second_review else "decided"
    with engine.begin() as conn:
        for sql in (
            "INSERT INTO app_user (id, username, role, active, created_at, failed_logins) "
            f"VALUES (1, 'ann', 'moderator', true, '{NOW}', 0)",
            "INSERT INTO post (id, source, external_id, text, ingested_at, metadata, status, priority, updated_at, "
            f"claimed_by_id{extra_cols}) VALUES (1, 's', 'e1', 't', '{NOW}', '{{}}', '{status}', 0, '{NOW}', 1"
            f"{extra_vals})",
            "INSERT INTO media (id, sha256, path, thumb_path, mime, width, height, frames, size_bytes, phash, "
            f"created_at) VALUES (1, 'abc', 'p.png', 't.jpg', 'image/png', 1, 1, 1, 1, '0', '{NOW}')",
            "INSERT INTO post_media (post_id, position, media_id) VALUES (1, 0, 1)",
            "INSERT INTO signal (id, post_id, media_id, kind, value, producer, producer_version, created_at) "
            f"VALUES (1, 1, 1, 'ocr', '{{}}', 'x', '1', '{NOW}')",
            "INSERT INTO verdict (id, post_id, created_at, provider, model_id, prompt_version, input_hash, cache_hit, "
            f"tags, parse_status, parse_notes) VALUES (1, 1, '{NOW}', 'p', 'm', 'v', 'h', false, '[]', 'ok', '[]')",
            "INSERT INTO review_event (id, post_id, user_id, action, created_at, second_review) "
            f"VALUES (1, 1, 1, 'confirm', '{NOW}', false)",
        ):
            conn.exec_driver_sql(sql)


def test_upgrade_to_0005_keeps_the_review_history(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        schema.upgrade(engine, "0004")
        _insert_history(engine, second_review=False)
        before = _history_rows(engine)
        assert set(before.values()) == {1}
        schema.upgrade(engine, "0005")
        assert schema.current_revision(engine) == "0005"
        assert _history_rows(engine) == before
    finally:
        engine.dispose()


def test_downgrade_from_0005_keeps_the_review_history(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        schema.upgrade(engine, "0005")
        _insert_history(engine, second_review=True)
        before = _history_rows(engine)
        schema.downgrade(engine, "0004")
        assert schema.current_revision(engine) == "0004"
        assert _history_rows(engine) == before
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT status FROM post").scalar() == "decided"
    finally:
        engine.dispose()

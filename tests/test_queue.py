"""The queue listing: filters on the post and its current verdict, claim order, keyset paging,
counts, claims shown, and `claim` honouring the same filter."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from db.models import Post, Verdict
from review.auth import create_user
from review.decisions import claim, decide
from review.queue import QueueFilter, queue_count, queue_page
from review.verdicts import point_at
from review.visibility import Viewer

PASSWORD = "correct horse battery"


def _seed(desk) -> dict[str, int]:
    """Posts named by what their current verdict says; "rescored" has an older, different verdict."""
    now = datetime.now(UTC)
    # name: (source, status, priority, age in days, [verdicts: (parse status, violation, category, severity,
    #                                                           confidence, model)])
    specs = {
        "spam": ("weibo", "queued", 2.7, 1, [("ok", True, "fraud_spam", 3, 0.9, "m1")]),
        "ad": ("weibo", "queued", 0.8, 3, [("ok", True, "false_advertising", 1, 0.8, "m1")]),
        "clean": ("douyin", "queued", 0.0, 5, [("ok", False, "none", 0, 0.55, "baseline-rules")]),
        "broken": ("douyin", "queued", 100.0, 2, [("failed", None, None, None, None, "m1")]),
        "hot": ("weibo", "escalated", 200.0, 4, [("ok", True, "violence_gore", 2, 0.6, "m1")]),
        "done": ("weibo", "decided", 2.7, 1, [("ok", True, "fraud_spam", 3, 0.9, "m1")]),
        "rescored": ("weibo", "queued", 1.4, 2, [("ok", False, "none", 0, 0.9, "m1"),
                                                 ("ok", True, "sexual", 2, 0.7, "m2")]),
    }  # fmt: skip
    ids = {}
    with desk.sessions() as session, session.begin():
        for name, (source, status, priority, days, verdicts) in specs.items():
            post = Post(source=source, external_id=name, text=name, status=status, priority=priority,
                        ingested_at=now - timedelta(days=days))  # fmt: skip
            session.add(post)
            session.flush()
            for i, (parse, violation, category, severity, confidence, model) in enumerate(verdicts):
                verdict = Verdict(post_id=post.id, provider="transformers", model_id=model, prompt_version=f"p{i}",
                                  input_hash=f"{name}{i}", text_hash=name, parse_status=parse, violation=violation,
                                  category=category, severity=severity, confidence=confidence, tags=[],
                                  parse_notes=[])  # fmt: skip
                session.add(verdict)
                session.flush()
                point_at(session, verdict)  # as scoring does
            ids[name] = post.id
    return ids


def _names(page, ids: dict[str, int]) -> list[str]:
    back = {v: k for k, v in ids.items()}
    return [back[r.post_id] for r in page.rows]


def test_filters_order_and_roles(desk) -> None:
    ids = _seed(desk)
    admin = create_user(desk.sessions, "admin", PASSWORD, "admin", by=None)
    mod = create_user(desk.sessions, "mod", PASSWORD, "moderator", by=admin)
    lead = create_user(desk.sessions, "lead", PASSWORD, "lead", by=admin)
    with desk.sessions() as s:

        def names(actor, **filters) -> list[str]:
            flt = QueueFilter(**filters)
            page = queue_page(s, Viewer(actor), flt)
            assert queue_count(s, actor, flt) == len(page.rows)
            return _names(page, ids)

        assert names(mod) == ["broken", "spam", "rescored", "ad", "clean"]
        assert names(lead) == ["hot", "broken", "spam", "rescored", "ad", "clean"]
        assert names(lead, escalated=True) == ["hot"] and names(mod, escalated=True) == []
        assert names(lead, escalated=False) == names(mod)
        assert names(mod, category="sexual") == ["rescored"]  # the current verdict, not the older one
        assert names(mod, category="none") == ["clean"]
        assert names(mod, violation=False) == ["clean"]
        assert names(mod, violation=True) == ["spam", "rescored", "ad"]
        assert names(mod, min_confidence=0.7, max_confidence=0.85) == ["rescored", "ad"]
        assert names(mod, model_failure=True) == ["broken"]
        assert names(mod, model_failure=False) == ["spam", "rescored", "ad", "clean"]
        assert names(mod, source="douyin") == ["broken", "clean"]
        assert names(mod, model_id="m2") == ["rescored"] and names(mod, prompt_version="p1") == ["rescored"]
        assert names(mod, min_age=timedelta(days=2, hours=12)) == ["ad", "clean"]
        assert names(mod, max_age=timedelta(days=2, hours=12)) == ["broken", "spam", "rescored"]
        row = queue_page(s, Viewer(mod), QueueFilter(category="fraud_spam")).rows[0]
        assert (row.category, row.severity, row.confidence, row.model_id, row.in_review_by) == (
            "fraud_spam", 3, 0.9, "m1", None)  # fmt: skip
    # a claim shows who is reviewing; Next under a filter takes the first post under it
    got = claim(desk.sessions, mod, flt=QueueFilter(violation=False))
    assert got.post_id == ids["clean"]
    with desk.sessions() as s:
        assert queue_page(s, Viewer(lead), QueueFilter(source="douyin")).rows[1].in_review_by == "mod"
    decide(desk.sessions, mod, got.post_id, "confirm")
    assert claim(desk.sessions, mod, flt=QueueFilter(violation=False)) is None


def test_keyset_paging_visits_every_post_once(sqlite_desk) -> None:
    admin = create_user(sqlite_desk.sessions, "admin", PASSWORD, "admin", by=None)
    rng = random.Random(4)
    with sqlite_desk.sessions() as session, session.begin():
        for i in range(153):  # both waiting statuses, tied and fractional priorities, and decided posts
            status = rng.choice(["queued", "queued", "escalated", "decided"])
            priority = rng.choice([0.0, 0.3, 1.7, 2.7000000000000002, 100.0, rng.random() * 3])
            session.add(Post(source="s", external_id=str(i), text="t", status=status, priority=priority))
    seen, cursor = [], None
    with sqlite_desk.sessions() as s:
        while True:
            page = queue_page(s, Viewer(admin), after=cursor, limit=7)
            seen += [(r.priority, r.post_id) for r in page.rows]
            cursor = page.next_cursor
            if cursor is None:
                break
        waiting = s.execute(select(Post.priority, Post.id).where(Post.status != "decided")).all()
    assert seen == sorted(((p, i) for p, i in waiting), key=lambda pr: (-pr[0], pr[1]))  # each once, in order

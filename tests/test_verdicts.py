"""What a verdict is for the desk (review/verdicts.py): the usable rule in Python and SQL, the
current verdict as every caller reads it, the category a verdict shows, and which posts wait to be
scored (the first N by id for a limited run)."""

from __future__ import annotations

from typing import get_args

import pytest
from sqlalchemy import select

from db.models import Post, PostLabel, ReviewEvent, Verdict
from review.browse import get_posts
from review.decisions import Label, claim, decide
from review.desk import Desk
from review.errors import ReviewError
from review.followup import load_post
from review.inference.parsing import ParseStatus
from review.priority import FAILURE_PRIORITY, queue_priority
from review.queue import QueueFilter, queue_page
from review.verdicts import (
    PARSE_STATUSES,
    USABLE,
    category_shown,
    category_shown_sql,
    current_verdict,
    current_verdicts,
    is_usable,
    point_at,
    unscored_query,
    usable_sql,
)
from review.visibility import COMMAND_LINE, Viewer
from tests.conftest import account

# parse status, violation, category, severity, confidence
Spec = tuple[str, bool | None, str | None, int | None, float | None]
FAILED: Spec = ("failed", None, None, None, None)


def _post(session, name: str, verdicts: list[Spec], status: str = "queued") -> int:
    """A post with ``verdicts`` stored oldest first, each made current as the scoring worker does."""
    post = Post(source="t", external_id=name, text=f"post {name}", status=status, priority=0.0)
    session.add(post)
    session.flush()
    for i, (parse, violation, category, severity, confidence) in enumerate(verdicts):
        verdict = Verdict(post_id=post.id, provider="transformers", model_id="m", prompt_version="v",
                          input_hash=f"{name}{i}", text_hash=name, parse_status=parse, violation=violation,
                          category=category, severity=severity, confidence=confidence, tags=[],
                          parse_notes=[])  # fmt: skip
        session.add(verdict)
        session.flush()
        point_at(session, verdict)
        post.priority = queue_priority(verdict, 0)
    return post.id


def test_every_stored_parse_status_is_known() -> None:
    """PARSE_STATUSES lists what the parser returns and the worker's provider error."""
    assert set(PARSE_STATUSES) == set(get_args(ParseStatus)) | {"error"}
    assert set(USABLE) < set(PARSE_STATUSES)


def test_usable_in_python_and_sql_agree(desk) -> None:
    statuses = [*PARSE_STATUSES, "OK", "", "partial"]  # and values no code writes
    with desk.sessions() as session, session.begin():
        for n, status in enumerate(statuses):
            _post(session, f"s{n}", [(status, False, "none", 0, 0.5)])
    with desk.sessions() as session:
        said = {status: usable for status, usable in session.execute(select(Verdict.parse_status, usable_sql()))}
        kept = set(session.scalars(select(Verdict.parse_status).where(usable_sql())))
    assert said == {s: is_usable(s) for s in statuses}
    assert kept == {"ok", "repaired"}
    assert not is_usable(None)  # no verdict


def test_category_shown(desk) -> None:
    assert category_shown(True, "fraud_spam") == "fraud_spam"
    assert category_shown(False, "fraud_spam") == "none"
    assert category_shown(False, "none") == "none"
    assert category_shown(None, None) == "none"
    assert category_shown(True, None) is None
    cases: list[Spec] = [("ok", v, c, 1, 0.5) for v in (True, False, None) for c in ("fraud_spam", "none", None)]
    cases += [("repaired", True, "sexual", 2, 0.7), ("failed", True, "sexual", 2, 0.7), FAILED]
    cases += [("error", None, None, None, None)]
    with desk.sessions() as session, session.begin():
        ids = [_post(session, f"c{n}", [spec]) for n, spec in enumerate(cases)]
    with desk.sessions() as session:
        shown_sql = category_shown_sql(Verdict.violation, Verdict.category)
        in_sql = {post_id: shown for post_id, shown in session.execute(select(Verdict.post_id, shown_sql))}
        posts = {p.id: p for p in session.scalars(select(Post))}
    for post_id, (parse, violation, category, _, _) in zip(ids, cases, strict=True):
        assert in_sql[post_id] == category_shown(violation, category), (violation, category)
        # the post row's copies for the queue: the category shown and the violation, when usable
        usable = is_usable(parse)
        assert posts[post_id].verdict_category == (category_shown(violation, category) if usable else None)
        assert posts[post_id].verdict_violation == (violation if usable else None)


def test_current_verdict_is_the_newest_for_every_caller(desk) -> None:
    """A post whose newest verdict failed after two usable ones: every caller takes the failed
    one (it hides the older usable verdicts); the other way round, the usable newest counts."""
    spam: Spec = ("ok", True, "fraud_spam", 3, 0.9)
    clean: Spec = ("repaired", False, "none", 0, 0.6)
    with desk.sessions() as session, session.begin():
        hidden = _post(session, "hidden", [spam, clean, FAILED])
        recovered = _post(session, "recovered", [FAILED, spam])
        unscored = _post(session, "unscored", [], status="unscored")
    ids = [hidden, recovered, unscored]
    with desk.sessions() as session:
        newest = {
            pid: session.scalar(select(Verdict.id).where(Verdict.post_id == pid).order_by(Verdict.id.desc()).limit(1))
            for pid in ids
        }
        assert newest[unscored] is None
        # the rule, for one post and for many
        for pid in ids:
            found = current_verdict(session, pid)
            assert (found.id if found is not None else None) == newest[pid]
        assert {pid: v.id for pid, v in current_verdicts(session, ids).items()} == {
            hidden: newest[hidden],
            recovered: newest[recovered],
        }
        assert current_verdicts(session, []) == {}
        # the post row's copy (written by point_at), and the priority scoring gave it
        posts = {p.id: p for p in session.scalars(select(Post).where(Post.id.in_(ids)))}
        assert {pid: posts[pid].verdict_id for pid in ids} == newest
        assert (posts[hidden].verdict_category, posts[hidden].verdict_violation) == (None, None)
        assert (posts[recovered].verdict_category, posts[recovered].verdict_violation) == ("fraud_spam", True)
        assert posts[hidden].priority == FAILURE_PRIORITY == queue_priority(None, 0)
        assert posts[recovered].priority == pytest.approx(3 * 0.9)
        # the browser
        shown = get_posts(session, COMMAND_LINE, ids)
        assert shown[hidden].verdict is not None and shown[hidden].verdict.id == newest[hidden]
        assert not shown[hidden].verdict.usable and shown[recovered].verdict.usable
        assert shown[unscored].verdict is None
        # follow-up questions: the failed verdict is not shown to the model
        assert load_post(session, desk.settings, COMMAND_LINE, hidden).verdict_json is None
        assert '"fraud_spam"' in (load_post(session, desk.settings, COMMAND_LINE, recovered).verdict_json or "")
    # the queue
    moderator = account(desk, "moderator")
    with desk.sessions() as session:
        rows = {r.post_id: r for r in queue_page(session, Viewer(moderator)).rows}
        assert (rows[hidden].verdict_id, rows[hidden].parse_status) == (newest[hidden], "failed")
        failures = queue_page(session, Viewer(moderator), QueueFilter(model_failure=True)).rows
        assert [r.post_id for r in failures] == [hidden]
    # decisions: nothing to confirm, and an overturn to the older verdict's label stays an overturn
    held = claim(desk.sessions, moderator)
    assert held is not None and held.post_id == hidden  # model failures first
    with pytest.raises(ReviewError, match="no usable model verdict"):
        decide(desk.sessions, moderator, hidden, "confirm")
    event = decide(desk.sessions, moderator, hidden, "overturn", label=Label(True, "fraud_spam", 3))
    assert (event.action, event.verdict_id) == ("overturn", newest[hidden])
    # post_label: the verdict on screen was the failed one
    with desk.sessions() as session:
        row = session.get(PostLabel, hidden)
        assert row is not None
        assert (row.verdict_id, row.usable, row.model_violation, row.model_category) == (
            newest[hidden],
            False,
            None,
            None,
        )
        assert session.scalar(select(ReviewEvent.verdict_id).where(ReviewEvent.id == event.id)) == newest[hidden]
    # the recovered post: confirm takes its current (usable) verdict's label
    held = claim(desk.sessions, moderator)
    assert held is not None and held.post_id == recovered
    decide(desk.sessions, moderator, recovered, "confirm")
    with desk.sessions() as session:
        row = session.get(PostLabel, recovered)
        assert row is not None
        assert (row.verdict_id, row.usable, row.human_category, row.model_category) == (
            newest[recovered],
            True,
            "fraud_spam",
            "fraud_spam",
        )


def test_unscored_query_takes_the_first_posts_a_limited_run_scores(desk: Desk) -> None:
    """``score --limit N`` computes signals for the N posts it will score: the first N unscored by id."""
    with desk.sessions() as session, session.begin():
        posts = [Post(source="t", external_id=f"u{i}", text=f"unscored {i}") for i in range(4)]
        session.add_all(posts)
        session.flush()
        ids = [post.id for post in posts]
    with desk.sessions() as session:
        assert session.scalars(unscored_query(2)).all() == ids[:2]
        assert session.scalars(unscored_query()).all() == ids

"""Post status as a projection (review/status.py): the transition table on its own, the event
writer (review/events.py) refusing what the table refuses, and a random walk of real desk
actions (scoring, claims, releases, decisions, second reviews, bulk decisions, undos, a lead's
release, a deactivation's, new content from an ingest --update) after which every post's stored
status equals the table folded over its verdicts and events."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.models import EventAction, Post, PostStatus, ReviewEvent, Verdict
from db.session import writing
from review import events, scoring
from review.auth import release_claims_of
from review.decisions import Label, claim, decide, decide_bulk, force_release, release, undo
from review.errors import ReviewError
from review.events import NewEvent
from review.ingest import StorePolicy, ingest_paths
from review.reports import add_report
from review.status import RESTORED, SCORED, TABLE, Move, StatusRefused, Step, move_of, next_status, replay
from tests.conftest import write_jsonl
from tests.factories import staff

QUEUED, DECIDED, ESCALATED, SECOND = (PostStatus.QUEUED, PostStatus.DECIDED, PostStatus.ESCALATED,
                                      PostStatus.SECOND_REVIEW)  # fmt: skip
WAITING = (QUEUED, ESCALATED, SECOND)


def test_scoring_queues_an_unscored_post_and_only_that() -> None:
    assert next_status(PostStatus.UNSCORED, SCORED) == QUEUED
    for status in (QUEUED, DECIDED, ESCALATED, SECOND):  # the scorer stores no verdict for a scored post
        with pytest.raises(StatusRefused):
            next_status(status, SCORED)


@pytest.mark.parametrize("step", [Step.CLAIM, Step.RELEASE, Step.SKIP])
def test_claims_releases_and_skips_leave_a_waiting_post_where_it_waits(step: Step) -> None:
    """ "In review" is a live claim, not a status."""
    for status in WAITING:
        assert next_status(status, Move(step)) == status
    for status in (PostStatus.UNSCORED, DECIDED):
        with pytest.raises(StatusRefused):
            next_status(status, Move(step))


def test_decisions() -> None:
    for status in WAITING:
        assert next_status(status, Move(Step.DECIDE)) == DECIDED
        assert next_status(status, Move(Step.ESCALATE)) == ESCALATED
    # the draw sends a queued post to its second review, which goes on until enough labels
    assert next_status(QUEUED, Move(Step.TO_SECOND_REVIEW)) == SECOND
    assert next_status(SECOND, Move(Step.TO_SECOND_REVIEW)) == SECOND
    with pytest.raises(StatusRefused):  # a lead's decision on an escalation is never drawn
        next_status(ESCALATED, Move(Step.TO_SECOND_REVIEW))
    for status, step in itertools.product((PostStatus.UNSCORED, DECIDED), (Step.DECIDE, Step.ESCALATE)):
        with pytest.raises(StatusRefused, match="cannot take the step"):  # not waiting: nothing to decide
            next_status(status, Move(step))


def test_undo_restores_what_the_decision_recorded() -> None:
    for status in (DECIDED, *WAITING):
        for before in WAITING:
            assert next_status(status, Move(Step.REOPEN, before)) == before
        assert next_status(status, Move(Step.REOPEN, None)) == QUEUED  # a decision from before status_before
    with pytest.raises(StatusRefused):
        next_status(PostStatus.UNSCORED, Move(Step.REOPEN, QUEUED))


def test_the_table_names_only_statuses() -> None:
    assert {after for after in TABLE.values()} <= {*PostStatus, RESTORED}
    assert {step for _, step in TABLE} == set(Step)  # every step is allowed somewhere
    # only a verdict takes a post out of "unscored"; only new content puts it back
    assert not any(status == PostStatus.UNSCORED for status, step in TABLE if step not in (Step.SCORED, Step.UPDATE))
    assert {after for (_, step), after in TABLE.items() if after == PostStatus.UNSCORED} == {PostStatus.UNSCORED}
    assert {step for (_, step), after in TABLE.items() if after == PostStatus.UNSCORED} == {Step.UPDATE}


def test_new_content_sends_an_undecided_post_back_to_the_scorer_and_no_other() -> None:
    for status in (PostStatus.UNSCORED, QUEUED):
        assert next_status(status, Move(Step.UPDATE)) == PostStatus.UNSCORED
    for status in (DECIDED, ESCALATED, SECOND):  # what a moderator decided on stays
        with pytest.raises(StatusRefused):
            next_status(status, Move(Step.UPDATE))


def test_replay_folds_a_history() -> None:
    history = [SCORED, Move(Step.CLAIM), Move(Step.TO_SECOND_REVIEW), Move(Step.CLAIM), Move(Step.DECIDE)]
    assert replay(history) == DECIDED
    assert replay([*history, Move(Step.REOPEN, SECOND)]) == SECOND
    assert replay([]) == PostStatus.UNSCORED
    with pytest.raises(StatusRefused):
        replay([Move(Step.CLAIM)])  # an unscored post is no work yet


def test_the_writer_refuses_what_the_table_refuses(desk) -> None:
    """A decision event on an unscored post is refused by the writer, and nothing is written."""
    ann = staff(desk)["ann"]
    [post_id] = _unscored(desk, 1)
    with pytest.raises(StatusRefused), writing(desk.sessions) as session:
        events.write(session, NewEvent(post_id, ann.id, EventAction.CONFIRM, datetime.now(UTC)))
    with desk.sessions() as session:
        assert session.scalar(select(func.count(ReviewEvent.id))) == 0
        assert session.scalar(select(Post.status).where(Post.id == post_id)) == PostStatus.UNSCORED


def _unscored(desk, n: int, prefix: str = "s") -> list[int]:
    with desk.sessions() as session, session.begin():
        posts = [Post(source="t", external_id=f"{prefix}{i}", text=f"post {i}", status="unscored") for i in range(n)]
        session.add_all(posts)
        session.flush()
        return [p.id for p in posts]


def _score(desk, rng: random.Random, limit: int) -> None:
    """The scorer's store path: lease a batch, store a verdict per post (some failed)."""
    worker = scoring.worker_name()
    for post_id in scoring.lease_batch(desk.sessions, worker, limit):
        category = rng.choice(["none", "fraud_spam", "hate_harassment", None])
        severity = 0 if category in (None, "none") else rng.randint(1, 3)
        row = Verdict(post_id=post_id, provider="transformers", model_id="m", prompt_version="v",
                      input_hash=f"i{post_id}", parse_status="failed" if category is None else "ok",
                      violation=None if category is None else severity > 0, category=category,
                      severity=None if category is None else severity, confidence=None if category is None else 0.8,
                      tags=[], parse_notes=[])  # fmt: skip
        with writing(desk.sessions) as session:
            assert scoring._store(session, worker, row)


def _replayed(desk) -> dict[int, str]:
    """Every post's status folded by the table over its verdicts and events, oldest first (a
    verdict before an event of the same instant: a post is scored before anyone can act on it)."""
    with desk.sessions() as session:
        posts = list(session.scalars(select(Post.id)))
        verdicts = session.execute(select(Verdict.post_id, Verdict.created_at).order_by(Verdict.id)).all()
        stored = session.scalars(select(ReviewEvent).order_by(ReviewEvent.id)).all()
    by_id = {e.id: e for e in stored}
    history: dict[int, list[tuple[datetime, int, Move]]] = {p: [] for p in posts}
    for post_id, at in verdicts:
        history[post_id].append((at, 0, SCORED))
    for e in stored:
        history[e.post_id].append((e.created_at, 1, move_of(e, by_id.get(e.undoes_id or 0))))
    return {p: replay(m for *_, m in sorted(h, key=lambda x: x[:2])) for p, h in history.items()}


def _statuses(desk) -> dict[int, str]:
    with desk.sessions() as session:
        return {post_id: status for post_id, status in session.execute(select(Post.id, Post.status))}


def _new_content(desk, tmp_path: Path, post_ids: list[int], rng: random.Random) -> None:
    """Ingest --update with new text for some posts (those nobody has decided take it)."""
    with desk.sessions() as session:
        keys = session.execute(select(Post.id, Post.external_id).where(Post.id.in_(post_ids))).all()
    rows = [{"source": "t", "external_id": key, "text": f"edited {rng.random()}"} for _, key in keys]
    path = write_jsonl(tmp_path / "again.jsonl", rows)
    ingest_paths(desk.sessions, [path], desk.settings, policy=StorePolicy(update=True))


def test_stored_status_is_the_table_folded_over_the_history(desk, tmp_path: Path) -> None:
    people = staff(desk)
    moderators = [people[n] for n in ("ann", "bob", "cid")]
    lead = people["lea"]
    rng = random.Random(15)
    posts = _unscored(desk, 24)
    done: list[tuple[object, int]] = []  # (actor, event id) of decisions, for undo
    for step in range(260):
        who = rng.choice(moderators + [lead])
        roll = rng.random()
        try:
            if roll < 0.08:
                _score(desk, rng, rng.randint(1, 4))
            elif roll < 0.16 and done:
                actor, event_id = done.pop()
                undo(desk.sessions, actor, event_id)  # type: ignore[arg-type]
                if rng.random() < 0.5:  # let it go; else it stays claimed by the undoer, for a while
                    release(desk.sessions, actor, _post_of(desk, event_id))  # type: ignore[arg-type]
            elif roll < 0.21:
                decide_bulk(desk.sessions, lead, rng.sample(posts, 3), rng.choice(["confirm", "escalate"]),
                            note="bulk")  # fmt: skip
            elif roll < 0.25:
                held = [p for p in posts if live_holder(desk, p) is not None]
                if held:
                    force_release(desk.sessions, lead, rng.choice(held), reason="gone home")
            elif roll < 0.31:  # reports re-queue a decided post once three arrived after its decision
                add_report(desk.sessions, desk.settings, rng.choice(posts), "user_report", count=rng.randint(1, 2))
            elif roll < 0.35:  # the platform sends some posts again with new content
                _new_content(desk, tmp_path, rng.sample(posts, 3), random.Random(step))
            elif roll < 0.37:
                with writing(desk.sessions) as session:
                    release_claims_of(session, rng.choice(moderators).id, by=lead)
            else:
                got = claim(desk.sessions, who, rng.choice(posts))
                if got is None:
                    continue
                action = rng.choice(["confirm", "overturn", "overturn", "escalate", "skip", "keep"])
                if action == "keep":  # holds the claim; a lead or a deactivation may end it
                    continue
                if action == "skip" and rng.random() < 0.5:
                    release(desk.sessions, who, got.post_id)
                    continue
                category = rng.choice(["none", "fraud_spam", "hate_harassment"])
                label = Label(category != "none", category, 0 if category == "none" else 2)
                try:
                    event = decide(desk.sessions, who, got.post_id, action, share=0.5,
                                   label=label if action == "overturn" else None,
                                   note="unsure" if action == "escalate" else None)  # fmt: skip
                except ReviewError:  # confirm of a failed verdict: skip instead
                    event = decide(desk.sessions, who, got.post_id, "skip")
                done.append((who, event.id))
        except ReviewError:
            continue
        if step % 10 == 0:
            assert _statuses(desk) == _replayed(desk)
    assert _statuses(desk) == _replayed(desk)
    with desk.sessions() as session:  # the walk took every kind of step the table knows
        actions = set(session.scalars(select(ReviewEvent.action).distinct()))
        assert set(EventAction) <= actions
        assert session.scalar(select(ReviewEvent.id).where(ReviewEvent.bulk_id.is_not(None)).limit(1))
        assert session.scalar(select(ReviewEvent.id).where(ReviewEvent.to_second_review).limit(1))
        assert session.scalar(select(ReviewEvent.id).where(ReviewEvent.second_review).limit(1))
        statuses = set(session.scalars(select(Post.status).distinct()))
        assert {QUEUED, DECIDED, ESCALATED, SECOND} <= statuses


def _post_of(desk, event_id: int) -> int:
    with desk.sessions() as session:
        event = session.get(ReviewEvent, event_id)
        assert event is not None
        return event.post_id


def live_holder(desk, post_id: int) -> int | None:
    with desk.sessions() as session:
        post = session.get(Post, post_id)
        assert post is not None
        live = post.lease_expires_at is not None and post.lease_expires_at > datetime.now(UTC)
        return post.claimed_by_id if live else None

"""The post_label projection stays true to the events through real desk actions: after every
step of a random walk of claims, decisions, second reviews, undos, escalations and bulk
decisions, the table equals both a rebuild by the rule (review.labels.label_rows) and a plain
Python reading of the events (an undone decision no longer counts)."""

from __future__ import annotations

import random

from sqlalchemy import Boolean, String, delete, literal, select

from db.models import Post, PostLabel, ReviewEvent
from review import labels
from review.decisions import Label, claim, decide, decide_bulk, undo
from review.errors import ReviewError
from tests.factories import queued_posts_with_verdicts, staff

CATEGORIES = ["none", "fraud_spam", "hate_harassment", "false_advertising"]


def _table(desk) -> dict[int, tuple]:
    with desk.sessions() as session:
        rows = session.scalars(select(PostLabel)).all()
        return {r.post_id: (r.event_id, r.human_category, r.model_category, r.raters, r.decided_by_id) for r in rows}


def _rebuilt(desk) -> dict[int, tuple]:
    with desk.sessions() as session:
        rows = session.execute(labels.label_rows(session.get_bind().dialect.name)).all()
        cols = labels.COLUMNS
        return {
            r[0]: tuple(
                r[cols.index(c)] for c in ("event_id", "human_category", "model_category", "raters", "decided_by_id")
            )  # fmt: skip
            for r in rows
        }


def _from_events(desk) -> dict[int, tuple[int, str]]:
    with desk.sessions() as session:
        settled = set(session.scalars(select(Post.id).where(Post.status.in_(labels.SETTLED))))
        events = session.scalars(select(ReviewEvent).order_by(ReviewEvent.id)).all()
        undone = {e.undoes_id for e in events if e.undoes_id is not None}
        latest: dict[int, tuple[int, str]] = {}
        for e in events:
            if e.action in labels.DECISIONS and e.post_id in settled and e.id not in undone:
                latest[e.post_id] = (e.id, e.label_category if e.label_violation else "none")
        return latest


def test_post_label_follows_every_action(desk) -> None:
    people = staff(desk)
    moderators = [people[n] for n in ("ann", "bob", "cid")]
    lead = people["lea"]
    rng = random.Random(5)
    posts = queued_posts_with_verdicts(desk, [rng.choice(CATEGORIES + [None]) for _ in range(30)])
    done: list[tuple[object, int]] = []  # (actor, event id) of decisions, for undo
    steps = 0
    for _ in range(300):
        who = rng.choice(moderators + [lead])
        roll = rng.random()
        try:
            if roll < 0.1 and done:
                actor, event_id = done.pop()
                undo(desk.sessions, actor, event_id)  # type: ignore[arg-type]
                decide(desk.sessions, actor, _post_of(desk, event_id), "skip")  # type: ignore[arg-type]
            elif roll < 0.15:
                waiting = rng.sample(posts, 4)
                decide_bulk(desk.sessions, lead, waiting, "confirm")
            else:
                got = claim(desk.sessions, who, rng.choice(posts))
                if got is None:
                    continue
                category = rng.choice(CATEGORIES)
                label = Label(category != "none", category, 0 if category == "none" else 2)
                action = rng.choice(["confirm", "overturn", "overturn", "escalate"])
                try:
                    event = decide(desk.sessions, who, got.post_id, action, share=0.5,
                                   label=label if action == "overturn" else None,
                                   note="unsure" if action == "escalate" else None)  # fmt: skip
                except ReviewError:  # e.g. confirm of a failed verdict: release by skipping
                    decide(desk.sessions, who, got.post_id, "skip")
                    continue
                if action != "escalate":
                    done.append((who, event.id))
        except ReviewError:
            continue
        steps += 1
        table = _table(desk)
        assert table == _rebuilt(desk)
        assert {p: (e, c) for p, (e, c, *_) in table.items()} == _from_events(desk)
    assert steps > 80 and len(_table(desk)) > 10
    with desk.sessions() as session:  # the walk took every kind of step
        actions = set(session.scalars(select(ReviewEvent.action).distinct()))
        assert {"confirm", "overturn", "escalate", "reopen"} <= actions
        assert session.scalar(select(ReviewEvent.id).where(ReviewEvent.bulk_id.is_not(None)).limit(1))
    with desk.sessions() as session:  # second reviews happened, and are counted as raters
        assert session.scalar(select(PostLabel.raters).order_by(PostLabel.raters.desc()).limit(1)) >= 2


def _post_of(desk, event_id: int) -> int:
    with desk.sessions() as session:
        event = session.get(ReviewEvent, event_id)
        assert event is not None
        return event.post_id


def test_an_undone_second_review_no_longer_counts(desk) -> None:
    """Undoing the second reviewer's decision puts the post back in second review: its label is
    the first decision's again, and the undone one counts neither as a label nor as a rater."""
    people = staff(desk)
    ann, bob = people["ann"], people["bob"]
    [post_id] = queued_posts_with_verdicts(desk, ["fraud_spam"], prefix="u")
    assert claim(desk.sessions, ann, post_id) is not None
    first = decide(desk.sessions, ann, post_id, "confirm", share=1.0)  # always drawn for a second review
    assert claim(desk.sessions, bob, post_id) is not None
    second = decide(desk.sessions, bob, post_id, "overturn", label=Label(False, "none", 0))
    assert _table(desk)[post_id][:2] == (second.id, "none") and _table(desk)[post_id][3] == 2
    undo(desk.sessions, bob, second.id)
    decide(desk.sessions, bob, post_id, "skip")  # bob lets it go back to the queue of second reviews
    assert _table(desk)[post_id] == _rebuilt(desk)[post_id]
    assert _table(desk)[post_id][:4] == (first.id, "fraud_spam", "fraud_spam", 1)


def test_rebuild_from_the_command_line(desk, monkeypatch, capsys) -> None:
    from review.cli import main

    people = staff(desk)
    [post_id] = queued_posts_with_verdicts(desk, ["none"], prefix="r")
    assert claim(desk.sessions, people["ann"], post_id) is not None
    decide(desk.sessions, people["ann"], post_id, "confirm")
    with desk.sessions() as session, session.begin():  # a row lost, as after loading rows by hand
        session.execute(delete(PostLabel))
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    assert main(["db", "rebuild-labels"]) == 0
    assert "1 settled posts" in capsys.readouterr().out
    assert _table(desk) == _rebuilt(desk) and post_id in _table(desk)


def test_the_human_category_rule_in_python_and_sql(desk) -> None:
    """One rule for the category a human label stands for (post_label's column, the agreement
    numbers' labels): its category when it says violation, ``other`` when it names none, ``none``
    without a violation; the SQL form gives what the Python form gives."""
    cases = {
        (True, "fraud_spam"): "fraud_spam",
        (True, None): "other",
        (False, "fraud_spam"): "none",
        (False, None): "none",
        (None, "fraud_spam"): "none",
    }
    with desk.sessions() as session:
        for (violation, category), expected in cases.items():
            assert labels.human_category(violation, category) == expected
            in_sql = labels.human_category_sql(literal(violation, Boolean()), literal(category, String()))
            assert session.scalar(select(in_sql)) == expected, (violation, category)

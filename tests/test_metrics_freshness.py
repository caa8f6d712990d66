"""review.metrics.freshness: the write mark moves with every decision, verdict and ingest and
stays put on reads; pages/_analytics.cached recounts exactly when it moves (SQLite and Postgres)."""

from __future__ import annotations

from db.models import Post
from pages._analytics import cached
from review.metrics.accuracy import accuracy
from review.metrics.filters import NO_FILTER
from review.metrics.freshness import write_mark
from review.purge import purge
from tests.factories import add_verdict, claim_and_decide, spam_queue, staff


def test_cached_numbers_follow_the_desks_writes(desk, fresh_caches) -> None:
    people = staff(desk)
    lead = people["lea"]
    ids = spam_queue(desk, 3)
    calls: list[int] = []

    def decided(session, actor, flt):
        calls.append(1)
        return accuracy(session, actor, flt).n

    def mark() -> tuple[int, int, int, int]:
        with desk.sessions() as session:
            return write_mark(session, lead)

    before = mark()
    assert cached(decided, desk, lead, NO_FILTER) == 0
    assert cached(decided, desk, lead, NO_FILTER) == 0 and len(calls) == 1  # nothing written: reused
    assert mark() == before

    claim_and_decide(desk, people["ann"], ids[0], "confirm")  # a decision
    assert cached(decided, desk, lead, NO_FILTER) == 1 and len(calls) == 2
    decision_mark = mark()
    assert decision_mark[0] > before[0]

    with desk.sessions() as session, session.begin():  # a verdict (a re-score)
        add_verdict(session, ids[1], "none", 0.7)
    assert mark()[1] > decision_mark[1]
    with desk.sessions() as session, session.begin():  # an ingest
        session.add(Post(source="other", external_id="new", text="new post", status="unscored", priority=0.0))
    assert mark()[2] > decision_mark[2]
    assert cached(decided, desk, lead, NO_FILTER) == 1 and len(calls) == 3
    purge(desk.sessions, people["admin"], desk.settings, [ids[2]], reason="a test")  # an erasure: its audit row
    assert mark()[3] > decision_mark[3]

"""Issue 17, the review floor, in the core (review.workbench) on SQLite and Postgres: Skip defers a
post for ``skip_defer_minutes``, Undo reaches back over the session's last ``UNDO_DEPTH``
decisions, a link (``?post=``) opens its post once, the heartbeat keeps a post being read and
lets an abandoned one go, and what the page says around the post (time in queue, near
duplicates, the standing decision of a post that is back, unless the reader is blind to it)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from review.decisions import Decision, Label, claim, force_release
from review.policy import load_policy
from review.queue import QueueFilter
from review.reports import add_report
from review.workbench import UNDO_DEPTH, Outcome, ReviewSession, ReviewState, filter_words, for_how_long
from tests.factories import queued_posts_with_verdicts, staff
from tests.test_workbench import _twins


def _work(desk, actor, **settings) -> ReviewSession:
    return ReviewSession(desk.sessions, actor, replace(desk.settings, **settings), load_policy(), ReviewState())


def _texts(work: ReviewSession) -> list[str]:
    return [n.text for n in work.state.take_notices()]


def test_skip_defers_the_post_for_the_setting(desk) -> None:
    p = staff(desk)
    first, second = queued_posts_with_verdicts(desk, ["none", "none"])  # the queue's order: the oldest first
    work = _work(desk, p["ann"], skip_defer_minutes=30)
    work.next()
    assert work.held == first and work.decide(first, Decision.SKIP, None) is Outcome.SAVED
    assert work.held == second
    soon, later = datetime.now(UTC) + timedelta(minutes=29), datetime.now(UTC) + timedelta(minutes=31)
    work.next(now=soon)  # still deferred: N gives back the post held and finds nothing else
    assert work.held is None and work.state.nothing_free and work.deferred(soon) == [first]
    # a reload or a new tab (a new, empty state) defers it too: the stored skip counts
    reloaded = _work(desk, p["ann"], skip_defer_minutes=30)
    assert reloaded.deferred(soon) == [first] and reloaded.deferred(later) == []
    reloaded.unskip()  # "Show the posts I skipped again": earlier skips defer nothing
    assert reloaded.deferred(soon) == []
    work.next(now=later)  # the deferral is over: it is offered again
    assert work.held == first and work.deferred(later) == []

    # 0: deferred for the rest of the session, until "Show the posts I skipped again"
    until_asked = _work(desk, p["bob"], skip_defer_minutes=0)
    until_asked.state.hand_over(second)
    until_asked.arrive()
    assert until_asked.decide(second, Decision.SKIP, None) is Outcome.SAVED and until_asked.held is None
    until_asked.next(now=datetime.now(UTC) + timedelta(days=1))
    assert until_asked.held is None
    until_asked.unskip()
    until_asked.next()
    assert until_asked.held == second


def test_undo_reaches_back_over_the_last_decisions(desk) -> None:
    p = staff(desk)
    ids = queued_posts_with_verdicts(desk, ["none"] * (UNDO_DEPTH + 2))
    work = _work(desk, p["ann"], second_review_share=0.0)
    work.next()
    for post_id in ids[: UNDO_DEPTH + 1]:
        assert work.held == post_id and work.decide(post_id, Decision.CONFIRM, None) is Outcome.SAVED
    undoable = work.undoable
    assert [d.post_id for d in undoable] == ids[UNDO_DEPTH:0:-1]  # newest first, at most UNDO_DEPTH
    assert undoable[0].label == f"Undo confirm of post {ids[UNDO_DEPTH]}"

    # U takes back the newest; then an older one, picked from the list (the post held goes back)
    work.undo()
    assert work.held == ids[UNDO_DEPTH] and [d.post_id for d in work.undoable] == ids[UNDO_DEPTH - 1 : 0 : -1]
    older = work.undoable[3]
    work.undo(older.event_id)
    assert work.held == older.post_id and older not in work.undoable
    assert _texts(work)[-1] == f"Undone: your confirm of post {older.post_id}. Decide it again."
    assert claim(desk.sessions, p["bob"], ids[UNDO_DEPTH]) is not None  # given back, free again

    # a decision someone has acted on since cannot be undone: said, dropped, the rest kept
    assert work.decide(older.post_id, Decision.SKIP, None) is Outcome.SAVED
    skipped = work.undoable[0]
    assert skipped.post_id == older.post_id
    work.release()
    assert claim(desk.sessions, p["bob"], older.post_id) is not None
    before = len(work.undoable)
    work.undo()
    assert _texts(work)[-1] == f"post {older.post_id} has changed since that decision; it cannot be undone"
    assert work.held is None and len(work.undoable) == before - 1 and skipped not in work.undoable


def test_a_link_opens_its_post_once(desk) -> None:
    p = staff(desk)
    ids = queued_posts_with_verdicts(desk, ["sexual", "fraud_spam", "none"])
    work = _work(desk, p["ann"], second_review_share=0.0)
    work.arrive(link=ids[2])
    assert work.held == ids[2] and work.state.linked == ids[2]
    assert work.decide(ids[2], Decision.CONFIRM, None) is Outcome.SAVED
    nxt = work.held
    work.arrive(link=ids[2])  # the address still names the decided post until the page rewrites it
    assert work.held == nxt and work.state.linked == nxt
    # another moderator's link to a post held by ann: said why, nothing held
    bob = _work(desk, p["bob"])
    bob.arrive(link=nxt)
    assert bob.held is None
    assert _texts(bob) == [f"Post {nxt} cannot be opened for you: another moderator is reviewing it."]
    bob.arrive(link=ids[2])
    assert _texts(bob) == [f"Post {ids[2]} cannot be opened for you: it is decided, not waiting for you."]
    # N on a post shown read-only takes the next one; the address, not yet rewritten, reopens nothing
    assert bob.state.viewing == ids[2]
    bob.next()
    taken = bob.held
    bob.arrive(link=ids[2])
    assert taken is not None and bob.held == taken and bob.state.viewing is None and _texts(bob) == []
    # a reload (a new, empty state) with the link of the post held: resumed, no second claim
    again = _work(desk, p["ann"])
    again.arrive(link=nxt)
    assert again.held == nxt and _texts(again) == [f"You were reviewing post {nxt}; it is yours again."]


def test_the_heartbeat_keeps_a_post_being_read_and_lets_an_abandoned_one_go(desk) -> None:
    p = staff(desk)
    ids = queued_posts_with_verdicts(desk, ["none", "none"])
    work = _work(desk, p["ann"], reading_max_minutes=30)
    t0 = datetime.now(UTC)
    work.next()
    work.arrive(now=t0)  # the moderator's last action
    assert work.held == ids[0] and work.state.claim is not None
    for minutes in (5, 14, 23, 29):  # beyond the 10-minute lease, still read: renewed each time
        assert work.heartbeat(now=t0 + timedelta(minutes=minutes)) is False
        assert work.state.claim.lease_expires_at == t0 + timedelta(minutes=minutes + 10)
    # past reading_max_minutes without an action: no more renewals; the post goes when its lease ends
    assert work.heartbeat(now=t0 + timedelta(minutes=31)) is False
    assert work.state.claim.lease_expires_at == t0 + timedelta(minutes=39)
    assert claim(desk.sessions, p["bob"], ids[0], now=t0 + timedelta(minutes=38)) is None
    assert work.heartbeat(now=t0 + timedelta(minutes=40)) is True
    assert work.held is None
    assert _texts(work) == [
        f"Post {ids[0]} went back to the queue: no action on it for 40 min. Press N to take a post."
    ]
    assert claim(desk.sessions, p["bob"], ids[0], now=t0 + timedelta(minutes=40)) is not None

    # a lead gives the post back while it is read: the next beat says so at once
    work.state.hand_over(ids[1])
    work.arrive()
    assert work.held == ids[1]
    force_release(desk.sessions, p["lea"], ids[1], reason="shift change")
    assert work.heartbeat(now=datetime.now(UTC) + timedelta(minutes=1)) is True and work.held is None
    assert _texts(work)[-1] == f"Post {ids[1]} is no longer yours: lea gave it back to the queue."


def test_what_the_page_says_around_the_post(desk, tmp_path: Path) -> None:
    p = staff(desk)
    first, twin = _twins(desk, tmp_path)
    ann = _work(desk, p["ann"], second_review_share=0.0)
    ann.state.hand_over(first)
    ann.arrive()
    with desk.sessions() as session:
        around = ann.surroundings(session)
    assert (around.near_duplicates, around.more_duplicates, around.last_decision) == (1, False, None)
    assert datetime.now(UTC) - around.waiting_since < timedelta(minutes=1)  # since it was ingested
    assert ann.decide(first, Decision.CONFIRM, None) is Outcome.SAVED
    ann.release()

    # reports send it back: the next moderator sees the standing decision, and waits count from then
    assert add_report(desk.sessions, desk.settings, first, "user_report", "spam", 3).requeued
    bob = _work(desk, p["bob"], second_review_share=1.0)
    bob.state.hand_over(first)
    bob.arrive()
    with desk.sessions() as session:
        around = bob.surroundings(session)
    last = around.last_decision
    assert last is not None and (last.action, last.label, last.who) == ("confirm", "violence_gore · severity 2", "ann")
    assert around.waiting_since > last.at  # the re-queue

    # bob's overturn goes to a blind second review: cid may not see the decisions before his
    assert bob.decide(first, Decision.OVERTURN, Label(False, "none", 0)) is Outcome.SAVED
    cid = _work(desk, p["cid"])
    cid.state.hand_over(first)
    cid.arrive()
    assert cid.held == first
    with desk.sessions() as session:
        assert cid.sight(session).blind and cid.surroundings(session).last_decision is None


def test_durations_and_filters_in_words() -> None:
    assert [for_how_long(s) for s in (0, 59, 60, 3599, 3600 * 3 + 12 * 60, 86400 * 2 + 3600 * 5)] == [
        "0 s", "59 s", "1 min", "59 min", "3 h 12 min", "2 d 5 h"
    ]  # fmt: skip
    assert filter_words(QueueFilter()) == ""
    flt = QueueFilter(category="fraud_spam", escalated=False, source="weibo", min_age=timedelta(hours=2))
    assert filter_words(flt) == "category fraud_spam, no escalated, source weibo, min age 2 h 0 min"


def test_the_undo_list_does_not_tell_a_blind_reviewer_the_hidden_verdict(desk) -> None:
    """A blind second reviewer's label equal to the hidden verdict is stored as a confirm; the
    undo button, like the notice, says "decision" (issue 17's review)."""
    p = staff(desk)
    post_id = queued_posts_with_verdicts(desk, ["fraud_spam"])[0]
    first = _work(desk, p["ann"], second_review_share=1.0)
    first.state.hand_over(post_id)
    first.arrive()
    assert first.decide(post_id, Decision.CONFIRM, None) is Outcome.SAVED  # drawn for a second review
    blind = _work(desk, p["bob"], second_review_hide_verdict=True)
    blind.state.hand_over(post_id)
    blind.arrive()
    with desk.sessions() as session:
        assert blind.held == post_id and blind.sight(session).blind and blind.sight(session).verdict_hidden
    label = Label(True, "fraud_spam", 1)  # the hidden verdict's own label: stored as a confirm
    assert blind.decide(post_id, Decision.OVERTURN, label) is Outcome.SAVED
    assert [d.label for d in blind.undoable] == [f"Undo decision of post {post_id}"]
    assert f"Post {post_id}: decision saved. Undo with U." in _texts(blind)
    blind.undo()
    assert _texts(blind)[-1] == f"Undone: your decision of post {post_id}. Decide it again."

"""The moderator's working session (review.workbench) without Streamlit, on SQLite and Postgres:
next, decide, undo, skip, resume after a reload, expiry, the Queue page's hand-off, and a blind
second review that shows nothing it must not."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image
from sqlalchemy import update

from db.models import Media, Post, Verdict
from review.decisions import Decision, Label
from review.ingest import ingest_records
from review.policy import load_policy
from review.queue import QueueFilter
from review.visibility import HIDDEN_BLUR
from review.workbench import RENEW_BELOW, Outcome, ReviewSession, ReviewState
from tests.conftest import post_status
from tests.factories import queue_with, queued_posts_with_verdicts, staff


def _work(desk, actor, state: ReviewState | None = None, **settings) -> ReviewSession:
    return ReviewSession(
        desk.sessions, actor, replace(desk.settings, **settings), load_policy(), state or ReviewState()
    )


def _texts(work: ReviewSession) -> list[str]:
    return [n.text for n in work.state.take_notices()]


def test_a_full_session_next_decide_skip_undo(desk) -> None:
    p = staff(desk)
    ids = queued_posts_with_verdicts(desk, ["fraud_spam", "sexual", "none", "hate_harassment"])
    work = _work(desk, p["ann"], second_review_share=0.0)
    work.arrive()
    assert work.held is None and not work.state.nothing_free  # nothing is taken before N
    work.next()
    first = work.held
    assert first is not None
    with desk.sessions() as session:
        post = work.post(session)
        assert post is not None and post.verdict is not None and not post.verdict_hidden
        assert work.waiting(session) == 4

    assert work.decide(first, Decision.CONFIRM, None, "clear case") is Outcome.SAVED
    assert post_status(desk, first) == "decided" and work.held not in (None, first)  # the next one at once
    assert _texts(work) == [f"Post {first}: confirm saved. Undo with U."]

    # an overturn without a label saves nothing and waits for it; with the label it is saved
    second = work.held
    assert second is not None
    assert work.decide(second, Decision.OVERTURN, None) is Outcome.NEEDS_LABEL
    assert work.state.awaiting_label == second and post_status(desk, second) == "queued"
    assert work.decide(second, Decision.OVERTURN, Label(True, "sexual", 3)) is Outcome.SAVED
    assert work.state.awaiting_label is None  # cleared with the next post

    # an escalation without a reason waits for one
    third = work.held
    assert third is not None
    assert work.decide(third, Decision.ESCALATE, None, "") is Outcome.NEEDS_REASON
    assert work.state.reason_missing == third and post_status(desk, third) == "queued"

    # skip: not handed straight back; a decision on a post no longer held does nothing
    assert work.decide(third, Decision.SKIP, None) is Outcome.SAVED
    assert work.deferred() == [third] and work.held not in (None, third)
    assert work.decide(third, Decision.CONFIRM, None) is Outcome.NOT_HELD

    # undo takes back the skip and holds its post again; the post held meanwhile is released
    meanwhile = work.held
    work.undo()
    assert work.held == third and third not in [d.post_id for d in work.undoable]
    assert _texts(work)[-1] == f"Undone: your skip of post {third}. Decide it again."
    with desk.sessions() as session:
        assert session.get(Post, meanwhile).claimed_by_id is None

    # the queue runs dry: skipped posts are left out until unskipped
    assert work.decide(third, Decision.SKIP, None) is Outcome.SAVED
    work.release()
    work.take_next()
    left = [i for i in ids if post_status(desk, i) == "queued" and i != third]
    while work.held is not None:
        assert work.decide(work.held, Decision.SKIP, None) is Outcome.SAVED
    assert work.state.nothing_free
    assert set(work.deferred()) >= {third, *left}
    work.unskip()
    work.next()
    assert work.held in {third, *left}


def test_a_reload_resumes_the_claim_and_the_lease_is_kept_alive(desk) -> None:
    p = staff(desk)
    queued_posts_with_verdicts(desk, ["fraud_spam", "sexual"])
    work = _work(desk, p["ann"])
    work.next()
    held = work.held

    again = _work(desk, p["ann"])  # a reload: a new, empty state
    again.arrive()
    assert again.held == held
    assert _texts(again) == [f"You were reviewing post {held}; it is yours again."]

    # less than RENEW_BELOW seconds left: any arrival renews the lease
    assert again.state.claim is not None
    soon = again.state.claim.lease_expires_at - timedelta(seconds=RENEW_BELOW - 5)
    before = again.state.claim.lease_expires_at
    again.arrive(now=soon)
    assert again.state.claim is not None and again.state.claim.lease_expires_at > before


def test_an_expired_claim_taken_by_another_is_dropped(desk) -> None:
    p = staff(desk)
    queued_posts_with_verdicts(desk, ["fraud_spam"])
    ann, bob = _work(desk, p["ann"]), _work(desk, p["bob"])
    ann.next()
    post_id = ann.held
    assert post_id is not None
    past = datetime.now(UTC) - timedelta(seconds=1)
    with desk.sessions() as session, session.begin():
        session.execute(update(Post).where(Post.id == post_id).values(lease_expires_at=past))
    bob.next()
    assert bob.held == post_id
    # a decision on the lost claim is refused and drops it; so does keeping it alive
    assert ann.decide(post_id, Decision.CONFIRM, None) is Outcome.REFUSED
    assert ann.held is None and "another moderator is reviewing" in _texts(ann)[0]
    assert post_status(desk, post_id) == "queued"
    ann.state.claim = bob.state.claim  # as if the page still showed it, with little time left
    assert ann.state.claim is not None
    ann.arrive(now=ann.state.claim.lease_expires_at - timedelta(seconds=60))
    assert ann.held is None and _texts(ann)


def test_the_queue_hands_a_post_over_and_its_filter_drives_next(desk) -> None:
    p = staff(desk)
    ids = queued_posts_with_verdicts(desk, ["fraud_spam", "none", "sexual", "none"])
    state = ReviewState()
    state.flt = QueueFilter(violation=False)  # what the Queue page sets
    state.hand_over(ids[3])
    work = _work(desk, p["ann"], state)
    work.arrive()
    assert work.held == ids[3] and state.opening is None
    assert work.decide(ids[3], Decision.SKIP, None) is Outcome.SAVED
    assert work.held == ids[1]  # the next post comes from the filtered queue
    # a post not free for this moderator: said, and nothing is held
    bob = _work(desk, p["bob"])
    bob.state.hand_over(ids[1])
    bob.arrive()
    assert bob.held is None
    assert _texts(bob) == [f"Post {ids[1]} cannot be opened for you: another moderator is reviewing it."]


def test_a_blind_second_review_shows_nothing_it_must_not(desk, tmp_path) -> None:
    p = staff(desk)
    ids = queued_posts_with_verdicts(desk, ["violence_gore", "violence_gore"])
    hide = {"second_review_share": 1.0, "second_review_hide_verdict": True}
    ann = _work(desk, p["ann"], **hide)
    ann.state.hand_over(ids[0])
    ann.arrive()
    assert ann.decide(ids[0], Decision.CONFIRM, None, "ann's reasons") is Outcome.SAVED
    assert post_status(desk, ids[0]) == "second_review"
    ann.release()

    bob = _work(desk, p["bob"], **hide)
    bob.state.hand_over(ids[0])
    bob.arrive()
    assert bob.held == ids[0]
    with desk.sessions() as session:
        sight = bob.sight(session)
        post = bob.post(session)
        similar, _ = bob.similar(session, 20)
        context = bob.conversation(session)
    assert sight.blind and sight.verdict_hidden
    assert post is not None and post.verdict is None and post.verdict_hidden
    assert all(r.verdict is None and r.verdict_hidden for r in similar)
    assert context.verdict_json is None
    assert bob.decide(ids[0], Decision.OVERTURN, Label(True, "violence_gore", 2)) is Outcome.SAVED
    assert _texts(bob) == [f"Post {ids[0]}: decision saved. Undo with U."]  # not "confirm saved"
    bob.release()  # the next post it took

    # without hide_verdict, the reviewer is blind to the earlier decision only
    lea = _work(desk, p["lea"], second_review_share=1.0)
    lea.state.hand_over(ids[1])
    lea.arrive()
    assert lea.decide(ids[1], Decision.CONFIRM, None) is Outcome.SAVED
    lea.release()
    cid = _work(desk, p["cid"], second_review_share=1.0)
    cid.state.hand_over(ids[1])
    cid.arrive()
    with desk.sessions() as session:
        sight = cid.sight(session)
        post = cid.post(session)
        context = cid.conversation(session)
    assert sight.blind and not sight.verdict_hidden
    assert post is not None and post.verdict is not None and context.verdict_json is not None


def _twins(desk, tmp_path: Path) -> list[int]:
    """Two queued posts with the same image (one near-duplicate cluster) and violence_gore verdicts
    (a category whose images blur)."""
    Image.new("RGB", (64, 48), (20, 90, 160)).save(tmp_path / "twin.png")
    records = [{"external_id": f"twin{i}", "text": f"twin {i}", "images": ["twin.png"]} for i in range(2)]
    ids = ingest_records(desk.sessions, records, desk.settings, base_dir=tmp_path).post_ids
    with desk.sessions() as session, session.begin():
        session.execute(update(Media).values(dup_cluster=1))
        for i, post_id in enumerate(ids):
            verdict = Verdict(
                post_id=post_id, provider="transformers", model_id="m", prompt_version="p@1", input_hash=f"h{i}",
                text_hash=f"t{i}", parse_status="ok", violation=True, category="violence_gore", severity=2,
                confidence=0.9, tags=[], parse_notes=[],
            )  # fmt: skip
            queue_with(session, verdict)  # priority 2 × 0.9
    return ids


def test_near_duplicates_do_not_tell_a_hidden_verdict(desk, tmp_path: Path) -> None:
    p = staff(desk)
    first, twin = _twins(desk, tmp_path)
    hide = {"second_review_share": 1.0, "second_review_hide_verdict": True}
    ann = _work(desk, p["ann"], **hide)
    ann.state.hand_over(first)
    ann.arrive()
    with desk.sessions() as session:
        rows, more = ann.similar(session, 20)
    assert [r.id for r in rows] == [twin] and not more
    assert rows[0].verdict is not None and rows[0].media[0].blur == "category violence_gore"  # nothing hidden yet
    assert ann.decide(first, Decision.CONFIRM, None) is Outcome.SAVED
    ann.release()

    bob = _work(desk, p["bob"], **hide)
    bob.state.hand_over(first)
    bob.arrive()
    with desk.sessions() as session:
        rows, _ = bob.similar(session, 20)
    # the twin waits as usual, but its verdict would tell the hidden one
    assert [(r.id, r.status, r.verdict, r.verdict_hidden) for r in rows] == [(twin, "queued", None, True)]
    assert rows[0].media[0].blur == HIDDEN_BLUR  # blurred, without naming the category

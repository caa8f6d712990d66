"""The blind-review visibility rule in its home (review.visibility), and every core function that
hands a post to a person applying it: the browser's listing and lookup (review.browse), the
follow-up conversation (review.followup) and the history (review.decisions), for the blind
second reviewer, another moderator, the first decider, a lead, and the command line."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from db.models import PostStatus, Verdict
from review.auth import Actor
from review.browse import PostFilter, get_posts, list_posts
from review.decisions import claim, decide, history, release
from review.followup import load_post
from review.ingest import ingest_records
from review.queue import QueueFilter, QueueRow, queue_page
from review.visibility import COMMAND_LINE, HIDDEN_BLUR, Sight, Viewer, blind_for, sight, sights
from tests.factories import queue_with, staff

MOD = Actor(1, "mod", "moderator")
LEAD = Actor(2, "lead", "lead")
SECOND = PostStatus.SECOND_REVIEW


@pytest.mark.parametrize(
    ("actor", "status", "holder", "rated", "reviewing", "expected"),
    [
        (MOD, "queued", MOD.id, False, True, Sight()),  # not in second review: everything
        (MOD, SECOND, MOD.id, False, True, Sight(blind=True, verdict_hidden=True)),  # the blind reviewer
        (MOD, SECOND, None, False, False, Sight(blind=True, verdict_hidden=True)),  # a moderator, listing
        (MOD, SECOND, None, True, False, Sight(blind=False, verdict_hidden=True)),  # the first decider, listing
        (LEAD, SECOND, None, False, False, Sight()),  # a lead sees it all in listings
        (
            LEAD,
            SECOND,
            LEAD.id,
            False,
            False,
            Sight(blind=True, verdict_hidden=False),
        ),  # …of the post they review
        (
            LEAD,
            SECOND,
            LEAD.id,
            False,
            True,
            Sight(blind=True, verdict_hidden=True),
        ),  # but not on the review desk
        (LEAD, SECOND, LEAD.id, True, True, Sight()),  # a lead who decided it already
    ],
)
def test_the_rule(actor: Actor, status: str, holder: int | None, rated: bool, reviewing: bool, expected: Sight) -> None:
    assert sight(Viewer(actor, hide_verdict=True), status, holder, rated, reviewing=reviewing) == expected
    # without second_review_hide_verdict, the verdict is never hidden; the earlier decisions still are
    shown = sight(Viewer(actor, hide_verdict=False), status, holder, rated, reviewing=reviewing)
    assert shown == replace(expected, verdict_hidden=False)
    assert sight(COMMAND_LINE, status, holder, rated, reviewing=reviewing) == Sight()


def _post(desk, tmp_path: Path) -> int:
    """A queued post with an image and a violence_gore verdict (a category whose images blur)."""
    Image.new("RGB", (64, 48), (200, 30, 30)).save(tmp_path / "v.png")
    record = {"external_id": "v", "text": "a post", "images": ["v.png"]}
    [post_id] = ingest_records(desk.sessions, [record], desk.settings, base_dir=tmp_path).post_ids
    with desk.sessions() as session, session.begin():
        verdict = Verdict(
            post_id=post_id, provider="transformers", model_id="m", prompt_version="p@1", input_hash="h",
            text_hash="t", parse_status="ok", violation=True, category="violence_gore", severity=2,
            confidence=0.9, tags=[], parse_notes=[],
        )  # fmt: skip
        queue_with(session, verdict)  # priority 2 × 0.9
    return post_id


def test_every_reader_applies_the_rule(desk, tmp_path: Path) -> None:
    p = staff(desk)
    ann, bob, cid, lea = p["ann"], p["bob"], p["cid"], p["lea"]
    post_id = _post(desk, tmp_path)
    assert claim(desk.sessions, ann, post_id) is not None
    decide(desk.sessions, ann, post_id, "confirm", note="ann's reasons", share=1.0)
    assert claim(desk.sessions, bob, post_id) is not None  # bob is the blind second reviewer
    settings = replace(desk.settings, second_review_hide_verdict=True)

    def seen(actor: Actor, *, reviewing: bool = False) -> dict[str, object]:
        viewer = Viewer.of(actor, settings)
        with desk.sessions() as session:
            listed = list_posts(session, viewer, PostFilter()).rows[0]
            got = get_posts(session, viewer, [post_id], reviewing=reviewing)[post_id]
            context = load_post(session, settings, viewer, post_id, reviewing=reviewing)
            first = history(session, actor, post_id)[1]
        if not reviewing:  # the listing and the lookup agree
            assert (listed.verdict, listed.verdict_hidden, listed.media) == (got.verdict, got.verdict_hidden, got.media)
        return {
            "verdict": got.verdict is not None,
            "hidden": got.verdict_hidden,
            "blur": got.media[0].blur,
            "model is shown it": context.verdict_json is not None,
            "first label": first.label,
            "first note": first.note,
        }

    hidden = {"verdict": False, "hidden": True, "blur": HIDDEN_BLUR, "model is shown it": False}
    shown = {"verdict": True, "hidden": False, "blur": "category violence_gore", "model is shown it": True}
    blind = {"first label": None, "first note": None}
    told = {"first label": "violence_gore · severity 2", "first note": "ann's reasons"}
    assert seen(bob) == seen(bob, reviewing=True) == hidden | blind  # the blind reviewer
    assert seen(cid) == hidden | blind  # another moderator: may become its reviewer
    assert seen(ann) == hidden | told  # the first decider: its own decision, but no verdict in listings
    assert seen(lea) == shown | told  # a lead who is not the reviewer sees it all

    def queued(actor: Actor) -> QueueRow:  # the post's row on the Queue page's list of second reviews
        with desk.sessions() as session:
            rows = queue_page(session, Viewer.of(actor, settings), QueueFilter(second_review=True)).rows
        return next(r for r in rows if r.post_id == post_id)

    row = queued(cid)  # the queue follows the listing rule: no verdict field comes with the row
    assert row.verdict_hidden and (row.verdict_id, row.category, row.violation, row.confidence) == (None,) * 4
    assert not queued(lea).verdict_hidden and queued(lea).category == "violence_gore"

    # a lead who takes the second review: blind on the review desk, the listing rule unchanged
    release(desk.sessions, bob, post_id)
    assert claim(desk.sessions, lea, post_id) is not None
    assert seen(lea) == shown | blind
    assert seen(lea, reviewing=True) == hidden | blind

    # without second_review_hide_verdict only the earlier decisions are hidden
    settings = desk.settings
    assert not settings.second_review_hide_verdict
    assert seen(cid) == shown | blind
    assert not queued(cid).verdict_hidden and queued(cid).category == "violence_gore"

    # the command line is no one's blind reviewer
    with desk.sessions() as session:
        assert get_posts(session, COMMAND_LINE, [post_id])[post_id].verdict is not None
        assert load_post(session, settings, COMMAND_LINE, post_id).verdict_json is not None
        assert sights(session, COMMAND_LINE, [post_id]) == {post_id: Sight()}
        assert blind_for(session, cid, post_id) and not blind_for(session, ann, post_id)

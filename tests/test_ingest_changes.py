"""Records that do not match what is there (issue 19): an image file that is missing
(``--missing-images reject|skip``), and a post ingested again with other content (reported;
``--update`` replaces an undecided post's content as an ``update`` event in its history, and a
decided, escalated, claimed or erased post keeps what it has). Every input is generated here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from db import schema
from db.models import EventAction, Media, Post, PostStatus, ReplacedMedia, Verdict
from db.session import make_engine, writing
from review import scoring
from review.auth import OPERATOR
from review.browse import get_posts
from review.cli import main
from review.config import Settings
from review.decisions import claim, decide, decide_bulk, history
from review.desk import Desk, open_desk
from review.errors import IngestError
from review.inference.baseline import BaselineProvider
from review.ingest import StorePolicy
from review.ingest.records import MISSING_IMAGES_KEY
from review.ingest.store import Ingestor
from review.purge import purge
from review.reports import add_report
from review.scoring import Scorer
from review.verdicts import current_verdict
from review.visibility import Viewer
from tests.conftest import (
    audit_rows,
    ingest_files,
    make_image,
    post_status,
    rejections,
    review_events,
    row_count,
    stored_posts,
    write_jsonl,
)
from tests.factories import staff

SKIP = StorePolicy(missing_images="skip")
UPDATE = StorePolicy(update=True)


# --------------------------------------------------------------------------------------------
# Missing images


def _three_images(folder: Path) -> Path:
    make_image(folder / "a.jpg", 1)
    make_image(folder / "c.jpg", 3)
    return write_jsonl(
        folder / "posts.jsonl",
        [
            {"external_id": "p1", "text": "a, b and c", "images": ["a.jpg", "b.jpg", "c.jpg"]},  # b.jpg is not there
            {"external_id": "p2", "text": "whole", "images": ["a.jpg"]},
            {"external_id": "p3", "text": "", "images": ["gone.jpg"]},  # nothing left to review
            {"external_id": "p4", "text": "only text is left", "images": ["gone.jpg", "gone2.jpg"]},
        ],
    )


def test_a_missing_image_rejects_the_record_by_default_and_says_how_to_keep_it(desk: Desk, tmp_path: Path) -> None:
    report = ingest_files(desk, _three_images(tmp_path))
    assert report.added == 1
    why = rejections(report)
    assert set(why) == {"posts.jsonl:1", "posts.jsonl:3", "posts.jsonl:4"}
    assert why["posts.jsonl:1"].startswith("image 'b.jpg': file not found")
    assert "--missing-images skip" in why["posts.jsonl:1"]


def test_skip_stores_the_post_with_the_images_there_are_and_names_the_missing(desk: Desk, tmp_path: Path) -> None:
    report = ingest_files(desk, _three_images(tmp_path), policy=SKIP)
    assert (report.added, rejections(report)) == (
        3,
        {"posts.jsonl:3": "none of its images was found and it has no text: there is nothing to review"},
    )
    posts = stored_posts(desk)
    partial = posts["p1"]
    assert [link.original_name for link in partial.media_links] == ["a.jpg", "c.jpg"]  # in order, b left out
    assert [link.position for link in partial.media_links] == [0, 1]
    assert partial.meta == {MISSING_IMAGES_KEY: ["b.jpg"]}
    assert MISSING_IMAGES_KEY not in posts["p2"].meta
    assert (posts["p4"].media_links, posts["p4"].meta) == ([], {MISSING_IMAGES_KEY: ["gone.jpg", "gone2.jpg"]})
    # one warning line per reason, the names as its values
    (group,) = report.grouped_warnings()
    assert group.locations == ["posts.jsonl:1", "posts.jsonl:4", "posts.jsonl:4"]
    assert group.values == ["b.jpg", "gone.jpg", "gone2.jpg"]
    # what the Review and Posts pages read
    with desk.sessions() as session:
        (row,) = get_posts(session, Viewer(staff(desk)["ann"]), [partial.id]).values()
    assert row.missing_images == ["b.jpg"] and len(row.media) == 2


def test_skip_still_rejects_an_image_that_is_there_but_bad(desk: Desk, tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    path = write_jsonl(tmp_path / "p.jsonl", [{"external_id": "x", "text": "t", "images": ["broken.jpg", "nope.jpg"]}])
    report = ingest_files(desk, path, policy=SKIP)
    assert report.added == 0 and rejections(report)["p.jsonl:1"].startswith("image 'broken.jpg':")


def test_the_command_line_takes_missing_images_skip(cli: Desk, tmp_path: Path, capsys) -> None:
    path = _three_images(tmp_path)
    assert main(["ingest", "--quiet", "--missing-images", "skip", str(path)]) == 1  # p3 is still refused
    out, err = capsys.readouterr()
    assert out.strip() == "3 added, 0 already present, 1 rejected"
    assert "image not found; the post is stored without it (--missing-images skip)" in err
    with pytest.raises(SystemExit):  # argparse's refusal
        main(["ingest", "--missing-images", "maybe", str(path)])
    with pytest.raises(IngestError, match="name one of reject, skip"):
        StorePolicy(missing_images="ignore")


# --------------------------------------------------------------------------------------------
# Ingested again with other content


def _posts(folder: Path, **text: str) -> Path:
    return write_jsonl(folder / "posts.jsonl", [{"external_id": k, "text": v} for k, v in text.items()])


def _verdicts(desk: Desk) -> None:
    """Score every unscored post with the offline rules, as a worker does."""
    Scorer(desk.sessions, desk.settings, BaselineProvider()).run()


def test_a_changed_record_is_reported_and_kept_without_update(cli: Desk, tmp_path: Path, capsys) -> None:
    first = tmp_path / "v1"
    make_image(first / "a.jpg", 1)
    write_jsonl(first / "posts.jsonl", [
        {"external_id": "same", "text": "unchanged", "images": ["a.jpg"], "created_at": "2024-05-01T10:00:00Z"},
        {"external_id": "edited", "text": "old words", "author": "ann"},
        {"external_id": "repic", "text": "look", "images": ["a.jpg"]},
    ])  # fmt: skip
    assert main(["ingest", "--quiet", str(first / "posts.jsonl")]) == 0
    capsys.readouterr()
    before = {k: (p.text, p.author, [m.media.sha256 for m in p.media_links]) for k, p in stored_posts(cli).items()}

    second = tmp_path / "v2"
    make_image(second / "a.jpg", 1)  # the same bytes under another folder: not a change
    make_image(second / "b.jpg", 2)
    write_jsonl(second / "posts.jsonl", [
        {"external_id": "same", "text": "unchanged", "images": ["a.jpg"], "created_at": "2024-05-01T12:00:00+02:00"},
        {"external_id": "edited", "text": "new words", "author": "ann"},
        {"external_id": "repic", "text": "look", "images": ["b.jpg"]},
    ])  # fmt: skip
    assert main(["ingest", "--quiet", str(second / "posts.jsonl")]) == 0
    out, err = capsys.readouterr()
    assert (
        out.strip() == "0 added, 3 already present (2 of them with other content, kept: see the warnings), 0 rejected"
    )
    assert "2 records (posts.jsonl:2, posts.jsonl:3): differs from the stored post; kept the stored content" in err
    assert "(values 'text', 'images' …)" in err or "(values 'text', 'images')" in err
    after = {k: (p.text, p.author, [m.media.sha256 for m in p.media_links]) for k, p in stored_posts(cli).items()}
    assert after == before
    assert review_events(cli, EventAction.UPDATE) == []


def test_update_replaces_undecided_posts_and_keeps_decided_ones(desk: Desk, tmp_path: Path) -> None:
    people = staff(desk)
    ann, lea = people["ann"], people["lea"]
    make_image(tmp_path / "a.jpg", 1)
    make_image(tmp_path / "b.png", 2, fmt="PNG")
    first = write_jsonl(tmp_path / "v1.jsonl", [
        {"external_id": "unscored", "text": "one", "images": ["a.jpg"]},
        {"external_id": "queued", "text": "two", "author": "x", "created_at": "2024-01-01T00:00:00Z"},
        {"external_id": "decided", "text": "three"},
        {"external_id": "escalated", "text": "four"},
        {"external_id": "claimed", "text": "five"},
    ])  # fmt: skip
    ingest_files(desk, first)
    ids = {k: p.id for k, p in stored_posts(desk).items()}
    with writing(desk.sessions) as session:  # "unscored" stays unscored: its worker's lease is taken away
        session.execute(update(Post).where(Post.id != ids["unscored"]).values(status=PostStatus.UNSCORED))
    worker = scoring.worker_name()
    _verdicts_except(desk, ids["unscored"])
    leased = scoring.lease_batch(desk.sessions, worker, 10)
    assert leased == [ids["unscored"]]  # a worker is scoring it when the update comes
    for key, action in (("decided", "confirm"), ("escalated", "escalate")):
        assert claim(desk.sessions, ann, ids[key]) is not None
        decide(desk.sessions, ann, ids[key], action, note="why" if action == "escalate" else None)
    assert claim(desk.sessions, ann, ids["claimed"]) is not None  # being reviewed now
    old_verdict = _current_verdict(desk, ids["queued"])

    second = write_jsonl(tmp_path / "v2.jsonl", [
        {"external_id": "unscored", "text": "one", "images": ["b.png", "a.jpg"]},
        {"external_id": "queued", "text": "two, edited", "author": "y", "created_at": "2024-01-02T00:00:00Z"},
        {"external_id": "decided", "text": "three, edited"},
        {"external_id": "escalated", "text": "four, edited"},
        {"external_id": "claimed", "text": "five, edited"},
    ])  # fmt: skip
    report = ingest_files(desk, second, policy=UPDATE, actor=lea)
    assert (report.added, report.updated, report.already_present, report.differing) == (0, 2, 3, 5)
    assert sorted(report.updated_ids) == sorted([ids["unscored"], ids["queued"]])
    assert report.summary() == (
        "0 added, 2 updated, 3 already present (3 of them with other content, kept: see the warnings), 0 rejected"
    )
    warned = {group.reason: group.locations for group in report.grouped_warnings()}
    assert warned == {
        "differs from the stored post; the stored post is decided: its decision stands on what the moderator saw":
            ["v2.jsonl:3"],
        "differs from the stored post; the stored post is escalated: its decision stands on what the moderator saw":
            ["v2.jsonl:4"],
        "differs from the stored post; a moderator is reviewing the stored post now "
        "(ingest again with --update once it is released)": ["v2.jsonl:5"],
    }  # fmt: skip

    posts = stored_posts(desk)
    assert [m.original_name for m in posts["unscored"].media_links] == ["b.png", "a.jpg"]
    queued = posts["queued"]
    assert (queued.text, queued.author, queued.created_at) == ("two, edited", "y", datetime(2024, 1, 2, tzinfo=UTC))
    assert queued.status == PostStatus.UNSCORED and queued.verdict_id is None  # scored again, on the new content
    assert (posts["decided"].text, posts["decided"].status) == ("three", PostStatus.DECIDED)
    assert (posts["escalated"].text, posts["claimed"].text) == ("four", "five")

    # the history: one update event each, by the lead who ran it, saying what it replaced
    updates = {e.post_id: e for e in review_events(desk, EventAction.UPDATE)}
    assert set(updates) == {ids["unscored"], ids["queued"]}
    note = updates[ids["queued"]].note
    assert updates[ids["queued"]].user_id == lea.id
    assert note.startswith("content replaced by ingest from v2.jsonl:2 (text, author, created_at changed); before: ")
    assert "text: 'two'" in note and "author: 'x'" in note and "created_at: 2024-01-01T00:00:00+00:00" in note
    assert "images: a.jpg (" in updates[ids["unscored"]].note
    with desk.sessions() as session:  # a moderator reads the note: it is the desk's record, not a person's
        (entry,) = [e for e in history(session, ann, ids["queued"]) if e.action == EventAction.UPDATE]
        assert entry.note == note and not entry.note_hidden

    # the worker that was scoring the old content stores nothing; the next run scores the new
    row = Verdict(post_id=ids["unscored"], provider="p", model_id="m", prompt_version="v", input_hash="old",
                  parse_status="ok", violation=False, category="none", severity=0, confidence=0.9, tags=[],
                  parse_notes=[])  # fmt: skip
    with writing(desk.sessions) as session:
        assert not scoring._store(session, worker, row)
    _verdicts(desk)
    assert post_status(desk, ids["queued"]) == PostStatus.QUEUED
    assert _current_verdict(desk, ids["queued"]) not in (None, old_verdict)

    # once the claim is over, a second run updates that one too, and nothing else changes
    again = ingest_files(desk, second, policy=UPDATE)
    assert (again.updated, again.differing) == (0, 3)
    with writing(desk.sessions) as session:
        session.execute(update(Post).where(Post.id == ids["claimed"]).values(
            lease_expires_at=datetime.now(UTC) - timedelta(seconds=1)))  # fmt: skip
    last = ingest_files(desk, second, policy=UPDATE)
    assert (last.updated, last.updated_ids, last.differing) == (1, [ids["claimed"]], 3)
    assert stored_posts(desk)["claimed"].claimed_by_id is None


def test_identical_content_is_no_change_and_unreadable_images_are_not_compared(desk: Desk, tmp_path: Path) -> None:
    make_image(tmp_path / "a.jpg", 1)
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"external_id": "k", "text": "t", "images": ["a.jpg"], "created_at": "Mon Oct 29 22:34:01 +0000 2012"},
        {"external_id": "m", "text": "u", "images": ["a.jpg"]},
    ])  # fmt: skip
    ingest_files(desk, path)
    same = ingest_files(desk, path, policy=UPDATE)
    assert (same.already_present, same.differing, same.warnings) == (2, 0, [])

    (tmp_path / "a.jpg").unlink()  # the source images deleted after the first ingest
    write_jsonl(path, [
        {"external_id": "k", "text": "t", "images": ["a.jpg"], "created_at": "Mon Oct 29 22:34:01 +0000 2012"},
        {"external_id": "m", "text": "u, edited", "images": ["a.jpg"]},
    ])  # fmt: skip
    report = ingest_files(desk, path, policy=UPDATE)
    assert (report.already_present, report.updated, report.differing) == (2, 0, 1)
    reasons = {group.reason for group in report.grouped_warnings()}
    assert reasons == {
        "images not compared with the stored post",
        "differs from the stored post; not updated, as its images cannot all be read",
    }
    assert stored_posts(desk)["m"].text == "u"


def test_an_erased_post_is_never_restored(desk: Desk, tmp_path: Path) -> None:
    path = _posts(tmp_path, gone="personal data")
    ingest_files(desk, path)
    with writing(desk.sessions) as session:  # what review/purge.py leaves of an erased post
        session.execute(update(Post).values(text="", purged_at=datetime.now(UTC)))
    report = ingest_files(desk, path, policy=UPDATE)
    assert (report.updated, report.differing) == (0, 1)
    assert "an erased post is never restored" in report.warnings[0]
    assert stored_posts(desk)["gone"].text == ""


def test_the_command_line_updates_and_the_audit_row_says_so(cli: Desk, tmp_path: Path, capsys) -> None:
    ingest_files(cli, _posts(tmp_path, a="first", b="same"))
    path = _posts(tmp_path, a="second", b="same")
    assert main(["ingest", "--quiet", "--update", str(path)]) == 0
    assert capsys.readouterr().out.strip() == "0 added, 1 updated, 1 already present, 0 rejected"
    (event,) = review_events(cli, EventAction.UPDATE)
    assert event.user_id is None  # the command line
    assert stored_posts(cli)["a"].text == "second"
    last = audit_rows(cli, "ingest")[-1]
    assert (last.details["updated"], last.details["differing"], last.details["update"]) == (1, 1, True)


def _verdicts_except(desk: Desk, post_id: int) -> None:
    with writing(desk.sessions) as session:
        session.execute(update(Post).where(Post.id == post_id).values(score_lease_owner="elsewhere",
                        score_lease_expires_at=datetime.now(UTC) + timedelta(minutes=5)))  # fmt: skip
    _verdicts(desk)
    with writing(desk.sessions) as session:
        session.execute(update(Post).where(Post.id == post_id).values(score_lease_owner=None,
                        score_lease_expires_at=None))  # fmt: skip


def _current_verdict(desk: Desk, post_id: int) -> int | None:
    with desk.sessions() as session:
        return session.scalar(select(Post.verdict_id).where(Post.id == post_id))


def test_with_skip_a_still_missing_image_is_no_change_and_a_found_one_is(desk: Desk, tmp_path: Path) -> None:
    both = StorePolicy(missing_images="skip", update=True)
    path = _three_images(tmp_path)
    ingest_files(desk, path, policy=SKIP)
    again = ingest_files(desk, path, policy=both)
    assert (again.already_present, again.differing, again.warnings) == (3, 0, [])  # missing the same way

    make_image(tmp_path / "b.jpg", 2)  # the missing image turns up
    found = ingest_files(desk, path, policy=both)
    assert (found.updated, found.differing) == (1, 1)
    p1 = stored_posts(desk)["p1"]
    assert [m.original_name for m in p1.media_links] == ["a.jpg", "b.jpg", "c.jpg"]
    assert MISSING_IMAGES_KEY not in p1.meta
    (event,) = review_events(desk, EventAction.UPDATE)
    assert event.note.endswith("; not found then: b.jpg") and "(images changed)" in event.note

    edited = write_jsonl(tmp_path / "p2.jsonl", [{"external_id": "p2", "text": "whole?", "images": ["a.jpg", "z.jpg"]}])
    again = ingest_files(desk, edited, policy=both)  # an update stored without an image says so too
    assert again.updated == 1 and [g.values for g in again.grouped_warnings()] == [["z.jpg"]]
    assert stored_posts(desk)["p2"].meta == {MISSING_IMAGES_KEY: ["z.jpg"]}


def test_a_decided_post_that_reports_sent_back_keeps_what_its_moderator_saw(desk: Desk, tmp_path: Path) -> None:
    people = staff(desk)
    ann = people["ann"]
    path = _posts(tmp_path, p="as decided")
    ingest_files(desk, path)
    _verdicts(desk)
    (post_id,) = [p.id for p in stored_posts(desk).values()]
    assert claim(desk.sessions, ann, post_id) is not None
    decide(desk.sessions, ann, post_id, "confirm")
    add_report(desk.sessions, desk.settings, post_id, "user_report", count=desk.settings.requeue_after_reports)
    assert post_status(desk, post_id) == PostStatus.QUEUED  # waiting again, its decision standing

    report = ingest_files(desk, _posts(tmp_path, p="changed since"), policy=UPDATE)
    assert (report.updated, report.kept) == (0, 1)
    assert "decided before reports sent it back" in report.warnings[0]
    assert stored_posts(desk)["p"].text == "as decided"
    with desk.sessions() as session:  # the requeue's note is the desk's record: a moderator reads it too
        (requeue,) = [e for e in history(session, people["bob"], post_id) if e.action == EventAction.REQUEUE]
        assert requeue.note and not requeue.note_hidden


def test_the_old_verdict_stops_being_current_and_erasure_follows_replaced_images(desk: Desk, tmp_path: Path) -> None:
    make_image(tmp_path / "a.jpg", 1)
    make_image(tmp_path / "b.jpg", 2)
    ingest_files(
        desk, write_jsonl(tmp_path / "p.jsonl", [{"external_id": "x", "text": "cheap pills", "images": ["a.jpg"]}])
    )
    _verdicts(desk)
    post_id = stored_posts(desk)["x"].id
    viewer = Viewer(staff(desk)["lea"])
    with desk.sessions() as session:
        old = get_posts(session, viewer, [post_id])[post_id].verdict
    assert old is not None
    path = write_jsonl(tmp_path / "p.jsonl", [{"external_id": "x", "text": "hello", "images": ["b.jpg"]}])
    assert ingest_files(desk, path, policy=UPDATE).updated == 1
    with desk.sessions() as session:  # the verdict on "cheap pills" is not shown beside "hello"
        assert get_posts(session, viewer, [post_id])[post_id].verdict is None
        assert current_verdict(session, post_id) is None
        (event,) = [e for e in review_events(desk, EventAction.UPDATE)]
        assert event.verdict_id == session.scalar(select(Verdict.id).where(Verdict.post_id == post_id))
        assert [r.original_name for r in session.scalars(select(ReplacedMedia))] == ["a.jpg"]
    _verdicts(desk)
    with desk.sessions() as session:
        new = get_posts(session, viewer, [post_id])[post_id].verdict
    assert new is not None and new.id != old.id

    erased = purge(desk.sessions, OPERATOR, desk.settings, [post_id], reason="user asked")
    assert erased.counts["media"] == 2  # the image it shows and the one an update replaced
    assert (row_count(desk, Media), row_count(desk, ReplacedMedia)) == (0, 0)


def test_a_post_claimed_after_the_comparison_is_kept_and_gains_no_media(
    desk: Desk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann = staff(desk)["ann"]
    make_image(tmp_path / "a.jpg", 1)
    make_image(tmp_path / "b.jpg", 2)
    ingest_files(desk, write_jsonl(tmp_path / "p.jsonl", [{"external_id": "x", "text": "t", "images": ["a.jpg"]}]))
    _verdicts(desk)
    post_id = stored_posts(desk)["x"].id
    update_run = Ingestor._update

    def claimed_meanwhile(self: Ingestor, updates: list) -> None:
        assert claim(desk.sessions, ann, post_id) is not None  # a moderator takes it after the comparison
        update_run(self, updates)

    monkeypatch.setattr(Ingestor, "_update", claimed_meanwhile)
    path = write_jsonl(tmp_path / "p.jsonl", [{"external_id": "x", "text": "t2", "images": ["b.jpg"]}])
    report = ingest_files(desk, path, policy=UPDATE)
    assert (report.updated, report.kept) == (0, 1) and "a moderator is reviewing" in report.warnings[0]
    assert row_count(desk, Media) == 1 and stored_posts(desk)["x"].text == "t"  # b.jpg left no row behind


def test_an_optional_field_left_empty_is_no_change(desk: Desk, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"external_id": "d", "text": "t", "created_at": "2024-03-01 10:00"}])
    ingest_files(desk, path)
    again = write_jsonl(tmp_path / "p.jsonl", [{"external_id": "d", "text": "t", "created_at": "01.03.2024"}])
    report = ingest_files(desk, again, policy=UPDATE)  # the date in a format not named: left empty
    assert (report.differing, report.already_present) == (0, 1)
    edited = write_jsonl(tmp_path / "p.jsonl", [{"external_id": "d", "text": "t2", "created_at": "01.03.2024"}])
    assert ingest_files(desk, edited, policy=UPDATE).updated == 1
    assert stored_posts(desk)["d"].created_at == datetime(2024, 3, 1, 10, tzinfo=UTC)  # the good date stays


def test_the_desks_missing_images_key_is_not_a_records(desk: Desk, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"external_id": "a", "text": "t", "missing_images": ["fake.jpg"]},
        {"external_id": "b", "text": "t", "metadata": {"missing_images": ["fake.jpg"]}},
    ])  # fmt: skip
    report = ingest_files(desk, path)
    assert report.added == 0 and all("is the desk's own" in why for why in rejections(report).values())


def test_an_update_refused_for_a_bad_image_is_counted_once(desk: Desk, tmp_path: Path) -> None:
    ingest_files(desk, write_jsonl(tmp_path / "p.jsonl", [{"external_id": "x", "text": "t"}]))
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 broken")
    path = write_jsonl(tmp_path / "p.jsonl", [{"external_id": "x", "text": "t2", "images": ["bad.jpg"]}])
    report = ingest_files(desk, path, policy=UPDATE)
    assert report.summary() == "0 added, 0 already present, 1 rejected"
    assert "the stored post 1 was not updated" in report.rejected[0].reason


def test_an_image_under_a_file_counts_as_missing(desk: Desk, tmp_path: Path) -> None:
    make_image(tmp_path / "a.jpg", 1)
    path = write_jsonl(tmp_path / "p.jsonl", [{"external_id": "x", "text": "t", "images": ["a.jpg", "a.jpg/b.jpg"]}])
    report = ingest_files(desk, path, policy=SKIP)
    assert report.added == 1 and stored_posts(desk)["x"].meta == {MISSING_IMAGES_KEY: ["a.jpg/b.jpg"]}


def test_migration_0013_will_not_drop_update_events(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    try:
        schema.upgrade(engine)
        desk = open_desk(Settings(database_url=db_url, media_dir=tmp_path / "media"))
        ingest_files(desk, _posts(tmp_path, u="one"))
        ingest_files(desk, _posts(tmp_path, u="two"), policy=UPDATE)
        desk.engine.dispose()
        with pytest.raises(Exception, match="holds 'update' events"):
            schema.downgrade(engine, "0012")
        assert schema.current_revision(engine) == schema.head_revision()
    finally:
        engine.dispose()


def test_a_bulk_decision_skips_posts_replaced_after_the_list_was_shown(desk: Desk, tmp_path: Path) -> None:
    lea = staff(desk)["lea"]
    ingest_files(desk, _posts(tmp_path, a="one", b="two"))
    _verdicts(desk)
    shown_at = datetime.now(UTC)  # the lead reads the queue …
    ingest_files(desk, _posts(tmp_path, a="one, replaced", b="two"), policy=UPDATE)  # … a platform resends a
    _verdicts(desk)  # … and it is scored again before the lead clicks
    ids = {k: p.id for k, p in stored_posts(desk).items()}
    result = decide_bulk(desk.sessions, lea, [ids["a"], ids["b"]], "confirm", shown_at=shown_at)
    assert result.decided == [ids["b"]]
    assert result.skipped[ids["a"]].startswith("its content was replaced (an ingest update) after the list was shown")

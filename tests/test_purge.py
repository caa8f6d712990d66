"""review/purge.py: erasure with a trace, and retention built on it.

A purge removes a post's text, author, metadata, images (files, thumbnails, media rows, signals)
unless another post still shows them, verdict texts and raw output, review notes, and image copies
in export folders; keeps the post as a tombstone pointing at its audit row, and the verdicts'
judgements, the review events and the labels, so history and metrics stay countable. Refusals (no
reason, no permission), idempotence, dry runs, the queue and the export skipping erased posts, the
database refusing a hand-made DELETE of a post with review events, and the command line.

Retention (``apply_retention``, ``python -m review retention``): the settings for how long after a
post's decision its images, its text and its raw model output are kept, applied through the purge's
mechanism to decided posts only, with one audit row per run that erased something; idempotent, a
dry run that changes nothing, defaults that keep everything. Posts decided at different ages
(events with explicit times). SQLite and Postgres throughout.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError

from db.models import AuditEvent, Media, Post, PostLabel, PostMedia, ReviewEvent, Signal, Verdict
from review import purge as purging
from review.auth import OPERATOR, PermissionDenied, set_active, set_role
from review.cli import main
from review.config import Settings, load_settings
from review.decisions import ClaimLost, claim, decide
from review.errors import ConfigError
from review.export import ExportOptions, export, select_examples
from review.ingest import ingest_records
from review.media import collect_garbage, prepare_image, write_image
from review.queue import queue_count
from tests.conftest import REPO, account, signed_in_as, subprocess_env
from tests.factories import queue_with

COLOURS = {"a.png": (200, 30, 30), "shared.png": (30, 200, 30), "d.png": (30, 30, 200), "e.png": (120, 120, 0)}


def age_store(desk, hours: float = 2) -> None:
    """Date every file of the media store ``hours`` back, as if ingested that long ago: a purge
    deletes only store files that ``media gc`` would (older than its hour), since a younger one
    may be what a running ingest is about to refer to."""
    then = time.time() - hours * 3600
    for path in desk.settings.media_dir.rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


def make_posts(desk, tmp_path: Path, specs: list[tuple[str, str, list[str]]], prefix: str = "p") -> list[int]:
    """Real posts (ingested, with real images) from (text, author, image names), each queued with
    a usable verdict full of text, OCR signals on its images."""
    records = []
    for i, (body, author, images) in enumerate(specs):
        for name in images:
            if not (tmp_path / name).exists():
                Image.new("RGB", (96, 64), COLOURS.get(name, (i * 40 % 255, 90, 160))).save(tmp_path / name)
        records.append({"external_id": f"{prefix}{i}", "source": "weibo", "text": body, "author": author,
                        "images": images, "metadata": {"city": "Hangzhou", "phone": "13812345678"}})  # fmt: skip
    ids = ingest_records(desk.sessions, records, desk.settings, base_dir=tmp_path).post_ids
    assert len(ids) == len(specs)
    age_store(desk)
    with desk.sessions() as session, session.begin():
        for i, post_id in enumerate(ids):
            v = Verdict(post_id=post_id, provider="transformers", model_id="m", prompt_version="p@1",
                        input_hash=f"in-{prefix}{i}", text_hash=f"tx-{prefix}{i}", parse_status="ok", violation=True,
                        category="fraud_spam", severity=2, confidence=0.8, description=f"a picture of {specs[i][0]}",
                        ocr_text="call 13812345678", image_text_consistency="consistent", sentiment="neutral",
                        consistency_reason="the caption repeats the image", tags=["phone"],
                        rationale=f"quotes {specs[i][0]}", raw_output=f'{{"rationale": "{specs[i][0]}"}}',
                        parse_notes=["trimmed"])  # fmt: skip
            queue_with(session, v)
        media = session.scalars(select(PostMedia.media_id).where(PostMedia.post_id.in_(ids)).distinct()).all()
        for media_id in media:
            session.add(Signal(media_id=media_id, kind="ocr", value={"text": "call 13812345678"}, producer="rapidocr",
                               producer_version="1"))  # fmt: skip
        session.execute(update(Media).where(Media.id.in_(media)).values(dup_cluster=Media.id))
    return ids


def decide_all(desk, ids: list[int], note: str = "she posts her number again") -> None:
    moderator = account(desk, "moderator")
    for post_id in ids:
        assert claim(desk.sessions, moderator, post_id) is not None
        decide(desk.sessions, moderator, post_id, "confirm", note=note)


SPECS = [
    ("my number 13812345678, add me", "alice", ["a.png"]),
    ("shared picture one", "bob", ["shared.png"]),
    ("shared picture two", "carol", ["shared.png"]),
    ("alice again", "alice", ["d.png"]),
]


@pytest.fixture
def world(desk, tmp_path):
    ids = make_posts(desk, tmp_path, SPECS)
    decide_all(desk, ids)
    return ids


def _files(desk, post_id: int) -> list[Path]:
    with desk.sessions() as session:
        rows = session.execute(
            select(Media.path, Media.thumb_path).join(PostMedia, PostMedia.media_id == Media.id)
            .where(PostMedia.post_id == post_id)
        ).all()  # fmt: skip
    return [desk.settings.media_dir / rel for row in rows for rel in row]


def _media_ids(desk, post_id: int) -> list[int]:
    with desk.sessions() as session:
        return list(session.scalars(select(PostMedia.media_id).where(PostMedia.post_id == post_id)))


def _count(desk, query) -> int:
    with desk.sessions() as session:
        return session.scalar(query) or 0


def test_purge_erases_content_and_keeps_a_tombstone(desk, world, tmp_path: Path) -> None:
    admin = account(desk, "admin")
    lead = account(desk, "lead")
    folder = tmp_path / "exported"
    export(desk.sessions, lead, desk.settings, ExportOptions(format="swift", include="all", allow_ungrouped=True,
           model=str(tmp_path / "no-model")), folder)  # fmt: skip
    target = world[0]
    files, media = _files(desk, target), _media_ids(desk, target)
    assert files and all(f.is_file() for f in files)
    with desk.sessions() as session:
        sha = session.scalar(select(Media.sha256).where(Media.id == media[0]))
    copy = next((folder / "images").glob(f"{sha}.*"))
    events_before = _count(desk, select(func.count(ReviewEvent.id)))

    result = purging.purge(desk.sessions, admin, desk.settings, [target], reason="erasure request #12")

    assert result.erased == [target] and result.event_id is not None
    assert not any(f.exists() for f in files) and not copy.exists()  # store files, thumbnail, export copy
    assert result.export_folders == [str(folder.resolve())]  # its data files still hold the text
    with desk.sessions() as session:
        post = session.get(Post, target)
        assert (post.text, post.author, post.meta) == ("", None, {})
        assert post.purged_at is not None and post.purge_event_id == result.event_id
        assert post.external_id == "p0" and post.status == "decided"  # the tombstone
        assert session.scalar(select(func.count()).select_from(PostMedia).where(PostMedia.post_id == target)) == 0
        assert session.get(Media, media[0]) is None
        assert session.scalar(select(func.count(Signal.id)).where(Signal.media_id == media[0])) == 0
        v = session.scalars(select(Verdict).where(Verdict.post_id == target)).one()
        erased = (v.description, v.ocr_text, v.rationale, v.raw_output, v.consistency_reason, v.error, v.text_hash)
        assert erased == (None,) * 7 and v.tags == [] and v.parse_notes == []
        assert v.input_hash == purging.ERASED_HASH  # no later post gets it as a cache hit
        assert (v.violation, v.category, v.severity, v.confidence, v.model_id, v.prompt_version) == (
            True, "fraud_spam", 2, 0.8, "m", "p@1")  # fmt: skip
        assert session.scalar(select(func.count(ReviewEvent.id))) == events_before  # history stays countable
        notes = session.scalars(select(ReviewEvent.note).where(ReviewEvent.post_id == target)).all()
        assert notes and all(n is None for n in notes)  # moderators quote posts in their notes
        assert session.get(PostLabel, target) is not None  # the metrics still count the decision
        event = session.get(AuditEvent, result.event_id)
        assert event.action == "purge" and event.actor_name == "admin" and event.subject == f"post {target}"
        d = event.details
        assert d["reason"] == "erasure request #12" and d["post_ids"] == [target]
        assert set(d["kinds"]) == {"media", "text", "raw_output"}
        assert d["counts"]["media"] == 1 and d["counts"]["files"] == 2 and d["counts"]["export_images"] == 1
        assert d["counts"]["notes"] == 1 and d["counts"]["verdicts"] == 1 and d["counts"]["texts"] == 1
        assert d["export_folders"] == [str(folder.resolve())]
        # the other posts are untouched
        other = session.get(Post, world[3])
        assert other.text == "alice again" and other.purged_at is None
    assert all(f.is_file() for f in _files(desk, world[3]))
    tomb = purging.tombstones(desk.sessions(), [target, world[3]])
    assert list(tomb) == [target] and tomb[target].reason == "erasure request #12"


def test_a_shared_image_stays_until_no_post_shows_it(desk, world) -> None:
    admin = account(desk, "admin")
    b, c = world[1], world[2]
    files, media = _files(desk, b), _media_ids(desk, b)
    assert media == _media_ids(desk, c)  # content-addressed: one row, one file for both posts

    first = purging.purge(desk.sessions, admin, desk.settings, [b], reason="request")
    assert first.counts["media_shared"] == 1 and not first.counts.get("media")
    assert all(f.is_file() for f in files)
    assert _media_ids(desk, b) == [] and _media_ids(desk, c) == media
    assert _count(desk, select(func.count(Signal.id)).where(Signal.media_id == media[0])) == 1  # c's OCR stays

    second = purging.purge(desk.sessions, admin, desk.settings, [c], reason="request")
    assert second.counts["media"] == 1 and not any(f.exists() for f in files)
    assert _count(desk, select(func.count(Media.id)).where(Media.id == media[0])) == 0
    assert _count(desk, select(func.count(Signal.id)).where(Signal.media_id == media[0])) == 0


def test_both_posts_of_a_shared_image_in_one_purge(desk, world) -> None:
    files = _files(desk, world[1])
    when = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    result = purging.purge(desk.sessions, account(desk, "admin"), desk.settings, world[1:3], reason="r", now=when)
    with desk.sessions() as session:
        assert session.get(Post, world[2]).purged_at == when
    assert result.counts["media"] == 1 and result.counts["media_links"] == 2 and not result.counts.get("media_shared")
    assert not any(f.exists() for f in files)


def test_dry_run_then_purge_then_purge_again(desk, world) -> None:
    admin = account(desk, "admin")
    files = _files(desk, world[0])
    dry = purging.purge(desk.sessions, admin, desk.settings, [world[0], world[3]], reason="r", dry_run=True)
    assert dry.erased == [world[0], world[3]] and dry.event_id is None
    assert sorted(dry.files) == sorted(files + _files(desk, world[3]))
    assert all(f.is_file() for f in files)
    with desk.sessions() as session:
        post = session.get(Post, world[0])
        assert post.text and post.purged_at is None and post.author == "alice"
        assert session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "purge")) == 0
    real = purging.purge(desk.sessions, admin, desk.settings, [world[0], world[3]], reason="r")
    assert real.counts == dry.counts

    # again: nothing left, nothing written, and it says so
    audits = _count(desk, select(func.count(AuditEvent.id)).where(AuditEvent.action == "purge"))
    again = purging.purge(desk.sessions, admin, desk.settings, [world[0]], reason="r")
    assert again.erased == [] and again.event_id is None and list(again.already) == [world[0]]
    assert again.already[world[0]] is not None
    assert _count(desk, select(func.count(AuditEvent.id)).where(AuditEvent.action == "purge")) == audits
    with desk.sessions() as session:
        assert session.get(Post, world[0]).purge_event_id == real.event_id


def test_refused_without_reason_or_permission(desk, world) -> None:
    admin = account(desk, "admin")
    for reason in ("", "   \n\t"):
        with pytest.raises(purging.ReasonMissing):
            purging.purge(desk.sessions, admin, desk.settings, [world[0]], reason=reason)
    with pytest.raises(PermissionDenied):
        purging.purge(desk.sessions, account(desk, "lead"), desk.settings, [world[0]], reason="r")
    # the Actor still says admin, but the account was demoted, then deactivated: the stored one counts
    other = account(desk, "admin", "second-admin")
    set_role(desk.sessions, "second-admin", "moderator", by=OPERATOR)
    with pytest.raises(PermissionDenied):
        purging.purge(desk.sessions, other, desk.settings, [world[0]], reason="r")
    set_role(desk.sessions, "second-admin", "admin", by=OPERATOR)
    set_active(desk.sessions, "second-admin", False, by=OPERATOR)
    with pytest.raises(PermissionDenied):
        purging.apply_retention(desk.sessions, other, desk.settings.with_overrides(retain_text_days=1))
    with desk.sessions() as session:
        assert session.get(Post, world[0]).purged_at is None
        assert session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "purge")) == 0


def test_queue_claims_and_exports_skip_an_erased_post(desk, tmp_path) -> None:
    ids = make_posts(desk, tmp_path, SPECS[:2])  # both queued
    admin, moderator, lead = account(desk, "admin"), account(desk, "moderator"), account(desk, "lead")
    held = claim(desk.sessions, moderator, ids[0])
    assert held is not None
    with desk.sessions() as session:
        assert queue_count(session, moderator) == 2
    purging.purge(desk.sessions, admin, desk.settings, [ids[0]], reason="r")
    with desk.sessions() as session:
        assert queue_count(session, moderator) == 1  # it left the queue, keeping its status
        post = session.get(Post, ids[0])
        assert post.status == "queued" and post.claimed_by_id is None
    with pytest.raises(ClaimLost):  # the claim went with the content: nothing is decided on an empty post
        decide(desk.sessions, moderator, ids[0], "confirm")
    assert claim(desk.sessions, moderator, ids[0]) is None
    taken = claim(desk.sessions, moderator)
    assert taken is not None and taken.post_id == ids[1]
    decide(desk.sessions, moderator, ids[1], "confirm")
    with desk.sessions() as session:
        before = [
            e.post_id
            for e in select_examples(
                session, lead, ExportOptions(format="swift", include="all", allow_ungrouped=True)
            ).examples
        ]
    assert before == [ids[1]]
    purging.purge(desk.sessions, admin, desk.settings, [ids[1]], reason="r")
    with desk.sessions() as session:
        assert select_examples(session, lead, ExportOptions(format="swift", include="all")).examples == []


def test_a_hand_made_delete_of_a_post_with_review_events_fails(desk, world) -> None:
    """ON DELETE RESTRICT (migration 0007): the events are never cascaded away."""
    events = _count(desk, select(func.count(ReviewEvent.id)).where(ReviewEvent.post_id == world[0]))
    assert events >= 2  # claim and confirm
    with pytest.raises(IntegrityError), desk.engine.begin() as conn:
        conn.execute(text("DELETE FROM post WHERE id = :id"), {"id": world[0]})
    with pytest.raises(IntegrityError), desk.sessions() as session, session.begin():
        session.execute(delete(Post).where(Post.id == world[0]))
    assert _count(desk, select(func.count(ReviewEvent.id)).where(ReviewEvent.post_id == world[0])) == events
    assert _count(desk, select(func.count(Post.id)).where(Post.id == world[0])) == 1
    # after a purge too: the tombstone keeps its history
    purging.purge(desk.sessions, account(desk, "admin"), desk.settings, [world[0]], reason="r")
    with pytest.raises(IntegrityError), desk.engine.begin() as conn:
        conn.execute(text("DELETE FROM post WHERE id = :id"), {"id": world[0]})
    assert _count(desk, select(func.count(ReviewEvent.id)).where(ReviewEvent.post_id == world[0])) == events


def test_select_by_author_external_id_and_file(desk, world, tmp_path) -> None:
    with desk.sessions() as session:
        assert purging.resolve_posts(session, author="alice") == ([world[0], world[3]], [])
        assert purging.resolve_posts(session, author="alice", source="douyin") == ([], [])
        assert purging.resolve_posts(session, external=[("weibo", "p1"), ("weibo", "nope")]) == (
            [world[1]],
            ["weibo:nope"],
        )
        assert purging.resolve_posts(session, post_ids=[world[2], 999999, world[2]]) == ([world[2]], ["post 999999"])
    ids = tmp_path / "ids.txt"
    ids.write_text(f"# erasure request 7\n{world[0]}\n\n{world[1]}  # bob\n", encoding="utf-8")
    assert purging.read_ids_file(ids) == [world[0], world[1]]
    ids.write_text(f"{world[0]}\n12a\n", encoding="utf-8")
    with pytest.raises(purging.ReviewError, match=r"ids.txt:2: not a post id"):
        purging.read_ids_file(ids)
    assert purging.parse_external("weibo:a:b") == ("weibo", "a:b")
    # one parser for the file and the admin page's box: commas, semicolons, spaces, comments
    assert purging.parse_ids("1, 2;3\n 4  5 # six\n\n# 7\n") == [1, 2, 3, 4, 5]
    ids.write_text("1, 2\n3;4 # x\n", encoding="utf-8")
    assert purging.read_ids_file(ids) == [1, 2, 3, 4]
    for bad in ("1\n2 x3", "1\n-2", "1\n" + "9" * 20, "1\n２"):
        with pytest.raises(purging.ReviewError, match=r"^line 2: not a post id"):
            purging.parse_ids(bad)
    # a name no stored text can hold matches nothing (Postgres would refuse it), never a cleaned-up name
    with desk.sessions() as session:
        assert purging.resolve_posts(session, author="ali\x00ce") == ([], [])
        assert purging.resolve_posts(session, author="alice", source="wei\udcffbo") == ([], [])
        assert purging.resolve_posts(session, external=[("weibo", "p\x001")], post_ids=[2**63]) == (
            [],
            [f"post {2**63}", "weibo:p\x001"],
        )


def _cli(desk, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "review", *args],
        cwd=REPO,
        env=subprocess_env(desk),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_command_line(desk, world, monkeypatch, capsys) -> None:
    # refusals first, nothing erased: without --reason (argparse), with a blank one
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    with pytest.raises(SystemExit) as stopped:
        main(["purge", "--post", str(world[0])])
    assert stopped.value.code == 2 and "--reason" in capsys.readouterr().err
    assert main(["purge", "--post", str(world[0]), "--reason", "  "]) == 2
    assert capsys.readouterr().err.startswith("error: a purge needs a reason")
    # the real command, in a process of its own
    done = _cli(desk, "purge", "--author", "alice", "--external", "weibo:no-such-id", "--reason",
                "GDPR art. 17 request 2026-41")  # fmt: skip
    assert done.returncode == 1, done.stderr  # one named post was not found
    assert done.stdout.startswith("purge: 2 posts erased") and "not found: weibo:no-such-id" in done.stderr
    with desk.sessions() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "purge")).one()
        digest = hashlib.sha256(b"alice").hexdigest()
        assert event.actor_name == "(command line)" and event.subject == f"author sha256:{digest[:16]}"
        assert event.details["post_ids"] == [world[0], world[3]] and event.details["author_sha256"] == digest
        assert event.details["not_found"] == 1
        # the append-only log keeps nothing of what was erased: not the author, not the external ids
        row = json.dumps([event.subject, event.details], ensure_ascii=False)
        assert "alice" not in row and "no-such-id" not in row

    # the rest in this process (the same main())
    assert main(["purge", "--author", "alice", "--reason", "again"]) == 0
    assert "no post by 'alice'" in capsys.readouterr().out
    assert main(["purge", "--post", str(world[0]), "--reason", "again"]) == 0
    out = capsys.readouterr()
    assert "0 posts erased" in out.out and f"post {world[0]}: already erased on " in out.err
    assert main(["purge", "--external", "weibo:p1", "--post", "999999", "--reason", "r", "--dry-run"]) == 1
    out = capsys.readouterr()
    assert (
        out.out.startswith("purge (dry run, nothing changed): 1 post to erase") and "not found: post 999999" in out.err
    )
    with desk.sessions() as session:
        assert session.get(Post, world[1]).purged_at is None
    assert main(["purge", "--source", "weibo", "--reason", "r"]) == 2
    assert main(["purge", "--reason", "r"]) == 2


def test_erased_posts_show_as_tombstones_on_the_posts_page(desk, world, monkeypatch) -> None:
    """The Posts page shows an erased post as a tombstone: when, by whom, what kinds; the reason
    (which may name who asked) to admins only, as plain text."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    purging.purge(desk.sessions, account(desk, "admin"), desk.settings, [world[0]], reason="request **7** <b>x</b>")
    with desk.sessions() as session, session.begin():  # world[3] decided two days ago: retention takes its images
        session.execute(update(PostLabel).where(PostLabel.post_id == world[3])
                        .values(decided_at=datetime.now(UTC) - timedelta(days=2)))  # fmt: skip
    media_only = desk.settings.with_overrides(retain_media_days=1)
    kept = purging.apply_retention(desk.sessions, account(desk, "admin"), media_only)
    assert kept.erased == [world[3]] and kept.kinds == ["media"]
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    for role, sees_reason in (("moderator", False), ("admin", True)):
        st.cache_resource.clear()
        at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=30)
        signed_in_as(at, desk, account(desk, role))
        at.switch_page("pages/posts.py")
        at.run()
        table = at.dataframe[0].value
        # a tombstone whose text was kept (retention took only its images) shows its text
        assert table.loc[world[0], "text"] == "(erased)" and table.loc[world[3], "text"] == "alice again"
        assert table.loc[world[0], "author"] == "" and not isinstance(table.loc[world[0], "thumbnail"], str)
        row = list(table.index).index(world[0])
        at.session_state[at.dataframe[0].key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
        at.run()
        assert not at.exception
        assert any("content was erased" in w.value for w in at.warning)
        shown = "\n".join(t.value for t in at.text)
        assert "erased" in shown and "by admin (purge)" in shown and "media, raw_output, text" in shown
        assert ("reason: request **7** <b>x</b>" in shown) is sees_reason
        assert all("<b>x" not in m.value for m in at.markdown)
    st.cache_resource.clear()


def test_the_admin_page_previews_confirms_and_lists(desk, world, monkeypatch) -> None:
    """pages/data.py: refused to leads; an admin's purge needs a reason and a preview, then a
    confirmation; retention shows its settings, previews and runs; both land in the recent list."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    monkeypatch.setenv("RETAIN_RAW_OUTPUT_DAYS", "1")

    def page(role: str) -> AppTest:
        st.cache_resource.clear()  # the desk (and its settings) is cached per process
        at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=30)
        signed_in_as(at, desk, account(desk, role))
        at.switch_page("pages/data.py")
        return at.run()

    refused = page("lead")
    assert any("may not erase data" in e.value for e in refused.error) and not refused.button

    at = page("admin")
    assert not at.exception
    at.text_area(key="data_ids").input(f"{world[0]}, 999999").run()
    at.button(key="data_preview").click().run()
    assert any("Nothing was erased" in e.value for e in at.error)  # no reason yet
    at.text_area(key="data_reason").input("request 12").run()
    at.button(key="data_preview").click().run()
    preview = "\n".join(t.value for t in at.text)
    assert "1 post to erase" in preview and "not found: post 999999" in preview
    assert at.button(key="data_erase").disabled  # until confirmed
    with desk.sessions() as session:
        assert session.get(Post, world[0]).purged_at is None
    at.checkbox(key="data_confirm").check().run()
    at.button(key="data_erase").click().run()
    assert not at.exception
    assert "1 post erased" in "\n".join(t.value for t in at.text)
    with desk.sessions() as session:
        post = session.get(Post, world[0])
        assert post.purged_at is not None and post.text == ""
        event = session.get(AuditEvent, post.purge_event_id)
        assert (event.actor_name, event.details["reason"], event.details["not_found"]) == ("admin", "request 12", 1)

    # a long list under the summary is cut, the count stays in the summary
    missing = " ".join(str(900000 + i) for i in range(30))
    at.text_area(key="data_ids").input(f"{world[0]}; {missing}").run()
    at.button(key="data_preview").click().run()
    preview = "\n".join(t.value for t in at.text)
    assert "30 not found" in preview and preview.count("not found: post") == 20 and "… and 10 more" in preview

    # by author: a changed input drops the preview
    at.radio(key="data_how").set_value("By author").run()
    at.text_input(key="data_author").input("bob").run()
    at.button(key="data_preview").click().run()
    assert "1 post to erase" in "\n".join(t.value for t in at.text)
    at.text_input(key="data_author").input("carol").run()
    assert not [b for b in at.button if b.key == "data_erase"]
    at.text_input(key="data_author").input("car\x00ol").run()  # pasted: matches no one, breaks nothing
    at.button(key="data_preview").click().run()
    assert not at.exception and any("no post matches" in c.value for c in at.code)
    at.text_input(key="data_author").input("carol").run()
    at.button(key="data_preview").click().run()
    at.checkbox(key="data_confirm").check().run()
    at.button(key="data_erase").click().run()
    assert not at.exception and "1 post erased" in "\n".join(t.value for t in at.text)
    with desk.sessions() as session:
        event = session.get(AuditEvent, session.get(Post, world[2]).purge_event_id)
        assert event.details["author_sha256"] == hashlib.sha256(b"carol").hexdigest()
        assert "carol" not in json.dumps([event.subject, event.details])

    # retention: raw output kept 1 day; the decisions were just made, so a preview finds nothing yet
    table = at.dataframe[0].value
    assert list(table["kept after the decision"]) == ["for ever", "for ever", "1 days"]
    at.button(key="data_retention_preview").click().run()
    assert "0 posts to erase" in "\n".join(t.value for t in at.text)
    with desk.sessions() as session, session.begin():  # as if decided two days ago
        session.execute(update(PostLabel).values(decided_at=datetime.now(UTC) - timedelta(days=2)))
    at.button(key="data_retention_preview").click().run()
    assert "2 posts to erase" in "\n".join(t.value for t in at.text)  # world[0] and world[2]: gone already
    at.button(key="data_retention_run").click().run()
    assert not at.exception and "2 posts erased" in "\n".join(t.value for t in at.text)
    recent = at.dataframe[-1].value
    assert list(recent["action"]) == ["retention", "purge", "purge"] and recent["reason"].iloc[2] == "request 12"
    st.cache_resource.clear()


def test_a_store_file_an_ingest_is_about_to_use_survives_the_purge(desk, world, tmp_path) -> None:
    """An ingest writes (or reuses, refreshing its time) an image's files before it commits the
    media row; a purge of the last post showing that image meanwhile must not delete them, or the
    ingest's row points at nothing. The purge leaves files used within `media gc`'s hour to
    `media gc`, which removes them once nothing refers to them and they are old enough."""
    admin = account(desk, "admin")
    files, media = _files(desk, world[0]), _media_ids(desk, world[0])
    untouched = _files(desk, world[3])
    # what an ingest of the same picture does before its transaction
    prepared = prepare_image((tmp_path / "a.png").read_bytes(), max_pixels=desk.settings.max_image_pixels,
                             thumbnail_size=desk.settings.thumbnail_size)  # fmt: skip
    write_image(prepared, desk.settings.media_dir)

    result = purging.purge(desk.sessions, admin, desk.settings, [world[0], world[3]], reason="request")

    assert all(f.is_file() for f in files) and sorted(result.left_for_gc) == sorted(files)
    assert not any(f.exists() for f in untouched)  # an image nobody touched goes at once
    assert result.counts["files"] == 2 and result.counts["files_left_for_gc"] == 2
    assert "2 files left for `media gc`" in result.summary()
    with desk.sessions() as session:
        assert session.get(Media, media[0]) is None  # the row went: the post is erased
    # the ingest commits: its row finds the files
    again = ingest_records(desk.sessions, [{"external_id": "again", "source": "weibo", "text": "t",
                                            "images": ["a.png"]}], desk.settings, base_dir=tmp_path)  # fmt: skip
    assert _files(desk, again.post_ids[0]) == files and all(f.is_file() for f in files)
    later = datetime.now(UTC) + timedelta(hours=2)
    garbage = collect_garbage(desk.sessions, desk.settings.media_dir, OPERATOR, delete=True, now=later)
    assert not garbage.orphans and all(f.is_file() for f in files)  # referenced again: kept
    # had no ingest come, `media gc` removes them once they are old
    purging.purge(desk.sessions, admin, desk.settings, again.post_ids, reason="request")
    assert all(f.is_file() for f in files)  # reused just now by the ingest: still too young
    garbage = collect_garbage(desk.sessions, desk.settings.media_dir, OPERATOR, delete=True, now=later)
    assert sorted(desk.settings.media_dir / rel for rel, _size in garbage.orphans) == sorted(files)
    assert not any(f.exists() for f in files)


def test_an_ingest_does_not_use_a_media_id_purged_between_its_chunks(desk, world, tmp_path, monkeypatch) -> None:
    """The ingest remembers media ids from one chunk to the next; a purge between two chunks can
    remove the row behind one. The next chunk must look it up again and store the image anew."""
    import review.ingest.store

    monkeypatch.setattr(review.ingest.store, "CHUNK_SIZE", 1)  # one record a transaction
    admin = account(desk, "admin")
    shown: list[int] = []

    def records():
        yield {"external_id": "n1", "source": "weibo", "text": "first", "images": ["a.png"]}
        # n1 is stored (its chunk committed) before the next record is read: purge every post
        # showing a.png, whose media id the ingest now holds
        with desk.sessions() as session:
            n1 = session.scalar(select(Post.id).where(Post.external_id == "n1"))
            shown.extend(_media_ids(desk, n1))
        done = purging.purge(desk.sessions, admin, desk.settings, [world[0], n1], reason="request")
        assert done.counts["media"] == 1
        yield {"external_id": "n2", "source": "weibo", "text": "second", "images": ["a.png"]}

    report = ingest_records(desk.sessions, records(), desk.settings, base_dir=tmp_path)
    assert not report.rejected and len(report.post_ids) == 2
    media = _media_ids(desk, report.post_ids[1])
    assert len(media) == 1 and media != shown  # a new row for the same picture
    assert all(f.is_file() for f in _files(desk, report.post_ids[1]))


NOW = datetime.now(UTC).replace(microsecond=0)


# (age of the decision in days, how it ends): decided, drawn for second review, escalated, waiting
AGES = [(400, "decided"), (100, "decided"), (10, "decided"), (1, "decided"), (400, "second_review"),
        (400, "escalated"), (400, "queued")]  # fmt: skip


RETAIN = {"retain_media_days": 30, "retain_text_days": 365, "retain_raw_output_days": 7}


@pytest.fixture
def aged(desk, tmp_path: Path) -> list[int]:
    specs = [(f"post decided {days} days ago, ends {how}", f"author{i}", [f"img{i}.png"])
             for i, (days, how) in enumerate(AGES)]  # fmt: skip
    ids = make_posts(desk, tmp_path, specs, prefix="r")
    moderator = account(desk, "moderator")
    for post_id, (days, how) in zip(ids, AGES, strict=True):
        if how == "queued":
            continue
        when = NOW - timedelta(days=days)
        assert claim(desk.sessions, moderator, post_id, now=when) is not None
        if how == "escalated":
            decide(desk.sessions, moderator, post_id, "escalate", note="a lead should see this", now=when)
        else:  # share 1: drawn for second review
            decide(desk.sessions, moderator, post_id, "confirm", note="n", share=1.0 if how == "second_review" else 0.0,
                   now=when + timedelta(minutes=1))  # fmt: skip
    with desk.sessions() as session:
        statuses = [session.get(Post, i).status for i in ids]
    assert statuses == [how for _d, how in AGES]
    return ids


def _state(desk, post_id: int) -> tuple[bool, bool, bool, bool]:
    """(has text, has images, has raw output, is a tombstone)."""
    with desk.sessions() as session:
        post = session.get(Post, post_id)
        images = session.scalar(select(func.count()).select_from(PostMedia).where(PostMedia.post_id == post_id))
        raw = session.scalar(select(func.count(Verdict.id)).where(Verdict.post_id == post_id,
                                                                   Verdict.raw_output.is_not(None)))  # fmt: skip
        return bool(post.text), bool(images), bool(raw), post.purged_at is not None


def test_retention_erases_by_age_and_kind_on_decided_posts_only(desk, aged) -> None:
    settings = desk.settings.with_overrides(**RETAIN)
    admin = account(desk, "admin")
    before = {i: _state(desk, i) for i in aged}
    assert all(s == (True, True, True, False) for s in before.values())
    with desk.sessions() as session:
        old_files = [settings.media_dir / rel for rel in session.execute(
            select(Media.path).join(PostMedia, PostMedia.media_id == Media.id).where(PostMedia.post_id == aged[0])
        ).scalars()]  # fmt: skip
    events = _count_events(desk)

    dry = purging.apply_retention(desk.sessions, admin, settings, dry_run=True, now=NOW)
    assert {i: _state(desk, i) for i in aged} == before and dry.event_id is None
    assert all(f.is_file() for f in old_files)

    result = purging.apply_retention(desk.sessions, admin, settings, now=NOW)
    assert result.counts == dry.counts and result.erased == dry.erased
    assert result.erased == aged[:3]  # decided 400, 100, 10 days ago; not 1 day ago, not the others
    assert _state(desk, aged[0]) == (False, False, False, True)  # past every setting
    assert _state(desk, aged[1]) == (True, False, False, True)  # images (30 d) and raw output (7 d) gone
    assert _state(desk, aged[2]) == (True, True, False, False)  # raw output only: not a tombstone
    assert _state(desk, aged[3]) == (True, True, True, False)
    for post_id in aged[4:]:  # second review, escalated, waiting: untouched however old
        assert _state(desk, post_id) == (True, True, True, False)
    assert not any(f.exists() for f in old_files)
    assert _count_events(desk) == events  # decisions stay
    with desk.sessions() as session:
        runs = session.scalars(select(AuditEvent).where(AuditEvent.action == "retention")).all()
        assert len(runs) == 1 and runs[0].id == result.event_id and runs[0].actor_name == "admin"
        d = runs[0].details
        assert d["days"] == {"media": 30, "text": 365, "raw_output": 7}
        assert d["counts"]["posts"] == 3 and d["counts"]["raw_outputs"] == 3 and d["counts"]["media"] == 2
        assert d["counts"]["texts"] == 1 and d["post_ids"] == aged[:3]
        assert session.get(Post, aged[1]).purge_event_id == result.event_id
        tomb = purging.tombstones(session, aged[:3])
        assert sorted(tomb) == aged[:2]  # raw output alone does not make a tombstone
        assert tomb[aged[0]].kinds == ("media", "raw_output", "text") and tomb[aged[0]].action == "retention"
        assert tomb[aged[1]].kinds == ("media", "raw_output")  # its text is still there

    # nothing is left that these settings take: the next run reads no post and reports none
    with desk.sessions() as session:
        assert purging.due(session, settings, NOW) == {}
    again = purging.apply_retention(desk.sessions, admin, settings, now=NOW)
    assert again.erased == [] and again.event_id is None and again.already == {}
    with desk.sessions() as session:
        assert session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "retention")) == 1

    # time passes: the post decided 100 days ago reaches the text setting a year later
    later = purging.apply_retention(desk.sessions, admin, settings, now=NOW + timedelta(days=300))
    assert aged[1] in later.erased and _state(desk, aged[1]) == (False, False, False, True)
    assert aged[0] not in later.erased


def _count_events(desk) -> int:
    with desk.sessions() as session:
        return session.scalar(select(func.count(ReviewEvent.id))) or 0


def test_an_image_shared_by_posts_due_for_different_kinds(desk, tmp_path: Path) -> None:
    """Images kept 30 days, raw output 7, text a year. shared.png: decided 40 days ago (images
    due) and 10 days ago (raw output only): the older post loses its link, the image stays for the
    other. d.png: decided 400 and 40 days ago, due for different kinds but both for images: it
    goes, row and files, although the two posts are in different groups."""
    specs = [("forty", "a", ["shared.png"]), ("ten", "b", ["shared.png"]), ("four hundred", "c", ["d.png"]),
             ("forty too", "d", ["d.png"])]  # fmt: skip
    ids = make_posts(desk, tmp_path, specs, prefix="s")
    moderator = account(desk, "moderator")
    for post_id, days in zip(ids, (40, 10, 400, 40), strict=True):
        when = NOW - timedelta(days=days)
        assert claim(desk.sessions, moderator, post_id, now=when) is not None
        decide(desk.sessions, moderator, post_id, "confirm", share=0.0, now=when + timedelta(minutes=1))
    with desk.sessions() as session:
        shared, lone = (session.scalar(select(PostMedia.media_id).where(PostMedia.post_id == i)) for i in ids[1:3])
        rels = session.execute(select(Media.path, Media.thumb_path).where(Media.id == lone)).one()
    files = [desk.settings.media_dir / rel for rel in rels]
    settings = desk.settings.with_overrides(**RETAIN)
    with desk.sessions() as session:
        plan = purging.due(session, settings, NOW)
    assert plan == {frozenset({"media", "raw_output"}): [ids[0], ids[3]], frozenset({"raw_output"}): [ids[1]],
                    frozenset({"media", "text", "raw_output"}): [ids[2]]}  # fmt: skip

    result = purging.apply_retention(desk.sessions, account(desk, "admin"), settings, now=NOW)

    assert result.erased == ids and result.counts["media"] == 1 and result.counts["media_shared"] == 1
    assert [_state(desk, i) for i in ids] == [(True, False, False, True), (True, True, False, False),
                                              (False, False, False, True), (True, False, False, True)]  # fmt: skip
    with desk.sessions() as session:
        assert session.get(Media, shared) is not None and session.get(Media, lone) is None
        assert session.scalar(select(PostMedia.media_id).where(PostMedia.post_id == ids[1])) == shared
    assert not any(f.exists() for f in files)


def test_defaults_keep_everything_and_leads_may_not_run_it(desk, aged) -> None:
    assert purging.retention_days(Settings()) == {"media": 0, "text": 0, "raw_output": 0}
    result = purging.apply_retention(desk.sessions, account(desk, "admin"), desk.settings, now=NOW)
    assert result.erased == [] and result.event_id is None
    assert all(_state(desk, i) == (True, True, True, False) for i in aged)
    with pytest.raises(PermissionDenied):
        purging.apply_retention(desk.sessions, account(desk, "lead"), desk.settings.with_overrides(**RETAIN), now=NOW)
    assert _state(desk, aged[0]) == (True, True, True, False)


def test_command_for_cron(desk, aged, tmp_path: Path, monkeypatch, capsys) -> None:
    env = {"DATABASE_URL": desk.settings.database_url, "MEDIA_DIR": str(desk.settings.media_dir),
           "RETAIN_MEDIA_DAYS": "30", "RETAIN_TEXT_DAYS": "", "RETAIN_RAW_OUTPUT_DAYS": "7"}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["retention", "--dry-run"]) == 0
    dry = capsys.readouterr()
    assert dry.out.startswith("retention (media 30 days, text for ever, raw_output 7 days) (dry run")
    assert "3 posts to erase" in dry.out and dry.out.count("\n") == 1 and dry.err == ""
    assert _state(desk, aged[0]) == (True, True, True, False)
    # the real command, as cron runs it: one line, exit 0
    done = subprocess.run([sys.executable, "-m", "review", "retention"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, **env, "PYTHONPATH": str(REPO)}, timeout=120)  # fmt: skip
    assert done.returncode == 0 and done.stderr == "" and done.stdout.count("\n") == 1, done.stderr
    assert "3 posts erased" in done.stdout and "2 images" in done.stdout
    assert _state(desk, aged[0]) == (True, False, False, True)  # text kept: its setting is empty
    assert main(["retention"]) == 0
    again = capsys.readouterr()
    assert "0 posts erased" in again.out and again.out.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["retention", "--help"])
    helped = " ".join(capsys.readouterr().out.split())
    assert "files that could not be deleted are listed on stderr" in helped and "exit status 1" in helped
    monkeypatch.delenv("RETAIN_MEDIA_DAYS")
    monkeypatch.delenv("RETAIN_RAW_OUTPUT_DAYS")
    assert main(["retention"]) == 0
    assert capsys.readouterr().out.startswith("retention: nothing to do, every kind is kept for ever")


def test_settings_from_environment_and_file(tmp_path: Path) -> None:
    assert load_settings({"RETAIN_MEDIA_DAYS": "90", "RETAIN_TEXT_DAYS": "3_650"}).retain_text_days == 3650
    toml = tmp_path / "review.toml"
    toml.write_text('retain_raw_output_days = 14\nretain_media_days = ""\n', encoding="utf-8")
    settings = load_settings({"REVIEW_CONFIG": str(toml)})
    assert (settings.retain_raw_output_days, settings.retain_media_days, settings.retain_text_days) == (14, 0, 0)
    for bad in ("-1", "ten", "99999999"):
        with pytest.raises(ConfigError, match="retain_media_days"):
            load_settings({"RETAIN_MEDIA_DAYS": bad})

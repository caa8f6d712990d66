"""Retention (review/purge.py ``apply_retention``, ``python -m review retention``): the settings
for how long after a post's decision its images, its text and its raw model output are kept,
applied through the purge's mechanism to decided posts only, with one audit row per run that
erased something; idempotent, a dry run that changes nothing, defaults that keep everything.
Posts decided at different ages (events with explicit times), on SQLite and Postgres."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.models import AuditEvent, Media, Post, PostMedia, ReviewEvent, Verdict
from review import purge as purging
from review.auth import PermissionDenied
from review.cli import main
from review.config import Settings, load_settings
from review.decisions import claim, decide
from review.errors import ConfigError
from tests.conftest import REPO, account
from tests.test_purge import make_posts

NOW = datetime.now(UTC).replace(microsecond=0)
# (age of the decision in days, how it ends): decided, drawn for second review, escalated, waiting
AGES = [(400, "decided"), (100, "decided"), (10, "decided"), (1, "decided"), (400, "second_review"),
        (400, "escalated"), (400, "queued")]  # fmt: skip
RETAIN = {"retain_media_days": 30, "retain_text_days": 365, "retain_raw_output_days": 7}


@pytest.fixture
def aged(desk, tmp_path: Path) -> list[int]:  # type: ignore[no-untyped-def]
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


def _state(desk, post_id: int) -> tuple[bool, bool, bool, bool]:  # type: ignore[no-untyped-def]
    """(has text, has images, has raw output, is a tombstone)."""
    with desk.sessions() as session:
        post = session.get(Post, post_id)
        images = session.scalar(select(func.count()).select_from(PostMedia).where(PostMedia.post_id == post_id))
        raw = session.scalar(select(func.count(Verdict.id)).where(Verdict.post_id == post_id,
                                                                   Verdict.raw_output.is_not(None)))  # fmt: skip
        return bool(post.text), bool(images), bool(raw), post.purged_at is not None


def test_retention_erases_by_age_and_kind_on_decided_posts_only(desk, aged) -> None:  # type: ignore[no-untyped-def]
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


def _count_events(desk) -> int:  # type: ignore[no-untyped-def]
    with desk.sessions() as session:
        return session.scalar(select(func.count(ReviewEvent.id))) or 0


def test_an_image_shared_by_posts_due_for_different_kinds(desk, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
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


def test_defaults_keep_everything_and_leads_may_not_run_it(desk, aged) -> None:  # type: ignore[no-untyped-def]
    assert purging.retention_days(Settings()) == {"media": 0, "text": 0, "raw_output": 0}
    result = purging.apply_retention(desk.sessions, account(desk, "admin"), desk.settings, now=NOW)
    assert result.erased == [] and result.event_id is None
    assert all(_state(desk, i) == (True, True, True, False) for i in aged)
    with pytest.raises(PermissionDenied):
        purging.apply_retention(desk.sessions, account(desk, "lead"), desk.settings.with_overrides(**RETAIN), now=NOW)
    assert _state(desk, aged[0]) == (True, True, True, False)


def test_command_for_cron(desk, aged, tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
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

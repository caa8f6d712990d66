"""review/backup.py: backups, as an operator makes and uses them: a desk with posts, images, verdicts, decisions and
an audit trail is backed up, restored into a fresh place (a new SQLite file / a new Postgres
database, a new media folder), and every row of every table and every media file's bytes are
found again, identical. A backup taken while decisions keep being written restores whole and
consistent. Restore refuses what it must (a desk that is not empty, a damaged or unfinished
backup, one made by a newer version), Postgres' password never reaches a command line, and the
command line works end to end."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from db import schema
from db.models import AuditEvent, Base, Media, ReviewEvent, Verdict
from db.session import make_engine
from review import backup, outbox
from review.auth import PermissionDenied
from review.backup import BackupError
from review.cli import main
from review.config import Settings
from review.decisions import Label, claim, decide
from review.desk import Desk, open_desk
from review.ingest import ingest_records
from tests.conftest import PG_ENV, account
from tests.factories import queue_with

PASSWORD = "Sekr1t-not-on-any-command-line"


@pytest.fixture
def fresh(db_url: str, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes new, empty databases of the desk's kind (SQLite files, Postgres databases)."""
    made: list[str] = []
    admin = create_engine(os.environ[PG_ENV], isolation_level="AUTOCOMMIT") if db_url.startswith("postgres") else None

    def new() -> str:
        if admin is None:
            made.append("sqlite")
            return f"sqlite:///{tmp_path / f'restored-{len(made)}' / 'review.db'}"
        name = f"t_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return make_url(os.environ[PG_ENV]).set(database=name).render_as_string(hide_password=False)

    yield new
    if admin is not None:
        with admin.connect() as conn:
            for name in made:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _png(path: Path, seed: int) -> None:
    Image.new("RGB", (40 + seed, 30 + seed % 7), (seed * 37 % 256, seed * 11 % 256, 200 - seed)).save(path)


def _world(desk: Desk, folder: Path, n: int = 8, *, plain: int = 0) -> list[int]:
    """n posts with images (post 3 shares post 0's image, post 5 has two), each with a verdict and
    queued, and ``plain`` more posts without images; then a moderator confirms, overturns and
    escalates some of the first n. Returns the post ids."""
    folder.mkdir(exist_ok=True)
    records = []
    for i in range(n):
        names = [f"i{0 if i == 3 else i}.png"] + ([f"extra{i}.png"] if i == 5 else [])
        for name in names:
            _png(folder / name, i + (50 if name.startswith("extra") else 0))
        records.append({"external_id": f"p{i}", "source": "weibo", "text": f"post {i} 全网最好", "author": f"u{i}",
                        "images": names, "metadata": {"i": i}})  # fmt: skip
    records += [{"external_id": f"q{i}", "source": "x", "text": f"plain {i}"} for i in range(plain)]
    ids = ingest_records(desk.sessions, records, desk.settings, base_dir=folder).post_ids
    with desk.sessions() as session, session.begin():
        for i, post_id in enumerate(ids):
            bad = i % 2 == 0
            v = Verdict(post_id=post_id, provider="transformers", model_id="m", prompt_version="v", input_hash=f"h{i}",
                        parse_status="ok", violation=bad, category="fraud_spam" if bad else "none",
                        severity=2 if bad else 0, confidence=0.8, tags=["t"], rationale=f"why {i}",
                        parse_notes=[])  # fmt: skip
            queue_with(session, v)
    moderator = account(desk, "moderator")
    for i, post_id in enumerate(ids[:n]):
        if i >= 6:
            continue  # left in the queue
        assert claim(desk.sessions, moderator, post_id) is not None
        if i in (0, 1, 2):
            decide(desk.sessions, moderator, post_id, "confirm", note=f"ok {i}", time_spent_ms=1000 + i)
        elif i in (3, 4):
            decide(desk.sessions, moderator, post_id, "overturn", label=Label(True, "hate_harassment", 3))
        else:
            decide(desk.sessions, moderator, post_id, "escalate", note="not sure")
    return ids


def _tables(desk: Desk) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table of the data model, in primary-key order."""
    out = {}
    with desk.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = conn.execute(select(table).order_by(*table.primary_key.columns)).mappings()
            out[table.name] = [dict(r) for r in rows]
    return out


def _files(desk: Desk) -> dict[str, str]:
    """sha256 of every file named by a media row (original and thumbnail)."""
    found = {}
    with desk.sessions() as session:
        for m in session.scalars(select(Media)):
            for rel in (m.path, m.thumb_path):
                found[rel] = hashlib.sha256((desk.settings.media_dir / rel).read_bytes()).hexdigest()
            assert found[m.path] == m.sha256
    return found


def _open(url: str, media: Path) -> Desk:
    return open_desk(Settings(database_url=url, media_dir=media))


def test_a_restored_backup_holds_every_row_and_file(desk, fresh, tmp_path: Path, monkeypatch) -> None:
    postgres = desk.engine.dialect.name == "postgresql"
    if postgres:  # a password in the URL, and pg_dump / pg_restore that note how they were called
        url = make_url(desk.settings.database_url).set(password=PASSWORD).render_as_string(hide_password=False)
        desk = _open(url, desk.settings.media_dir)
        calls = _recording_pg_tools(tmp_path / "bin", monkeypatch)
    _world(desk, tmp_path / "input")
    before, files = _tables(desk), _files(desk)
    assert len(before["post"]) == 8 and len(before["review_event"]) == 6 * 2 and len(files) == 2 * 8

    made = backup.create(desk, tmp_path / "backup")
    m = made.manifest
    assert (made.missing, m["backend"], m["schema_revision"]) == (0, desk.engine.dialect.name, schema.head_revision())
    assert {k: m["counts"][k] for k in ("post", "review_event", "media")} == {"post": 8, "review_event": 12, "media": 8}
    assert m["media"]["files"] == 16 and m["media"]["bytes"] == sum(
        p.stat().st_size for p in desk.settings.media_dir.rglob("*") if p.is_file()
    )
    dump = tmp_path / "backup" / m["database"]["file"]
    assert m["database"]["sha256"] == hashlib.sha256(dump.read_bytes()).hexdigest()
    with desk.sessions() as session:  # the backup is in the source's log
        row = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert (row.action, row.subject, row.details["op"], row.details["counts"]) == (
        "backup", str(tmp_path / "backup"), "create", m["counts"])  # fmt: skip

    target_url, target_media = fresh(), tmp_path / "restored-media"
    done = backup.restore(Settings(database_url=target_url, media_dir=target_media), tmp_path / "backup")
    assert (done.missing, done.upgraded_from, done.media_files) == (0, None, 16)
    restored = _open(target_url, target_media)  # the schema is current: the app would start on it
    try:
        after = _tables(restored)
        restore_row = after["audit_event"].pop()
        assert (restore_row["action"], restore_row["details"]["op"]) == ("backup", "restore")
        # the feed's clock jumps ahead: platforms saw events from after the backup, new ones come after those
        (clock,) = after.pop("outbox_clock")
        assert clock["seq"] == before.pop("outbox_clock")[0]["seq"] + outbox.RESTORE_GAP
        assert len(before["outbox_event"]) == 6 and clock["seq"] > max(e["seq"] for e in before["outbox_event"])
        assert after == before  # every post, event, verdict, media row, label, account, audit row, outgoing event
        assert _files(restored) == files  # every file, byte for byte
        # the restored log is still append-only, and new rows get new ids
        with pytest.raises(DBAPIError, match="append-only"), restored.engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_event"))
        assert restore_row["id"] > max(r["id"] for r in before["audit_event"])
    finally:
        restored.engine.dispose()
    if postgres:
        desk.engine.dispose()
        log = calls.read_text(encoding="utf-8")
        assert "pg_dump" in log and "pg_restore" in log
        assert all(PASSWORD not in line for line in log.splitlines() if line.startswith("ARGV"))
        assert f"PGPASSWORD={PASSWORD}" in log  # it travelled in the environment
        assert PASSWORD not in (tmp_path / "backup" / "manifest.json").read_text(encoding="utf-8")
        assert PASSWORD not in json.dumps([r["details"] for r in after["audit_event"]] + [restore_row["details"]])


def _recording_pg_tools(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pg_dump and pg_restore first on PATH that write their arguments and PGPASSWORD to a log,
    then run the real ones."""
    folder.mkdir()
    log = folder / "calls.log"
    for name in ("pg_dump", "pg_restore"):
        real, _ = backup.pg_tool(name)
        script = folder / name
        script.write_text(f'#!/bin/sh\necho "ARGV {name} $*" >> {log}\necho "PGPASSWORD=$PGPASSWORD" >> {log}\n'
                          f'exec {real} "$@"\n')  # fmt: skip
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    return log


def test_a_backup_taken_while_decisions_are_written_is_consistent(desk, fresh, tmp_path: Path) -> None:
    ids = _world(desk, tmp_path / "input", plain=150)
    writer = account(desk, "lead", "busy")
    stop, errors, decided = threading.Event(), [], [0]

    def keep_deciding() -> None:
        try:
            while not stop.is_set():
                got = claim(desk.sessions, writer)
                if got is None:
                    return
                decide(desk.sessions, writer, got.post_id, "confirm", note="busy")
                decided[0] += 1
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=keep_deciding)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while decided[0] < 5 and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.01)
        at_start = decided[0]
        made = backup.create(desk, tmp_path / "backup")
        at_end = decided[0]
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not errors, errors
    assert at_start >= 5 and decided[0] > at_start  # the writer kept going around the backup

    target_url, target_media = fresh(), tmp_path / "restored-media"
    backup.restore(Settings(database_url=target_url, media_dir=target_media), tmp_path / "backup")
    restored = _open(target_url, target_media)
    try:
        with restored.engine.connect() as conn:
            counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in made.manifest["counts"]}
            counts["audit_event"] -= 1  # the restore's own row
            assert counts == made.manifest["counts"]
            if restored.engine.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA integrity_check").fetchall() == [("ok",)]
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
            # whole decisions only: a decided post has its event and its label, and nothing else does
            decided_posts = set(conn.scalars(text("SELECT id FROM post WHERE status = 'decided'")))
            confirmed = set(
                conn.scalars(text("SELECT post_id FROM review_event WHERE action IN ('confirm', 'overturn')"))
            )
            labelled = set(conn.scalars(text("SELECT post_id FROM post_label")))
            assert decided_posts == confirmed == labelled
            busy = conn.scalar(text("SELECT count(*) FROM review_event WHERE note = 'busy'"))
            assert at_start <= busy <= at_end + 1
        assert set(ids) >= decided_posts
    finally:
        restored.engine.dispose()


def test_restore_refuses_what_it_must(desk, fresh, tmp_path: Path) -> None:
    _world(desk, tmp_path / "input", n=4)
    folder = tmp_path / "backup"
    with pytest.raises(PermissionDenied):
        backup.create(desk, folder, by=account(desk, "lead"))
    assert not folder.exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(BackupError, match="not empty"):
        backup.create(desk, tmp_path / "busy")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]
    backup.create(desk, folder)
    media = tmp_path / "target-media"

    def settings(url: str, media_dir: Path = media) -> Settings:
        return Settings(database_url=url, media_dir=media_dir)

    # a desk that is not empty: never overwritten (here, the source itself)
    with pytest.raises(BackupError, match="is not empty.*a restore never overwrites a desk"):
        backup.restore(settings(desk.settings.database_url), folder)
    assert not media.exists() or not any(media.iterdir())  # refused before copying anything
    # a media folder with files: only with force, and its files are kept
    target = fresh()
    media.mkdir()
    (media / "someone-elses.jpg").write_bytes(b"x")
    with pytest.raises(BackupError, match="already holds files"):
        backup.restore(settings(target), folder)
    assert _is_empty(target)
    backup.restore(settings(target), folder, force=True)
    assert (media / "someone-elses.jpg").read_bytes() == b"x"
    # the other kind of database
    other = (
        "postgresql+psycopg://x@127.0.0.1:1/x" if desk.engine.dialect.name == "sqlite" else "sqlite:////nowhere/x.db"
    )
    with pytest.raises(BackupError, match="restore into the same kind of database"):
        backup.restore(settings(other, tmp_path / "m2"), folder)

    # damaged or unfinished backups are refused before anything is touched
    def damaged(name: str, change: Callable[[Path], None]) -> Path:
        copy = tmp_path / name
        shutil.copytree(folder, copy)
        change(copy)
        return copy

    def manifest_says(**values: Any) -> Callable[[Path], None]:
        def change(copy: Path) -> None:
            data = json.loads((copy / "manifest.json").read_text())
            data.update(values)
            (copy / "manifest.json").write_text(json.dumps(data))

        return change

    def flip_a_byte(copy: Path) -> None:
        dump = next(copy.glob("database.*"))
        data = bytearray(dump.read_bytes())
        data[len(data) // 2] ^= 1
        dump.write_bytes(bytes(data))

    cases = [
        ("no-manifest", lambda c: (c / "manifest.json").unlink(), "no manifest.json"),
        ("newer", manifest_says(schema_revision="0099"), "made by a newer version"),
        ("flipped", flip_a_byte, "does not match the sha256"),
        ("lost-file", lambda c: next(p for p in (c / "media").rglob("*.png")).unlink(), "incomplete or damaged"),
        ("odd-table", manifest_says(counts={"post; DROP TABLE post": 1}), "not a review-desk backup manifest"),
    ]
    for name, change, message in cases:
        target = fresh()
        with pytest.raises(BackupError, match=message):
            backup.restore(settings(target, tmp_path / f"m-{name}"), damaged(name, change))
        assert _is_empty(target) and not (tmp_path / f"m-{name}").exists()


def _is_empty(url: str) -> bool:
    if url.startswith("sqlite"):
        path = Path(make_url(url).database or "")
        return (
            not path.exists() or sqlite3.connect(path).execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
        )
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").scalar_one() == 0
    finally:
        engine.dispose()


def test_postgres_tools_are_found_and_a_missing_one_is_said(tmp_path: Path, monkeypatch) -> None:
    def fake(folder: Path, version: str) -> None:
        folder.mkdir(parents=True)
        script = folder / "pg_dump"
        script.write_text(f"#!/bin/sh\necho 'pg_dump (PostgreSQL) {version}'\n")
        script.chmod(0o755)

    fake(tmp_path / "path", "13.2")
    fake(tmp_path / "lib" / "14" / "bin", "14.9")
    fake(tmp_path / "lib" / "16" / "bin", "16.1 (Debian 16.1-1)")
    monkeypatch.setenv("PATH", str(tmp_path / "path"))
    monkeypatch.setattr(backup, "PG_BIN_GLOB", str(tmp_path / "lib" / "*" / "bin"))
    assert backup.pg_tool("pg_dump", 13) == (tmp_path / "path" / "pg_dump", (13, 2))  # PATH first
    assert backup.pg_tool("pg_dump", 15) == (tmp_path / "lib" / "16" / "bin" / "pg_dump", (16, 1))  # then newest
    with pytest.raises(BackupError, match=r"version 17 or newer is needed.*\(16\.1\).*postgresql-client-17"):
        backup.pg_tool("pg_dump", 17)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(backup, "PG_BIN_GLOB", str(tmp_path / "none" / "*" / "bin"))
    with pytest.raises(BackupError, match="pg_dump was not found on PATH .* install the PostgreSQL client tools"):
        backup.pg_tool("pg_dump", 15)
    conninfo, env = backup._pg_env(f"postgresql://ann:{PASSWORD}@db.example:5433/desk?sslmode=require")
    assert PASSWORD not in conninfo and env["PGPASSWORD"] == PASSWORD
    assert conninfo == "postgresql://ann@db.example:5433/desk?sslmode=require"


@pytest.mark.postgres
def test_a_postgres_backup_without_pg_dump_says_so_and_leaves_nothing(postgres_url: str, tmp_path, monkeypatch) -> None:
    engine = make_engine(postgres_url)
    schema.upgrade(engine)
    engine.dispose()
    desk = _open(postgres_url, tmp_path / "media")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(backup, "PG_BIN_GLOB", str(tmp_path / "none" / "*" / "bin"))
    try:
        with pytest.raises(BackupError, match="pg_dump was not found"):
            backup.create(desk, tmp_path / "backup")
    finally:
        desk.engine.dispose()
    assert not (tmp_path / "backup").exists()


@pytest.mark.postgres
def test_a_pg_dump_that_hangs_is_stopped_and_said_in_one_line(postgres_url: str, tmp_path, monkeypatch, capsys) -> None:
    """pg_dump past its time limit (a server that hangs, a lock that is never given) is killed and
    said in one line, exit 2, with the unfinished backup taken away; not a traceback."""
    engine = make_engine(postgres_url)
    schema.upgrade(engine)
    engine.dispose()
    tools = tmp_path / "tools"
    tools.mkdir()
    hanging = tools / "pg_dump"  # answers --version like a new pg_dump, then never finishes a dump
    hanging.write_text(
        '#!/bin/sh\n[ "$1" = --version ] && { echo "pg_dump (PostgreSQL) 99.0"; exit 0; }\nexec sleep 60\n'
    )
    hanging.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    monkeypatch.setattr(backup, "PG_TIMEOUT_S", 1)
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    monkeypatch.setenv("MEDIA_DIR", str(tmp_path / "media"))
    started = time.monotonic()
    assert main(["backup", "create", "--out", str(tmp_path / "backup"), "--quiet"]) == 2
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["error: pg_dump did not finish within 1 s and was stopped: check the server's "
                                        "load and locks, then run it again"]  # fmt: skip
    assert not (tmp_path / "backup").exists()


def test_the_command_line_backs_up_verifies_and_restores(sqlite_desk, tmp_path: Path, monkeypatch, capsys) -> None:
    _world(sqlite_desk, tmp_path / "input", n=4)
    monkeypatch.setenv("DATABASE_URL", sqlite_desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(sqlite_desk.settings.media_dir))
    folder = tmp_path / "nightly"
    assert main(["backup", "create", "--out", str(folder), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"in {folder}" in out and "4 posts, 8 review events, 3 media rows" in out and "6 media files" in out
    assert main(["backup", "verify", "--from", str(folder)]) == 0
    assert "a complete sqlite backup" in capsys.readouterr().out

    restored_db = tmp_path / "elsewhere" / "review.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{restored_db}")
    monkeypatch.setenv("MEDIA_DIR", str(tmp_path / "elsewhere" / "media"))
    assert main(["backup", "restore", "--from", str(folder), "--quiet"]) == 0
    assert "restored" in capsys.readouterr().out
    assert main(["db", "current"]) == 0  # the restored desk is ready to serve
    with open_desk().sessions() as session:
        assert len(session.scalars(select(ReviewEvent)).all()) == 8
    # once more into the same place: refused in one line, nothing changed
    assert main(["backup", "restore", "--from", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "a restore never overwrites a desk" in err and "Traceback" not in err


def test_an_older_desk_is_backed_up_before_its_upgrade_and_restored_upgraded(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """The moment to back up is before `db upgrade`: the new code backs up the old schema, and
    restoring that backup brings it to this code's schema (then writes its audit row)."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    schema.upgrade(engine, "0006")
    engine.dispose()
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("MEDIA_DIR", str(tmp_path / "media"))
    assert main(["backup", "create", "--out", str(tmp_path / "before-upgrade"), "--quiet"]) == 0
    manifest = json.loads((tmp_path / "before-upgrade" / "manifest.json").read_text())
    assert manifest["schema_revision"] == "0006" and "audit_event" not in manifest["counts"]
    capsys.readouterr()

    target = f"sqlite:///{tmp_path / 'new.db'}"
    done = backup.restore(Settings(database_url=target, media_dir=tmp_path / "media2"), tmp_path / "before-upgrade")
    assert (done.upgraded_from, done.revision) == ("0006", schema.head_revision())
    restored = _open(target, tmp_path / "media2")
    try:
        with restored.sessions() as session:
            rows = session.scalars(select(AuditEvent)).all()
        assert [(r.action, r.details["op"], r.details["upgraded_to"]) for r in rows] == [
            ("backup", "restore", schema.head_revision())
        ]
    finally:
        restored.engine.dispose()
    # a database without any schema is nothing to back up
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'blank.db'}")
    sqlite3.connect(tmp_path / "blank.db").close()
    assert main(["backup", "create", "--out", str(tmp_path / "nothing")]) == 2
    assert "no review-desk schema" in capsys.readouterr().err and not (tmp_path / "nothing").exists()

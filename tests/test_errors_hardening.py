"""The edges of issue 14 where errors and outputs leave the desk: a Postgres server that goes
away (one line from the CLI, an error box in the app, workers that wait and go on), SQL
parameters (password hashes) kept out of error messages, NUL bytes in searches and filters,
``export --out FILE`` and ``report --out`` over existing files, ``score`` with posts leased by
a dead worker, and export / report / metrics re-reading the caller's role.

The outage tests start a Postgres server of their own (scripts/pg_throwaway.sh) and stop it
mid-run; they are skipped where no Postgres server binaries are installed."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from glob import glob
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from streamlit.testing.v1 import AppTest

from db import schema
from db.models import AuditEvent, Export, Post, User, Verdict
from db.session import make_engine, outage_message, outage_reason, retry_transient
from pages._common import ACTOR
from review import auth, metrics, report
from review.auth import PermissionDenied, _hasher
from review.browse import PostFilter, list_posts
from review.cli import main
from review.config import Settings
from review.decisions import claim
from review.desk import Desk, open_desk
from review.errors import ConfigError
from review.export import ExportOptions, export, recent_exports, select_examples
from review.metrics import MetricFilter
from review.queue import QueueFilter, category_counts, queue_page
from review.scoring import Scorer
from review.signals.baseline import BaselineProvider
from tests.conftest import account
from tests.test_export import world  # noqa: F401  (the export's decided posts, on both backends)

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = str(ROOT / "dashboard.py")
PG_BINDIRS = sorted(glob("/usr/lib/postgresql/*/bin/initdb"))


# ---------------------------------------------------------------------------------------------
# A Postgres server of our own, to stop and start


class OwnPostgres:
    """A throwaway cluster from scripts/pg_throwaway.sh; ``kill`` stops it at once (as a crash
    or an outage would) and keeps its files, ``start`` brings it back on the same port."""

    def __init__(self) -> None:
        # under /tmp, not pytest's 0700 folder: the server runs as `postgres` when we are root
        self.state = Path(tempfile.mkdtemp(prefix="review-pg-"))
        self.env = {**os.environ, "PG_STATE_DIR": str(self.state)}
        done = subprocess.run(["bash", str(ROOT / "scripts/pg_throwaway.sh"), "start"], env=self.env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        if done.returncode == 3:
            pytest.skip("no Postgres server binaries")
        assert done.returncode == 0, done.stderr
        self.url = done.stdout.strip().splitlines()[-1]
        self.port = self.url.rsplit(":", 1)[1].split("/")[0]
        self.bindir = Path(PG_BINDIRS[-1]).parent

    def _ctl(self, *args: str, check: bool = True) -> int:
        command = [str(self.bindir / "pg_ctl"), "-D", str(self.state / "data"), *args]
        if os.getuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=True, timeout=120).returncode

    def kill(self) -> None:
        self._ctl("-m", "immediate", "stop")

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.state} -c fsync=off -c full_page_writes=off"
        self._ctl("-l", str(self.state / "server.log"), "-w", "-o", options, "start")

    def ensure_running(self) -> None:
        if self._ctl("status", check=False) != 0:
            self.start()

    def admin(self, sql: str) -> None:
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(sql))
        engine.dispose()

    def remove(self) -> None:
        subprocess.run(["bash", str(ROOT / "scripts/pg_throwaway.sh"), "stop"], env=self.env, timeout=120)
        shutil.rmtree(self.state, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_server() -> Iterator[OwnPostgres]:
    """One server for this file's outage tests, with a migrated template database."""
    if not PG_BINDIRS:
        pytest.skip("no Postgres server binaries")
    pg = OwnPostgres()
    try:
        pg.admin("CREATE DATABASE desk_template")
        engine = make_engine(make_url(pg.url).set(database="desk_template").render_as_string(hide_password=False))
        schema.upgrade(engine)
        engine.dispose()
        yield pg
    finally:
        pg.remove()


@pytest.fixture
def own_pg(pg_server: OwnPostgres, tmp_path: Path) -> Iterator[tuple[OwnPostgres, Desk]]:
    """A fresh migrated database on our own server (running), which the test may stop."""
    pg = pg_server
    pg.ensure_running()
    name = f"t_{uuid.uuid4().hex[:10]}"
    pg.admin(f'CREATE DATABASE "{name}" TEMPLATE desk_template')
    url = make_url(pg.url).set(database=name).render_as_string(hide_password=False)
    desk = open_desk(Settings(database_url=url, media_dir=tmp_path / "media"))
    try:
        yield pg, desk
    finally:
        desk.engine.dispose()
        pg.ensure_running()
        pg.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _unscored(desk: Desk, n: int, source: str = "weibo") -> None:
    with desk.sessions() as session, session.begin():
        session.add_all(Post(source=source, external_id=f"p{i}", text=f"post {i}") for i in range(n))


def _count(desk: Desk, model: type) -> int:
    with desk.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def _wait_for(condition, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _cli(desk_url: str, media: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": desk_url, "MEDIA_DIR": str(media), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "review", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def _one_line_outage(stderr: str, url: str) -> str:
    assert "Traceback" not in stderr and 'File "' not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    line = errors[0]
    assert f"the database {url} is unreachable (" in line
    assert line.endswith("check that it is running and reachable; everything saved before the outage is kept: "
                         "run it again once the database is back")  # fmt: skip
    return line


# ---------------------------------------------------------------------------------------------
# Postgres outages


def test_unreachable_from_the_start_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "in.jsonl").write_text('{"external_id": "1", "text": "x"}\n', encoding="utf-8")
    url = f"postgresql+psycopg://review:secret@127.0.0.1:{port}/none"
    for args in (["ingest", str(tmp_path / "in.jsonl")], ["score", "--provider", "baseline"]):
        done = _cli(url, tmp_path / "media", *args)
        _, err = done.communicate(timeout=120)
        assert done.returncode == 2, err
        assert "Traceback" not in err and "secret" not in err
        assert [line for line in err.splitlines() if line.strip()] == [err.strip()]  # one line


def test_score_when_postgres_dies_mid_run_says_one_line(own_pg) -> None:  # type: ignore[no-untyped-def]
    pg, desk = own_pg
    _unscored(desk, 3000)
    args = ["score", "--provider", "baseline", "--batch-size", "1", "--retry-seconds", "1", "--quiet"]
    run = _cli(desk.settings.database_url, desk.settings.media_dir, *args)
    _wait_for(lambda: _count(desk, Verdict) >= 3)
    desk.engine.dispose()
    pg.kill()
    _, err = run.communicate(timeout=120)
    assert run.returncode == 2, err
    _one_line_outage(err, desk.settings.database_url)
    pg.start()
    with desk.sessions() as session:  # what was saved stays saved: every verdict's post is queued
        queued = session.scalar(select(func.count(Post.id)).where(Post.status == "queued"))
        assert queued == _count(desk, Verdict) >= 3


def test_ingest_when_postgres_dies_mid_run_says_one_line(own_pg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pg, desk = own_pg
    lines = (json.dumps({"external_id": f"r{i}", "source": "weibo", "text": f"text {i}"}) for i in range(20_000))
    (tmp_path / "big.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = _cli(desk.settings.database_url, desk.settings.media_dir, "ingest", str(tmp_path / "big.jsonl"), "--quiet")
    _wait_for(lambda: _count(desk, Post) >= 200)
    desk.engine.dispose()
    pg.kill()
    _, err = run.communicate(timeout=120)
    assert run.returncode == 2, err
    _one_line_outage(err, desk.settings.database_url)


def test_scoring_worker_waits_for_the_database_and_goes_on(own_pg) -> None:  # type: ignore[no-untyped-def]
    pg, desk = own_pg
    n = 60
    _unscored(desk, n)
    watcher = make_engine(desk.settings.database_url)
    outage: dict[str, float] = {}

    def cut() -> None:
        def verdicts() -> int:
            with watcher.connect() as conn:
                return conn.execute(text("SELECT count(*) FROM verdict")).scalar_one()

        _wait_for(lambda: verdicts() >= 4)
        watcher.dispose()
        pg.kill()
        outage["down"] = time.monotonic()
        time.sleep(0.5)
        pg.start()
        outage["up"] = time.monotonic()

    thread = threading.Thread(target=cut)
    thread.start()
    scorer = Scorer(desk.sessions, desk.settings, BaselineProvider(), batch_size=1, retry_wait=60)
    stats = scorer.run()
    thread.join(timeout=60)
    assert "up" in outage, "the server was not cut during the run"
    assert stats.database_waits >= 1  # it waited …
    assert stats.scored == n and stats.leased_elsewhere == 0  # … and went on with every post
    with desk.sessions() as session:
        per_post = session.execute(select(Verdict.post_id, func.count()).group_by(Verdict.post_id)).all()
        assert len(per_post) == n and all(c == 1 for _, c in per_post)  # none lost, none twice
        assert session.scalar(select(func.count(Post.id)).where(Post.status != "queued")) == 0


def test_retry_gives_up_after_the_bounded_wait(own_pg) -> None:  # type: ignore[no-untyped-def]
    pg, desk = own_pg
    _unscored(desk, 5)
    desk.engine.dispose()
    pg.kill()
    scorer = Scorer(desk.sessions, desk.settings, BaselineProvider(), retry_wait=3)
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        scorer.run()
    elapsed = time.monotonic() - started
    assert outage_reason(info.value) is not None
    assert scorer.stats.database_waits == 2 and 2.5 < elapsed < 30  # 1 s + 2 s, then the next (4 s) would pass 3 s


def test_app_shows_an_outage_as_an_error_box(own_pg, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import streamlit as st

    pg, desk = own_pg
    st.cache_resource.clear()
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    at = AppTest.from_file(DASHBOARD, default_timeout=60)
    at.session_state[ACTOR] = account(desk, "moderator")
    at.run()  # the first run draws the sidebar with its toggles
    assert not at.exception
    desk.engine.dispose()
    pg.kill()
    at.toggle(key="pref_blur").set_value(False).run()  # a callback that writes: runs before the page
    assert not at.exception
    shown = " ".join(e.value for e in at.error) + " ".join(c.value for c in at.code)
    assert "cannot be reached" in shown and "saved before is kept" in shown
    assert "Traceback" not in shown and ".py" not in shown
    pg.start()
    at.run()  # back: the page works again
    assert not at.exception and not at.error


def test_streamlit_hides_tracebacks(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """.streamlit/config.toml, read from the repository root (where scripts/start.sh runs
    streamlit), sets client.showErrorDetails to "none": "false" would still show the trace."""
    import tomllib

    from streamlit import config

    assert tomllib.loads((ROOT / ".streamlit/config.toml").read_text())["client"]["showErrorDetails"] == "none"
    assert 'cd "$(dirname "$0")/.."' in (ROOT / "scripts/start.sh").read_text()
    monkeypatch.chdir(ROOT)
    config.get_config_options(force_reparse=True)
    assert config.get_option("client.showErrorDetails") == "none"
    script = tmp_path / "boom.py"
    script.write_text("raise RuntimeError('secret detail in /srv/review/x.py')\n", encoding="utf-8")
    at = AppTest.from_file(str(script)).run()
    assert at.exception
    shown = at.exception[0]
    assert "secret" not in shown.message and not shown.stack_trace


def test_outage_reason_tells_outages_from_other_errors(desk) -> None:  # type: ignore[no-untyped-def]
    with desk.sessions() as session, pytest.raises(Exception) as info:
        session.execute(text("SELECT * FROM no_such_table"))
    assert outage_reason(info.value) is None  # a bug, not an outage
    dead = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(Exception) as info:
        dead.connect()
    assert "Connection refused" in (outage_reason(info.value) or "")


def test_a_locked_sqlite_file_is_an_outage(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "x.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    waiter = make_engine(f"sqlite:///{path}")
    try:
        with pytest.raises(Exception) as info, waiter.connect() as conn:
            conn.exec_driver_sql("PRAGMA busy_timeout=50")
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert outage_reason(info.value) == "database is locked"
    finally:
        holder.close()
        waiter.dispose()


def test_the_outage_line_says_what_is_kept() -> None:
    line = outage_message("Connection refused", "postgresql://ann:pw-123@db.example/desk")
    assert line == (
        "the database postgresql+psycopg://ann:***@db.example/desk is unreachable (Connection refused): check that "
        "it is running and reachable; everything saved before the outage is kept: run it again once the database "
        "is back"
    )
    assert "lost" not in line


def _refused(url: str) -> ConfigError:
    engine = make_engine(url)
    try:
        with pytest.raises(ConfigError) as info:
            engine.connect()
        waits: list[float] = []
        with pytest.raises(ConfigError):  # not retried: no wait at all
            retry_transient(lambda: engine.connect().close(), sleep=waits.append)
        assert waits == []
    finally:
        engine.dispose()
    assert outage_reason(info.value) is None
    return info.value


@pytest.mark.postgres
def test_a_missing_role_or_database_is_refused_not_an_outage(postgres_url: str) -> None:
    """The server answered and said no: nothing to wait for, and not "check that it is running"."""
    base = make_url(postgres_url)
    role = _refused(base.set(username="nosuchrole").render_as_string(hide_password=False))
    assert str(role).startswith(f"the database {base.set(username='nosuchrole')} refused the connection (")
    assert 'role "nosuchrole" does not exist' in str(role) and "check the user name" in str(role)
    database = _refused(base.set(database="no_such_database_here").render_as_string(hide_password=False))
    assert 'database "no_such_database_here" does not exist' in str(database)


def test_a_wrong_password_is_said_at_once_in_one_line(pg_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A server that checks passwords (pg_hba.conf: scram-sha-256 for one role of our own server):
    a wrong password is a refusal, said in one line at once, never retried as an outage."""
    pg = pg_server
    pg.ensure_running()
    role = f"pw_{uuid.uuid4().hex[:8]}"
    pg.admin(f"CREATE ROLE {role} LOGIN PASSWORD 'the-right-one'")
    hba = pg.state / "data" / "pg_hba.conf"
    before = hba.read_text(encoding="utf-8")
    hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n{before}", encoding="utf-8")
    pg._ctl("reload")
    try:
        good = make_url(pg.url).set(username=role, password="the-right-one", database="desk_template")
        engine = make_engine(good.render_as_string(hide_password=False))
        with engine.connect() as conn:  # the right password gets in
            assert conn.exec_driver_sql("SELECT current_user").scalar_one() == role
        engine.dispose()
        bad = good.set(password="Wrong-Secret-42").render_as_string(hide_password=False)
        refused = str(_refused(bad))
        assert f'password authentication failed for user "{role}"' in refused
        assert "Wrong-Secret-42" not in refused and "DATABASE_URL" in refused
        started = time.monotonic()
        run = _cli(bad, tmp_path / "media", "score", "--provider", "baseline", "--quiet")
        _, err = run.communicate(timeout=120)
        assert run.returncode == 2 and time.monotonic() - started < 60, err  # no 120 s of retries
        assert err.strip().splitlines() == [err.strip()] and err.startswith("error: the database "), err
        assert "refused the connection" in err and "unreachable" not in err and "Wrong-Secret-42" not in err
    finally:
        hba.write_text(before, encoding="utf-8")
        pg._ctl("reload")


# ---------------------------------------------------------------------------------------------
# Secrets in error messages


def test_a_failed_insert_shows_no_parameters(desk) -> None:  # type: ignore[no-untyped-def]
    account(desk, "admin", "ann")
    secret = _hasher.hash("a password that must not leak")
    with pytest.raises(IntegrityError) as info, desk.sessions() as session, session.begin():
        session.add(User(username="ann", password_hash=secret, role="admin"))
    told = "".join(traceback.format_exception(info.value))
    assert secret not in told and "$argon2" not in told
    assert "hidden due to hide_parameters" in str(info.value)


# ---------------------------------------------------------------------------------------------
# NUL bytes in what people type


def test_nul_and_surrogates_in_searches_and_filters(desk) -> None:  # type: ignore[no-untyped-def]
    _unscored(desk, 3, source="weibo")
    with desk.sessions() as session, session.begin():
        session.execute(update(Post).values(status="queued", priority=1.0))
    mod, lead = account(desk, "moderator"), account(desk, "lead")
    with desk.sessions() as session:
        assert len(list_posts(session, PostFilter(search="po\x00st")).rows) == 3  # the NUL is dropped
        assert len(list_posts(session, PostFilter(source="wei\x00bo")).rows) == 3
        assert list_posts(session, PostFilter(search="\udcff")).rows  # an undecodable byte from argv
        assert len(queue_page(session, mod, QueueFilter(source="weibo\x00")).rows) == 3
        flt = QueueFilter(source="\x00", category="x\x00", model_id="\x00", prompt_version="\udcff")
        assert queue_page(session, mod, flt).rows == []
        assert category_counts(session, mod, QueueFilter(source="weibo\x00")) == {None: 3}
        report.build(session, lead, MetricFilter(source="we\x00ibo", model_id="\udcff"))
    assert claim(desk.sessions, mod, flt=QueueFilter(source="wei\x00bo")) is not None


# ---------------------------------------------------------------------------------------------
# Output folders


def _env(monkeypatch, desk) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))


def test_export_into_a_file_is_refused_in_one_line(sqlite_desk, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    _env(monkeypatch, sqlite_desk)
    target = tmp_path / "a-file"
    target.write_text("keep me", encoding="utf-8")
    assert main(["export", "--format", "swift", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"error: {target} is a file, not a folder: export into a new folder"]
    assert target.read_text(encoding="utf-8") == "keep me"


def test_report_out_refuses_to_overwrite_unless_forced(sqlite_desk, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    _env(monkeypatch, sqlite_desk)
    out = tmp_path / "report"
    assert main(["report", "--out", str(out), "--section", "accuracy"]) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "accuracy.csv").write_text("an earlier report", encoding="utf-8")
    capsys.readouterr()
    assert main(["report", "--out", str(out), "--section", "accuracy"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds accuracy.csv" in err[0] and "--force" in err[0]
    assert (out / "accuracy.csv").read_text(encoding="utf-8") == "an earlier report"  # nothing replaced
    assert sorted(p.name for p in out.iterdir()) == sorted(first)  # nothing added either
    assert main(["report", "--out", str(out), "--section", "accuracy", "--force"]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert oct((out / "accuracy.csv").stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert main(["report", "--format", "json", "--out", str(out / "accuracy.csv")]) == 2  # a file, not a folder
    assert "is a file, not a folder" in capsys.readouterr().err


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_files_appear_whole_by_the_umask_and_replace_only_when_told(tmp_path: Path) -> None:
    """review.files, under every file the desk keeps (media store, backups, reports, the audit
    export): the umask's permissions, no leftover on failure, no replacing where refused, a link
    in the way replaced and not followed."""
    from review import files
    from review.media import prepare_image, write_image

    mode = oct(0o666 & ~_umask())
    target = tmp_path / "out" / "a.txt"
    target.parent.mkdir()
    files.write_text(target, "first\r\n")
    assert target.read_bytes() == b"first\r\n" and oct(target.stat().st_mode & 0o777) == mode
    with pytest.raises(RuntimeError), files.written_beside(target) as fh:
        fh.write(b"half")
        raise RuntimeError("interrupted")
    with pytest.raises(FileExistsError):
        files.write_bytes(target, b"second", overwrite=False)
    assert target.read_bytes() == b"first\r\n"  # neither the failed write nor the refused one touched it
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("keep", encoding="utf-8")
    link = target.parent / "link.txt"
    link.symlink_to(elsewhere)
    with pytest.raises(FileExistsError):
        files.write_bytes(link, b"x", overwrite=False)
    files.write_bytes(link, b"replaced")
    assert not link.is_symlink() and link.read_bytes() == b"replaced" and elsewhere.read_text() == "keep"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt", "link.txt"]  # no temporary file left
    # the media store's files too (tempfile.mkstemp made them 0600)
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 10, 10)).save(buffer, "PNG")
    stored = write_image(prepare_image(buffer.getvalue(), max_pixels=10**6, thumbnail_size=64), tmp_path / "media")
    for rel in (stored.path, stored.thumb_path):
        assert oct((tmp_path / "media" / rel).stat().st_mode & 0o777) == mode


# ---------------------------------------------------------------------------------------------
# score and leases held by a dead worker


def test_score_says_when_posts_stay_leased_by_another_worker(sqlite_desk, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    desk = sqlite_desk
    _unscored(desk, 6)
    until = datetime.now(UTC) + timedelta(minutes=9)
    with desk.sessions() as session, session.begin():
        ids = session.scalars(select(Post.id).order_by(Post.id)).all()
        session.execute(  # a worker that died with two posts; another whose lease already ran out
            update(Post).where(Post.id.in_(ids[:2])).values(score_lease_owner="dead:1", score_lease_expires_at=until)
        )
        session.execute(
            update(Post)
            .where(Post.id == ids[2])
            .values(score_lease_owner="dead:2", score_lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    _env(monkeypatch, desk)
    assert main(["score", "--provider", "baseline", "--quiet"]) == 1
    said = capsys.readouterr()
    assert "4 scored" in said.out  # the expired lease was taken over
    (line,) = [x for x in said.err.splitlines() if x.startswith("error:")]
    assert "2 posts are still leased by another scoring worker" in line
    assert f"{until:%Y-%m-%d %H:%M:%S} UTC" in line
    with desk.sessions() as session, session.begin():
        session.execute(update(Post).where(Post.id.in_(ids[:2])).values(score_lease_expires_at=datetime.now(UTC)))
    assert main(["score", "--provider", "baseline", "--quiet"]) == 0  # once the leases ended


# ---------------------------------------------------------------------------------------------
# The role as stored, not as the caller says


def test_report_and_metrics_reread_the_role(sqlite_desk) -> None:  # type: ignore[no-untyped-def]
    desk = sqlite_desk
    lead = account(desk, "lead")
    with desk.sessions() as session:
        report.build(session, lead, MetricFilter())  # allowed while a lead
    auth.set_role(desk.sessions, "lead", "moderator", by=auth.OPERATOR)  # demoted after sign-in
    with desk.sessions() as session:
        with pytest.raises(PermissionDenied):
            report.build(session, lead, MetricFilter())
        for call in (metrics.accuracy, metrics.agreement, metrics.operations, metrics.filter_options):
            with pytest.raises(PermissionDenied):
                call(session, lead) if call is metrics.filter_options else call(session, lead, MetricFilter())
        with pytest.raises(PermissionDenied):
            metrics.breakdown(session, lead, MetricFilter(), "day")


def test_export_rereads_the_role_and_is_audited(desk, world, tmp_path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    lead = account(desk, "lead")
    result = export(desk.sessions, lead, desk.settings, ExportOptions(format="swift"), tmp_path / "out")
    with desk.sessions() as session:
        row = session.get(Export, result.export_id)
        (event,) = session.scalars(select(AuditEvent).where(AuditEvent.action == "export")).all()
        assert event.actor_id == lead.id and event.subject == f"export {row.id}"
        assert event.details["format"] == "swift" and event.details["folder"] == str(result.out)
        assert event.details["examples"] == result.manifest["examples"] == row.counts["examples"]
        assert event.created_at is not None
    auth.set_role(desk.sessions, "lead", "moderator", by=auth.OPERATOR)
    with pytest.raises(PermissionDenied):
        export(desk.sessions, lead, desk.settings, ExportOptions(format="swift"), tmp_path / "again")
    assert not (tmp_path / "again").exists()
    with desk.sessions() as session:
        with pytest.raises(PermissionDenied):
            select_examples(session, lead, ExportOptions(format="swift"))
        with pytest.raises(PermissionDenied):
            recent_exports(session, lead)
        assert session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "export")) == 1

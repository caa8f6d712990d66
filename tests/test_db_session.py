"""db/session.py: helpers that work on both databases, and outages: telling an outage from a bug
or a refusal, the one line that says so, bounded retries that wait for the database and go on,
and SQL parameters (password hashes) kept out of error messages. Some tests run a Postgres
server of their own (tests/own_postgres.py) and stop it mid-run."""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from db.models import Post, User, Verdict
from db.session import make_engine, outage_message, outage_reason, retry_transient, rows_changed, writing
from review.auth import _hasher
from review.desk import Desk
from review.errors import ConfigError
from review.inference.baseline import BaselineProvider
from review.scoring import Scorer
from tests.conftest import account, start_cli, unscored_posts, wait_for


def test_rows_changed_counts_the_rows_an_update_or_delete_changed(desk: Desk) -> None:
    account(desk, "moderator", "ann")
    account(desk, "moderator", "bob")
    with writing(desk.sessions) as session:
        both = update(User).where(User.username.in_(["ann", "bob"])).values(active=False)
        assert rows_changed(session, both) == 2
        assert rows_changed(session, update(User).where(User.username == "nobody").values(active=False)) == 0
        assert rows_changed(session, delete(User).where(User.username == "bob")) == 1


def test_outage_reason_tells_outages_from_other_errors(desk) -> None:
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


def test_a_wrong_password_is_said_at_once_in_one_line(pg_server, tmp_path: Path) -> None:
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
        run = start_cli(bad, tmp_path / "media", "score", "--provider", "baseline", "--quiet")
        _, err = run.communicate(timeout=120)
        assert run.returncode == 2 and time.monotonic() - started < 60, err  # no 120 s of retries
        assert err.strip().splitlines() == [err.strip()] and err.startswith("error: the database "), err
        assert "refused the connection" in err and "unreachable" not in err and "Wrong-Secret-42" not in err
    finally:
        hba.write_text(before, encoding="utf-8")
        pg._ctl("reload")


def test_scoring_worker_waits_for_the_database_and_goes_on(own_pg) -> None:
    pg, desk = own_pg
    n = 60
    unscored_posts(desk, n)
    watcher = make_engine(desk.settings.database_url)
    outage: dict[str, float] = {}

    def cut() -> None:
        def verdicts() -> int:
            with watcher.connect() as conn:
                return conn.execute(text("SELECT count(*) FROM verdict")).scalar_one()

        wait_for(lambda: verdicts() >= 4)
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


def test_retry_gives_up_after_the_bounded_wait(own_pg) -> None:
    pg, desk = own_pg
    unscored_posts(desk, 5)
    desk.engine.dispose()
    pg.kill()
    scorer = Scorer(desk.sessions, desk.settings, BaselineProvider(), retry_wait=3)
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        scorer.run()
    elapsed = time.monotonic() - started
    assert outage_reason(info.value) is not None
    assert scorer.stats.database_waits == 2 and 2.5 < elapsed < 30  # 1 s + 2 s, then the next (4 s) would pass 3 s


def test_a_failed_insert_shows_no_parameters(desk) -> None:
    account(desk, "admin", "ann")
    secret = _hasher.hash("a password that must not leak")
    with pytest.raises(IntegrityError) as info, desk.sessions() as session, session.begin():
        session.add(User(username="ann", password_hash=secret, role="admin"))
    told = "".join(traceback.format_exception(info.value))
    assert secret not in told and "$argon2" not in told
    assert "hidden due to hide_parameters" in str(info.value)

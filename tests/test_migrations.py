"""The schema (db/schema.py, db/migrations/): migrations up and down on SQLite and Postgres, with a
review history in place (0005), backfills, models == migrations, refusal of an out-of-date schema
by the CLI and the app, SQLite pragmas, UTC timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db import schema
from db.models import Base, Post, User
from db.session import make_engine, normalise_url
from review.auth import Actor, Preferences, preferences
from review.cli import main
from review.desk import open_desk
from review.errors import ConfigError, DatabaseUnavailable, MigrationRefused, SchemaOutOfDate

TABLES = {
    "app_user",
    "post",
    "media",
    "post_media",
    "signal",
    "verdict",
    "review_event",
    "export",
    "finetune_run",
    "post_label",
}


def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        schema.upgrade(engine)
        assert set(inspect(engine).get_table_names()) >= TABLES
        assert schema.current_revision(engine) == schema.head_revision()

        schema.downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) & TABLES == set()
        assert schema.current_revision(engine) is None

        schema.upgrade(engine)
        assert set(inspect(engine).get_table_names()) >= TABLES
        schema.require_current(engine)
    finally:
        engine.dispose()


def test_signal_columns_step_down_and_up(db_url: str) -> None:
    """0003 adds the near-duplicate columns to media and takes them away again."""
    engine = make_engine(db_url)
    added = {"content_phash", "corner_phashes", "colour_signature", "dup_cluster"}
    try:
        schema.upgrade(engine)
        assert added <= {c["name"] for c in inspect(engine).get_columns("media")}
        schema.downgrade(engine, "0002")
        assert not added & {c["name"] for c in inspect(engine).get_columns("media")}
        assert "ix_media_dup_cluster" not in {i["name"] for i in inspect(engine).get_indexes("media")}
        schema.upgrade(engine)
        assert "ix_media_dup_cluster" in {i["name"] for i in inspect(engine).get_indexes("media")}
    finally:
        engine.dispose()


def test_models_match_migrations(db_url: str) -> None:
    """Every model change must come with a migration: autogenerate finds nothing to do."""
    engine = make_engine(db_url)
    try:
        schema.upgrade(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        # Autogenerate cannot compare an index with a DESC column (it approximates the model's
        # side and sees a different index); the queue indexes are checked by definition below.
        assert [d for d in diff if not _is_queue_index(d)] == []
    finally:
        engine.dispose()


def _is_queue_index(change) -> bool:
    return change[0] in ("add_index", "remove_index") and change[1].name.startswith("ix_post_queue")


def test_current_verdict_is_backfilled(db_url: str) -> None:
    """0004 points each post at its latest verdict and copies a usable one's category."""
    engine = make_engine(db_url)
    now = "2026-11-23 10:00:00"
    try:
        schema.upgrade(engine, "0003")
        with engine.begin() as conn:
            for pid in (1, 2, 3):
                conn.exec_driver_sql(
                    "INSERT INTO post (id, source, external_id, text, ingested_at, metadata, status, priority, "
                    f"updated_at) VALUES ({pid}, 's', 'e{pid}', 't', '{now}', '{{}}', 'queued', 0, '{now}')"
                )
            rows = [(1, 1, "ok", "fraud_spam", True), (2, 1, "ok", "sexual", True), (3, 2, "failed", None, None)]
            for vid, pid, status, category, violation in rows:
                conn.exec_driver_sql(
                    "INSERT INTO verdict (id, post_id, created_at, provider, model_id, prompt_version, input_hash, "
                    "cache_hit, tags, parse_status, category, violation) VALUES "
                    f"({vid}, {pid}, '{now}', 'p', 'm', 'v', 'h{vid}', false, '[]', '{status}', "
                    f"{repr(category) if category else 'NULL'}, {'true' if violation else 'NULL'})"
                )
        schema.upgrade(engine)
        with engine.connect() as conn:
            got = conn.exec_driver_sql(
                "SELECT id, verdict_id, verdict_category, verdict_violation FROM post ORDER BY id"
            ).all()
        assert [tuple(r) for r in got] == [(1, 2, "sexual", True), (2, 3, None, None), (3, None, None, None)]
    finally:
        engine.dispose()


def test_post_label_is_backfilled_by_the_rule(db_url: str) -> None:
    """0006 fills post_label from the events already there, as review.labels would: the latest
    confirm / overturn of each settled post, its UTC day, raters, and the verdict on screen."""
    from sqlalchemy.orm import Session

    from db.models import PostLabel, ReviewEvent, Verdict
    from review import labels

    engine = make_engine(db_url)
    late = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)  # late in the UTC day: the day is the 23rd everywhere
    try:
        schema.upgrade(engine, "0005")
        with Session(engine) as session, session.begin():
            statuses = ["decided", "second_review", "queued", "decided"]  # the queued one was reopened
            for pid, status in enumerate(statuses, start=1):
                session.execute(  # the table as it was at 0005 (the model has columns from later revisions)
                    insert(Post.__table__).values(id=pid, source="s", external_id=f"e{pid}", text="t", status=status)
                )
            session.flush()
            for vid, (pid, parse, category) in enumerate([(1, "ok", "fraud_spam"), (2, "ok", None), (3, "ok", None),
                                                           (4, "failed", None)], start=1):  # fmt: skip
                session.execute(insert(Verdict.__table__).values(  # as at 0005 (no model_precision, from 0011)
                    id=vid, post_id=pid, provider="p", model_id="m", prompt_version="v", input_hash=f"h{vid}",
                    parse_status=parse, violation=category is not None, category=category, confidence=0.8, tags=[],
                    parse_notes=[]))  # fmt: skip
            session.flush()
            events = [
                (1, "confirm", "fraud_spam", 0, None),
                (1, "overturn", None, 5, None),
                (2, "confirm", None, 0, None),
                (2, "overturn", "sexual", 9, None),  # its second review, undone below: it no longer counts
                (2, "reopen", None, 10, "undo of event 4 (overturn)"),
                (3, "overturn", "sexual", 0, None),
                (4, "overturn", "sexual", 0, None),
            ]
            for eid, (pid, action, category, minutes, note) in enumerate(events, start=1):
                at = late + timedelta(minutes=minutes)
                labelled = action != "reopen"
                session.execute(  # the table as it was at 0005 (the model has columns from later revisions)
                    insert(ReviewEvent.__table__).values(
                        id=eid, post_id=pid, action=action, verdict_id=pid, created_at=at, note=note,
                        label_violation=category is not None if labelled else None,
                        label_category=(category or "none") if labelled else None,
                    )
                )  # fmt: skip
        schema.upgrade(engine)
        with Session(engine) as session:
            got = {r.post_id: r for r in session.scalars(select(PostLabel))}
            expected = session.execute(labels.label_rows(engine.dialect.name)).all()
        assert set(got) == {1, 2, 4} == {row[0] for row in expected}  # the reopened post is out
        for row in expected:
            mine = got[row[0]]
            assert tuple(getattr(mine, c) for c in labels.COLUMNS) == tuple(row)
        assert (got[1].human_category, got[1].model_category, got[1].decided_day) == (
            "none",
            "fraud_spam",
            "2026-11-23",
        )
        assert (got[4].usable, got[4].model_category, got[4].human_category) == (False, None, "sexual")
        assert (got[2].event_id, got[2].human_category) == (3, "none")  # the undone second review does not count
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT undoes_id FROM review_event WHERE id = 5").scalar() == 4
    finally:
        engine.dispose()


def _post_sql(pid: int, status: str, now: str = "2026-12-06 10:00:00") -> str:
    return (
        "INSERT INTO post (id, source, external_id, text, ingested_at, metadata, status, priority, updated_at) "
        f"VALUES ({pid}, 's', 'e{pid}', 't', '{now}', '{{}}', '{status}', 0, '{now}')"
    )


def _event_sql(eid: int, pid: int, action: str, before: str | None = None, undoes: int | None = None) -> str:
    status_before = f"'{before}'" if before else "NULL"
    return (
        "INSERT INTO review_event (id, post_id, action, created_at, status_before, second_review, undoes_id) "
        f"VALUES ({eid}, {pid}, '{action}', '2026-12-06 10:{eid:02d}:00', {status_before}, "
        f"{'true' if before == 'second_review' else 'false'}, {undoes or 'NULL'})"
    )


SIGNAL_SQL = (
    "INSERT INTO signal (post_id, kind, value, producer, producer_version, created_at) "
    "VALUES ({post_id}, 'lang', '{{}}', 't', '1', '2026-12-06 10:00:00')"
)


def test_dead_values_refuse_the_upgrade_and_are_refused_after_it(db_url: str) -> None:
    """0008 drops the status in_review and the actions comment and bulk from the checks, and the
    per-post signal column (signals are per image); a database holding such rows (the desk never
    wrote them) is refused with what to look at, unchanged."""
    from sqlalchemy.exc import IntegrityError

    engine = make_engine(db_url)
    try:
        schema.upgrade(engine, "0007")
        with engine.begin() as conn:
            conn.exec_driver_sql(_post_sql(1, "in_review"))
            conn.exec_driver_sql(_event_sql(1, 1, "comment"))
            conn.exec_driver_sql(SIGNAL_SQL.format(post_id=1))
        with pytest.raises(
            MigrationRefused,
            match="1 rows with post.status 'in_review', 1 rows with review_event.*, 1 rows with signal.post_id",
        ):
            schema.upgrade(engine)
        assert schema.current_revision(engine) == "0007"
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM review_event")
            conn.exec_driver_sql("DELETE FROM signal")
            conn.exec_driver_sql("UPDATE post SET status = 'queued'")
        schema.upgrade(engine)
        assert "post_id" not in {c["name"] for c in inspect(engine).get_columns("signal")}
        for statement in (_post_sql(2, "in_review"), _event_sql(2, 1, "bulk"), _event_sql(3, 1, "comment")):
            with pytest.raises(IntegrityError), engine.begin() as conn:
                conn.exec_driver_sql(statement)
        schema.downgrade(engine, "0007")  # the old checks again: the old values are allowed
        with engine.begin() as conn:
            conn.exec_driver_sql(_post_sql(2, "in_review"))
            conn.exec_driver_sql(_event_sql(2, 1, "bulk"))
        assert "to_second_review" not in {c["name"] for c in inspect(engine).get_columns("review_event")}
        with engine.begin() as conn:
            conn.exec_driver_sql(SIGNAL_SQL.format(post_id=2))  # a per-post signal, as 0001 allowed
    finally:
        engine.dispose()


def test_to_second_review_is_backfilled_so_the_table_replays_the_status(db_url: str) -> None:
    """0008 marks the decisions that sent their post to a (further) second review, read from what
    followed them; folding review.status's table over each post's events gives its status."""
    from sqlalchemy.orm import Session

    from db.models import ReviewEvent
    from review.status import move_of, replay

    engine = make_engine(db_url)
    try:
        schema.upgrade(engine, "0007")
        with engine.begin() as conn:
            for pid, status in enumerate(["second_review", "decided", "decided", "queued", "second_review"], 1):
                conn.exec_driver_sql(_post_sql(pid, status))
            for statement in (
                _event_sql(1, 1, "confirm", "queued"),  # drawn: waits for its second review
                _event_sql(2, 2, "confirm", "queued"),  # drawn, and checked by a second review
                _event_sql(3, 2, "overturn", "second_review"),
                _event_sql(4, 3, "overturn", "queued"),  # settled at once
                _event_sql(5, 4, "confirm", "queued"),  # drawn, then undone
                _event_sql(6, 4, "reopen", None, 5),
                _event_sql(7, 4, "skip", "queued"),
                _event_sql(8, 5, "confirm", "queued"),  # drawn; the second reviewer wants a third label
                _event_sql(9, 5, "confirm", "second_review"),
            ):
                conn.exec_driver_sql(statement)
        schema.upgrade(engine)
        with Session(engine) as session:
            stored = session.scalars(select(ReviewEvent).order_by(ReviewEvent.id)).all()
            statuses = dict(session.execute(select(Post.id, Post.status)).all())
        assert [e.id for e in stored if e.to_second_review] == [1, 2, 8, 9]
        by_id = {e.id: e for e in stored}
        for pid, status in statuses.items():
            moves = [move_of(e, by_id.get(e.undoes_id or 0)) for e in stored if e.post_id == pid]
            assert replay(moves, start="queued") == status, pid
    finally:
        engine.dispose()


def _queue_index_sql(engine, name: str = "ix_post_queue") -> str:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return conn.exec_driver_sql(f"SELECT sql FROM sqlite_master WHERE name = '{name}'").scalar()
        return conn.exec_driver_sql(f"SELECT indexdef FROM pg_indexes WHERE indexname = '{name}'").scalar()


def test_a_rebuilt_table_gets_its_planner_statistics_back(tmp_path: Path) -> None:
    """SQLite drops a table's ANALYZE statistics when a migration rebuilds it (0008 rebuilds post,
    review_event and signal); without them the metrics' agreement query took 2.4 s instead of
    1.5 s at a million decisions. A database that had statistics has them after the upgrade and
    the downgrade; one that never had them is left without."""
    analysed = make_engine(f"sqlite:///{tmp_path / 'analysed.db'}")
    never = make_engine(f"sqlite:///{tmp_path / 'never.db'}")

    def stats(engine: Engine) -> set[str]:
        with engine.connect() as conn:
            if conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first() is None:
                return set()
            return {row[0] for row in conn.exec_driver_sql("SELECT DISTINCT tbl FROM sqlite_stat1")}

    try:
        for engine in (analysed, never):
            schema.upgrade(engine, "0007")
            with engine.begin() as conn:
                for pid in range(1, 4):
                    conn.exec_driver_sql(_post_sql(pid, "queued"))
                    conn.exec_driver_sql(_event_sql(pid, pid, "claim"))
        with analysed.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        assert {"post", "review_event"} <= stats(analysed)
        schema.upgrade(analysed)
        schema.upgrade(never)
        assert {"post", "review_event"} <= stats(analysed)
        assert stats(never) == set()
        schema.downgrade(analysed, "0007")
        assert {"post", "review_event"} <= stats(analysed)
    finally:
        analysed.dispose()
        never.dispose()


def test_queue_index_sorts_priority_descending(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        schema.upgrade(engine)
        for name, middle in (("ix_post_queue", ""), ("ix_post_queue_category", "verdict_category"),
                             ("ix_post_queue_violation", "verdict_violation")):  # fmt: skip
            sql = _queue_index_sql(engine, name)
            columns = sql[sql.rindex("(") + 1 :].rstrip(")").replace('"', "")
            assert [c.strip() for c in columns.split(",")] == ["status", *([middle] if middle else []),
                                                               "priority DESC", "id"], sql  # fmt: skip
        schema.downgrade(engine, "0003")
        sql = _queue_index_sql(engine)
        assert "DESC" not in sql
    finally:
        engine.dispose()


# --------------------------------------------------------------------------------------------
# Migration 0005: the second-review status, preferences, the claim index; a review history kept


def _columns(engine, table: str) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns(table)}


def _indexes(engine, table: str) -> set[str]:
    return {i["name"] for i in inspect(engine).get_indexes(table)}


def test_migration_0005_down_and_up(db_url: str) -> None:
    """The status, the columns and the index step down and up; a second review becomes decided.
    (No row refers to a user here: see the two tests below for a desk with a review history.)"""
    engine = make_engine(db_url)
    try:
        schema.upgrade(engine)
        indexes = _indexes(engine, "post")
        assert {"ix_post_claimed_by_id", "ix_post_queue"} <= indexes
        with Session(engine) as session, session.begin():
            ann = User(username="ann", role="moderator", preferences={"greyscale": True})
            session.add(ann)
            posts = [
                Post(source="m", external_id="a", text="in second review", status="second_review", priority=1.8),
                Post(source="m", external_id="b", text="queued", status="queued", priority=0.9),
                Post(source="m", external_id="c", text="decided", status="decided"),
            ]
            session.add_all(posts)
            session.flush()
            ids = [post.id for post in posts]
            user_id = ann.id
        with Session(engine) as session:
            assert session.get(Post, ids[0]).status == "second_review"
            assert preferences(session, Actor(user_id, "ann", "moderator")) == Preferences(greyscale=True)

        schema.downgrade(engine, "0004")
        assert schema.current_revision(engine) == "0004"
        assert "first_decider_id" not in _columns(engine, "post")
        assert "preferences" not in _columns(engine, "app_user")
        assert _indexes(engine, "post") == indexes - {"ix_post_claimed_by_id"}
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT id, status, priority, text FROM post ORDER BY id").all()
            users = conn.exec_driver_sql("SELECT username FROM app_user").scalars().all()
        assert [tuple(r) for r in rows] == [
            (ids[0], "decided", 1.8, "in second review"),
            (ids[1], "queued", 0.9, "queued"),
            (ids[2], "decided", 0.0, "decided"),
        ]
        assert users == ["ann"]
        # 0004 knows no second_review status
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE post SET status = 'second_review' WHERE id = {ids[1]}")

        schema.upgrade(engine)
        schema.require_current(engine)
        assert "first_decider_id" in _columns(engine, "post") and "preferences" in _columns(engine, "app_user")
        assert _indexes(engine, "post") == indexes
        assert "DESC" in _queue_index_sql(engine).upper()
        with Session(engine) as session, session.begin():
            assert [session.get(Post, i).status for i in ids] == ["decided", "queued", "decided"]
            assert preferences(session, Actor(user_id, "ann", "moderator")) == Preferences()  # back to defaults
            session.get(Post, ids[1]).status = "second_review"  # allowed again
            session.get(Post, ids[1]).first_decider_id = user_id
        with Session(engine) as session:
            assert session.get(Post, ids[1]).status == "second_review"
    finally:
        engine.dispose()


HISTORY_TABLES = ("app_user", "post", "media", "post_media", "signal", "verdict", "review_event")


NOW = "2026-11-23 10:00:00"


def _history_rows(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar() for t in HISTORY_TABLES}


def _insert_history(engine, *, second_review: bool) -> None:
    """A reviewed post as a desk has them: a user, the post (claimed by them), an image with a
    signal, a verdict and a decision. Plain SQL, so that it works at 0004 and at 0005."""
    extra_cols, extra_vals = (", first_decider_id", ", 1") if second_review else ("", "")
    status = "second_review" if second_review else "decided"
    with engine.begin() as conn:
        for sql in (
            "INSERT INTO app_user (id, username, role, active, created_at, failed_logins) "
            f"VALUES (1, 'ann', 'moderator', true, '{NOW}', 0)",
            "INSERT INTO post (id, source, external_id, text, ingested_at, metadata, status, priority, updated_at, "
            f"claimed_by_id{extra_cols}) VALUES (1, 's', 'e1', 't', '{NOW}', '{{}}', '{status}', 0, '{NOW}', 1"
            f"{extra_vals})",
            "INSERT INTO media (id, sha256, path, thumb_path, mime, width, height, frames, size_bytes, phash, "
            f"created_at) VALUES (1, 'abc', 'p.png', 't.jpg', 'image/png', 1, 1, 1, 1, '0', '{NOW}')",
            "INSERT INTO post_media (post_id, position, media_id) VALUES (1, 0, 1)",
            "INSERT INTO signal (id, post_id, media_id, kind, value, producer, producer_version, created_at) "
            f"VALUES (1, 1, 1, 'ocr', '{{}}', 'x', '1', '{NOW}')",
            "INSERT INTO verdict (id, post_id, created_at, provider, model_id, prompt_version, input_hash, cache_hit, "
            f"tags, parse_status, parse_notes) VALUES (1, 1, '{NOW}', 'p', 'm', 'v', 'h', false, '[]', 'ok', '[]')",
            "INSERT INTO review_event (id, post_id, user_id, action, created_at, second_review) "
            f"VALUES (1, 1, 1, 'confirm', '{NOW}', false)",
        ):
            conn.exec_driver_sql(sql)


def test_upgrade_to_0005_keeps_the_review_history(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        schema.upgrade(engine, "0004")
        _insert_history(engine, second_review=False)
        before = _history_rows(engine)
        assert set(before.values()) == {1}
        schema.upgrade(engine, "0005")
        assert schema.current_revision(engine) == "0005"
        assert _history_rows(engine) == before
    finally:
        engine.dispose()


def test_downgrade_from_0005_keeps_the_review_history(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        schema.upgrade(engine, "0005")
        _insert_history(engine, second_review=True)
        before = _history_rows(engine)
        schema.downgrade(engine, "0004")
        assert schema.current_revision(engine) == "0004"
        assert _history_rows(engine) == before
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT status FROM post").scalar() == "decided"
    finally:
        engine.dispose()


def test_unique_source_external_id_enforced(desk) -> None:
    from sqlalchemy.exc import IntegrityError

    with desk.sessions() as session:
        session.add(Post(source="s", external_id="1"))
        session.commit()
        session.add(Post(source="s", external_id="1"))
        with pytest.raises(IntegrityError):
            session.commit()


def test_timestamps_come_back_aware_utc(desk) -> None:
    beijing = timezone(timedelta(hours=8))
    with desk.sessions() as session:
        session.add(Post(source="s", external_id="t", created_at=datetime(2026, 5, 1, 20, 0, tzinfo=beijing)))
        session.commit()
    with desk.sessions() as session:
        post = session.scalars(select(Post)).one()
        assert post.created_at == datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
        assert post.created_at.tzinfo is not None
        assert post.ingested_at.tzinfo is not None


def test_naive_timestamp_is_refused(sqlite_desk) -> None:
    from sqlalchemy.exc import StatementError

    with sqlite_desk.sessions() as session:
        session.add(Post(source="s", external_id="n", created_at=datetime(2026, 5, 1, 12, 0)))
        with pytest.raises(StatementError, match="naive datetime"):
            session.commit()


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'x.db'}")  # parent folder is created
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    engine.dispose()


def test_require_current_on_empty_database(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(SchemaOutOfDate, match="python -m review db upgrade"):
        schema.require_current(engine)
    with pytest.raises(SchemaOutOfDate):
        open_desk(_settings(tmp_path / "empty.db"))


def test_require_current_behind_and_ahead(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        schema.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed'"))
        with pytest.raises(SchemaOutOfDate, match="newer version"):
            schema.require_current(engine)
    finally:
        engine.dispose()


def test_unreachable_postgres_is_a_clear_error() -> None:
    engine = make_engine("postgresql://nobody:secret@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(DatabaseUnavailable) as info:
        schema.require_current(engine)
    message = str(info.value)
    assert "127.0.0.1:1" in message and "DATABASE_URL" in message
    assert "secret" not in message  # passwords never reach messages


def test_url_normalisation_and_refusals() -> None:
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    with pytest.raises(ConfigError, match="psycopg"):
        make_engine("postgresql+psycopg2://u@h/db")
    with pytest.raises(ConfigError, match="unsupported"):
        make_engine("mysql+pymysql://u@h/db")


def _settings(db_file: Path):
    from review.config import Settings

    return Settings(database_url=f"sqlite:///{db_file}", media_dir=db_file.parent / "media")


def test_cli_db_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REVIEW_CONFIG", raising=False)

    # Any command on an unmigrated database: one line that says what to run, exit 2.
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "python -m review db upgrade" in err and "Traceback" not in err

    assert main(["db", "current"]) == 1
    assert "out of date" in capsys.readouterr().out

    assert main(["db", "upgrade"]) == 0
    assert schema.head_revision() in capsys.readouterr().out
    assert (tmp_path / "data" / "review.db").is_file()  # the default lives under ./data/

    assert main(["db", "current"]) == 0
    assert "up to date" in capsys.readouterr().out

    assert main(["db", "downgrade", "base"]) == 0
    assert "base" in capsys.readouterr().out
    assert main(["db", "current"]) == 1

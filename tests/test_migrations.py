"""Schema: migrations up and down on SQLite and Postgres, models == migrations, refusal of an
out-of-date schema by the CLI and the app, SQLite pragmas, UTC timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select, text

from db import schema
from db.models import Base, Post
from db.session import make_engine, normalise_url
from review.cli import main
from review.desk import open_desk
from review.errors import ConfigError, DatabaseUnavailable, SchemaOutOfDate

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


def _is_queue_index(change) -> bool:  # type: ignore[no-untyped-def]
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
                session.add(Verdict(id=vid, post_id=pid, provider="p", model_id="m", prompt_version="v",
                                    input_hash=f"h{vid}", parse_status=parse, violation=category is not None,
                                    category=category, confidence=0.8, tags=[], parse_notes=[]))  # fmt: skip
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


def _queue_index_sql(engine, name: str = "ix_post_queue") -> str:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return conn.exec_driver_sql(f"SELECT sql FROM sqlite_master WHERE name = '{name}'").scalar()
        return conn.exec_driver_sql(f"SELECT indexdef FROM pg_indexes WHERE indexname = '{name}'").scalar()


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


def test_unique_source_external_id_enforced(desk) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy.exc import IntegrityError

    with desk.sessions() as session:
        session.add(Post(source="s", external_id="1"))
        session.commit()
        session.add(Post(source="s", external_id="1"))
        with pytest.raises(IntegrityError):
            session.commit()


def test_timestamps_come_back_aware_utc(desk) -> None:  # type: ignore[no-untyped-def]
    beijing = timezone(timedelta(hours=8))
    with desk.sessions() as session:
        session.add(Post(source="s", external_id="t", created_at=datetime(2026, 5, 1, 20, 0, tzinfo=beijing)))
        session.commit()
    with desk.sessions() as session:
        post = session.scalars(select(Post)).one()
        assert post.created_at == datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
        assert post.created_at.tzinfo is not None
        assert post.ingested_at.tzinfo is not None


def test_naive_timestamp_is_refused(sqlite_desk) -> None:  # type: ignore[no-untyped-def]
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


def _settings(db_file: Path):  # type: ignore[no-untyped-def]
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

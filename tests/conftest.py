"""Shared fixtures: databases (SQLite and, when available, Postgres), settings, a migrated desk.

Postgres tests use REVIEW_TEST_POSTGRES_URL (scripts/test.sh starts a throwaway server). Without
it they are skipped locally and fail in CI (CI=true), so CI can never pass by skipping them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from db import schema
from db.session import make_engine
from review.config import Settings
from review.desk import Desk, open_desk

REPO = Path(__file__).resolve().parents[1]
PG_ENV = "REVIEW_TEST_POSTGRES_URL"


def _require_postgres() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} is not set in CI: the Postgres tests must run")
        pytest.skip(f"no Postgres: set {PG_ENV} or install the postgresql server package")
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty Postgres database for one test, dropped afterwards."""
    admin_url = _require_postgres()
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs twice: on a SQLite file and on a Postgres database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'review.db'}"
    return request.getfixturevalue("postgres_url")


def _desk(url: str, media_dir: Path) -> Iterator[Desk]:
    settings = Settings(database_url=url, media_dir=media_dir)
    engine = make_engine(url)
    schema.upgrade(engine)
    engine.dispose()
    desk = open_desk(settings)
    try:
        yield desk
    finally:
        desk.engine.dispose()


@pytest.fixture
def desk(db_url: str, tmp_path: Path) -> Iterator[Desk]:
    """A migrated database (SQLite and Postgres) with an empty media store."""
    yield from _desk(db_url, tmp_path / "media")


@pytest.fixture
def sqlite_desk(tmp_path: Path) -> Iterator[Desk]:
    """A migrated SQLite database, for tests whose subject is not the database."""
    yield from _desk(f"sqlite:///{tmp_path / 'review.db'}", tmp_path / "media")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen3-VL saved to disk once per test run (tests/tiny_model.py)."""
    from tests.tiny_model import build_tiny_qwen3_vl

    return build_tiny_qwen3_vl(tmp_path_factory.mktemp("tiny-qwen3-vl"))


@pytest.fixture(scope="session")
def tiny_qwen2_5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2.5-VL, the previous generation the providers also load."""
    from tests.tiny_model import build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny-qwen2_5-vl"))


ACCOUNT_PASSWORD = "correct horse battery staple"


PASSWORD = "correct horse battery"


def people(desk: Desk):  # type: ignore[no-untyped-def]
    """The decision tests' cast, with passwords: an admin, moderators ann and bob, lead lea."""
    from review.auth import create_user

    admin = create_user(desk.sessions, "admin", PASSWORD, "admin", by=None)
    cast = {"admin": admin}
    for name, role in (("ann", "moderator"), ("bob", "moderator"), ("lea", "lead")):
        cast[name] = create_user(desk.sessions, name, PASSWORD, role, by=admin)
    return cast


def account(desk: Desk, role: str, name: str | None = None):  # type: ignore[no-untyped-def]
    """The Actor of a user with ``role`` (named after the role unless ``name``), created on
    first use; the desk's first account is an admin as the desk requires."""
    from sqlalchemy import select

    from db.models import User
    from review.auth import OPERATOR, active_actor, create_user, user_count

    name = name or role
    with desk.sessions() as session:
        found = session.scalar(select(User.id).where(User.username == name))
        if found is not None:
            return active_actor(session, found)
        first = user_count(session) == 0
    if first and role != "admin":
        create_user(desk.sessions, "first-admin", ACCOUNT_PASSWORD, "admin", by=None)
    return create_user(desk.sessions, name, ACCOUNT_PASSWORD, role, by=None if first and role == "admin" else OPERATOR)

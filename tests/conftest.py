"""Shared fixtures and factories: databases (SQLite and, when available, Postgres), settings, a
migrated desk, the cast of accounts, and the small builders and readers that several test modules
use (images, JSONL, ingest runs, stored posts, audit and review events, the command line in this
process or a child, the app under AppTest), a Postgres server of our own to stop and start
(tests/own_postgres.py), and the ``world`` fixture over the decided posts of tests/factories.py.

Postgres tests use REVIEW_TEST_POSTGRES_URL (scripts/test.sh starts a throwaway server). Without
it they are skipped locally and fail in CI (CI=true), so CI can never pass by skipping them.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import selectinload

from db import schema
from db.models import AuditEvent, Post, PostMedia, ReviewEvent
from db.session import make_engine
from review.config import Settings
from review.desk import Desk, open_desk
from review.ingest import IngestReport, ingest_paths
from tests.own_postgres import PG_BINDIRS, OwnPostgres

REPO = Path(__file__).resolve().parents[1]
PG_ENV = "REVIEW_TEST_POSTGRES_URL"
# The model's plumbing tests compare outputs token for token (a shared prefix against the full
# prompt, a cached answer against a fresh one): float32 on every machine, whatever "auto" would
# pick on this CPU (bfloat16 rounds the two ways apart). The precision tests choose their own.
os.environ["MODEL_DTYPE"] = "float32"


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


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated to head once per run, which each SQLite desk starts as a copy
    of (a copy takes 2 ms, the migrations 0.3 s; they are tested on fresh databases in
    tests/test_migrations.py). Postgres desks are migrated each time: a copy from a template
    database costs more there than the migrations."""
    path = tmp_path_factory.mktemp("migrated") / "review.db"
    engine = make_engine(f"sqlite:///{path}")
    schema.upgrade(engine)
    engine.dispose()
    return path


def _desk(url: str, media_dir: Path, migrated: Path | None = None) -> Iterator[Desk]:
    """A desk on ``url``, migrated to head: for SQLite, a copy of ``migrated`` when given."""
    settings = Settings(database_url=url, media_dir=media_dir)
    target = make_url(url)
    if migrated is not None and target.get_backend_name() == "sqlite" and target.database:
        with closing(sqlite3.connect(migrated)) as source, closing(sqlite3.connect(target.database)) as copy:
            source.backup(copy)
    else:
        engine = make_engine(url)
        schema.upgrade(engine)
        engine.dispose()
    desk = open_desk(settings)
    try:
        yield desk
    finally:
        desk.engine.dispose()


@pytest.fixture
def desk(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Desk]:
    """A migrated database (SQLite and Postgres) with an empty media store."""
    migrated = request.getfixturevalue("migrated_sqlite") if db_url.startswith("sqlite") else None
    yield from _desk(db_url, tmp_path / "media", migrated)


@pytest.fixture
def sqlite_desk(tmp_path: Path, migrated_sqlite: Path) -> Iterator[Desk]:
    """A migrated SQLite database, for tests whose subject is not the database."""
    yield from _desk(f"sqlite:///{tmp_path / 'review.db'}", tmp_path / "media", migrated_sqlite)


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


def people(desk: Desk):
    """The decision tests' cast, with passwords: an admin, moderators ann and bob, lead lea."""
    from review.auth import create_user

    admin = create_user(desk.sessions, "admin", PASSWORD, "admin", by=None)
    cast = {"admin": admin}
    for name, role in (("ann", "moderator"), ("bob", "moderator"), ("lea", "lead")):
        cast[name] = create_user(desk.sessions, name, PASSWORD, role, by=admin)
    return cast


def account(desk: Desk, role: str, name: str | None = None):
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


# --------------------------------------------------------------------------------------------
# Inputs: images and JSONL, as files or bytes


def make_image(path: Path, seed: int = 0, size: tuple[int, int] = (24, 16), fmt: str | None = None) -> Path:
    """A small solid-colour image; a different seed gives different bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = ((seed * 53 + 17) % 256, (seed * 97 + 29) % 256, (seed * 151 + 41) % 256)
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path


def solid_image(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> Path:
    """A 40×30 image of one ``colour``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), colour).save(path)
    return path


def png_bytes(seed: int, size: tuple[int, int] = (48, 32)) -> bytes:
    """A PNG of one colour as bytes (an upload, a zip member); a different seed gives different bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (seed * 37 % 256, seed * 91 % 256, 120)).save(buffer, "PNG")
    return buffer.getvalue()


def ad_image() -> Image.Image:
    """An 800×500 ad drawn with Pillow: Chinese and English lines, one on a red banner."""
    from review.demo.drawings import cjk_font

    image = Image.new("RGB", (800, 500), (250, 245, 235))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 800, 110), fill=(200, 30, 40))
    draw.text((40, 25), "全网最低价 限时抢购", font=cjk_font(56), fill="white")
    draw.text((40, 170), "Only ¥99 today", font=cjk_font(48), fill=(20, 20, 20))
    draw.text((40, 270), "加微信 shop8888 领红包", font=cjk_font(44), fill=(20, 20, 20))
    draw.text((40, 380), "Free shipping worldwide", font=cjk_font(40), fill=(60, 60, 60))
    return image


def write_jsonl(path: Path, rows: Iterable[dict[str, Any] | str]) -> Path:
    """One JSON object per line; a str row is written as-is (for malformed lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")
    return path


def jsonl_bytes(*records: dict[str, Any]) -> bytes:
    """The records as a UTF-8 JSONL file's bytes (an upload)."""
    return ("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n").encode("utf-8")


def write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


GBK_CSV = (
    "external_id,text,author\n"  # 1
    "g1,你好，世界！这是一条测试帖子。,张三\n"  # 2
    'g2,"多行\n文本：第二行",李四\n'  # 3-4
    "g3,缺一列\n"  # 5: too few fields
)
BIG5 = "external_id,text\nb1,臺灣的新聞\nb2,颱風警報\n"


def crashing_paths(folder: Path) -> Path:
    """A JSONL whose records 2 and 3 name images whose paths raise RuntimeError in pathlib."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ok.png").write_bytes(png_bytes(1))
    (folder / "loop").mkdir()
    os.symlink("b", folder / "loop" / "a")
    os.symlink("a", folder / "loop" / "b")
    path = folder / "posts.jsonl"
    path.write_bytes(
        jsonl_bytes(
            {"external_id": "good1", "text": "kept", "images": ["ok.png"]},
            {"external_id": "tilde", "images": ["~nosuchuser/a.jpg"]},
            {"external_id": "loop", "images": ["loop/a"]},
            {"external_id": "good2", "text": "kept too"},
        )
    )
    return path


# --------------------------------------------------------------------------------------------
# Ingest runs and what they stored


def ingest_files(desk: Desk, *paths: Path, **kwargs: Any) -> IngestReport:
    """``ingest_paths`` on the desk, as ``python -m review ingest PATHS`` runs it."""
    return ingest_paths(desk.sessions, list(paths), desk.settings, **kwargs)


def rejections(report: IngestReport) -> dict[str, str]:
    """location → reason."""
    return {r.location: r.reason for r in report.rejected}


def row_count(desk: Desk, model: type) -> int:
    """How many rows of ``model`` the database holds."""
    with desk.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def stored_posts(desk: Desk) -> dict[str, Post]:
    """external_id → Post, with media links and media loaded."""
    with desk.sessions() as session:
        posts = session.scalars(
            select(Post).options(selectinload(Post.media_links).selectinload(PostMedia.media)).order_by(Post.id)
        ).all()
    return {p.external_id: p for p in posts}


def audit_rows(desk: Desk, action: str | None = None) -> list[AuditEvent]:
    """The audit log, oldest first; only ``action``'s rows when given."""
    with desk.sessions() as session:
        query = select(AuditEvent).order_by(AuditEvent.id)
        if action is not None:
            query = query.where(AuditEvent.action == action)
        return list(session.scalars(query))


def review_events(desk: Desk, action: str | None = None) -> list[ReviewEvent]:
    """The review events, oldest first; only ``action``'s when given."""
    with desk.sessions() as session:
        query = select(ReviewEvent).order_by(ReviewEvent.id)
        if action:
            query = query.where(ReviewEvent.action == action)
        return list(session.scalars(query))


def post_status(desk: Desk, post_id: int) -> str:
    """The post's status now ("" when there is no such post)."""
    with desk.sessions() as session:
        return session.scalar(select(Post.status).where(Post.id == post_id)) or ""


# --------------------------------------------------------------------------------------------
# The command line, the app, servers

# Settings a test's command line must not take from the environment it runs in: it tests the defaults.
CLI_SETTINGS = ("REVIEW_CONFIG", "MAX_IMAGE_PIXELS", "MAX_IMAGE_BYTES", "MAX_TEXT_CHARS", "THUMBNAIL_SIZE")


def point_cli_at(monkeypatch: pytest.MonkeyPatch, desk: Desk, cwd: Path) -> None:
    """Make ``main([...])`` in this process use ``desk`` with default limits, run from ``cwd``."""
    for var in CLI_SETTINGS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    monkeypatch.chdir(cwd)


@pytest.fixture
def cli(desk: Desk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Desk:
    """`main([...])` in this process on the desk (SQLite and Postgres), run from tmp_path."""
    point_cli_at(monkeypatch, desk, tmp_path)
    return desk


@pytest.fixture
def sqlite_cli(sqlite_desk: Desk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Desk:
    """`main([...])` in this process on the migrated SQLite desk, run from tmp_path."""
    point_cli_at(monkeypatch, sqlite_desk, tmp_path)
    return sqlite_desk


def subprocess_env(desk: Desk) -> dict[str, str]:
    """The environment for ``python -m review`` in a child process on ``desk``, with default limits."""
    return _cli_env(desk.settings.database_url, desk.settings.media_dir)


def _cli_env(database_url: str, media_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLI_SETTINGS}
    env.update(DATABASE_URL=database_url, MEDIA_DIR=str(media_dir), PYTHONPATH=str(REPO))
    return env


def start_cli(database_url: str, media_dir: Path, *args: str) -> subprocess.Popen[str]:
    """``python -m review ARGS`` started in a child process on any database URL (one that may be
    down or refuse us), from the repository root; read its output with ``communicate()``."""
    return subprocess.Popen([sys.executable, "-m", "review", *args], cwd=REPO, env=_cli_env(database_url, media_dir),
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


DASHBOARD = str(REPO / "dashboard.py")


def signed_in_as(at: Any, desk: Desk, actor: Any) -> Any:
    """``at`` (an AppTest, before its run) signed in as ``actor``, as the sign-in page does it:
    a sign-in session (review.websession) held by the app's session state."""
    from pages._common import WEB_SESSION
    from review import websession

    at.session_state[WEB_SESSION] = websession.start(desk.sessions, actor, desk.settings).session_id
    return at


def open_page(monkeypatch: pytest.MonkeyPatch, desk: Desk, actor: Any, page: str, timeout: float = 60) -> Any:
    """The app (an ``AppTest``) on ``page`` of this test's desk, signed in as ``actor``, after its first run."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_resource.clear()  # the app's desk is cached per process: open this test's database
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    at = AppTest.from_file(DASHBOARD, default_timeout=timeout)
    signed_in_as(at, desk, actor)
    at.switch_page(page)
    return at.run()


def open_app(monkeypatch: pytest.MonkeyPatch, desk: Desk, role: str | None, page: str | None = None,
             name: str | None = None, **env: str) -> Any:  # fmt: skip
    """The app (an ``AppTest``) on this test's desk after its first run: signed in as ``account(desk,
    role, name)`` or signed out (``role`` None), on ``page`` or the role's first page, with ``env``
    set. It keeps the cached desk, so that two sessions share it: use it under ``fresh_caches``."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(DASHBOARD, default_timeout=60)
    if role is not None:
        signed_in_as(at, desk, account(desk, role, name))
    if page is not None:
        at.switch_page(page)
    return at.run()


def held_post(at: Any) -> int | None:
    """The post the app's review session holds a claim on (None: none)."""
    from pages._common import REVIEW

    state = at.session_state[REVIEW] if REVIEW in at.session_state else None  # noqa: SIM401 (no .get)
    return None if state is None or state.claim is None else state.claim.post_id


def picked_labels(at: Any, prefix: str) -> list[str]:
    """The label picker's buttons that stand out as chosen (a category or a severity)."""
    picker = (f"{prefix}_pick_", f"{prefix}_severity_")
    return [b.key for b in at.button if b.key and b.key.startswith(picker) and b.proto.type == "primary"]


def focus_target(at: Any) -> str | None:
    """The container the page's focus script aims at (None: no script on the page)."""
    bodies = [e.value for e in at.get("html")]
    aims = [c for body in bodies for c in re.findall(r"\.st-key-(\w+) ", body)]
    return aims[-1] if aims else None


@pytest.fixture
def fresh_caches() -> None:
    """Streamlit's caches cleared: the app's desk is cached per process and each test has its own
    database (``pytestmark = pytest.mark.usefixtures("fresh_caches")`` in an AppTest module)."""
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hex hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def umask() -> int:
    """This process's umask: the permissions the desk's files must get are ``0o666 & ~umask()``."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def unscored_posts(desk: Desk, n: int, source: str = "weibo") -> None:
    """``n`` text posts p0 … p{n-1} from ``source``, not scored yet."""
    with desk.sessions() as session, session.begin():
        session.add_all(Post(source=source, external_id=f"p{i}", text=f"post {i}") for i in range(n))


# --------------------------------------------------------------------------------------------
# A Postgres server of our own, to stop and start (tests/own_postgres.py)


@pytest.fixture(scope="module")
def pg_server() -> Iterator[OwnPostgres]:
    """One server for a test module's outage tests, with a migrated template database."""
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


# --------------------------------------------------------------------------------------------
# Decided posts (tests/factories.py)


@pytest.fixture
def world(desk: Desk, tmp_path: Path) -> list[int]:
    """The export's decided posts (``factories.EXPORT_POSTS``), on SQLite and Postgres; their ids."""
    from tests.factories import export_world

    return export_world(desk, tmp_path)

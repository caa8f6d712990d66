"""Backups of the desk: the database and the media store in one folder, and back again.

``python -m review backup create --out DIR`` writes::

    DIR/database.sqlite3   SQLite: a copy made with sqlite3's online backup API
    DIR/database.dump      Postgres: pg_dump --format=custom
    DIR/media/…            the media store's files (originals and thumbnails), as stored
    DIR/manifest.json      written last: a folder without it is an unfinished backup

The copy is consistent while the app, the CLI and workers keep writing. On SQLite the backup
API copies the whole database in one step inside one read transaction (WAL lets writers go on
meanwhile). On Postgres a REPEATABLE READ transaction exports its snapshot, the counts of the
manifest are read in it and ``pg_dump --snapshot`` dumps exactly that state. The database is
copied first and the media files after it: files are written to the content-addressed store
before the rows that name them are committed, so every media row of the copy has its file in
the folder; files added meanwhile come along too and are harmless (``python -m review media gc``
removes unused ones). Every media row of the copy is then checked against the folder.

``python -m review backup restore --from DIR`` checks the folder first (manifest, the dump's
sha256, the media files' count and bytes, a schema revision this code knows), then copies the
media files into MEDIA_DIR and only then the database into DATABASE_URL, checks the restored
counts against the manifest (and SQLite's integrity), upgrades an older schema to this code's
and writes an audit row into the restored desk. It never overwrites a database: the target must
hold no tables (a new SQLite file, a new Postgres database). A media folder that already holds
files is refused too unless ``--force``: the store is content-addressed, so the files kept there
cannot clash with the backup's, but they may belong to another desk (or to erased posts).

Postgres' command-line tools are looked for on PATH, then in /usr/lib/postgresql/*/bin (the
newest first); one older than the server is not used. The password travels in the PGPASSWORD
environment variable of the child process, never on a command line or in a message.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

from db import schema
from db.session import make_engine, make_session_factory, normalise_url, safe_url, writing
from review import audit, outbox
from review.auth import OPERATOR, Actor, Permission, require, require_live
from review.config import Settings
from review.desk import Desk
from review.errors import ReviewError
from review.files import TEMP_PREFIX, write_text, written_beside

FORMAT = 1
KIND = "review-desk backup"
MANIFEST = "manifest.json"
SQLITE_FILE = "database.sqlite3"
POSTGRES_FILE = "database.dump"
MEDIA = "media"
COUNTED = ("post", "review_event", "media", "verdict", "app_user", "audit_event", "post_report", "outbox_event")
COUNT_NAMES = {"post": "posts", "review_event": "review events", "media": "media rows", "verdict": "verdicts",
               "app_user": "accounts", "audit_event": "audit events"}  # fmt: skip
SHOWN_MISSING = 20  # media paths listed in the manifest when files are missing
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
PG_TIMEOUT_S = 24 * 3600


def describe(counts: dict[str, int]) -> str:
    """The manifest's counts in words: "8 posts, 12 review events, …"."""
    return ", ".join(f"{n} {COUNT_NAMES.get(table, table)}" for table, n in counts.items())


class BackupError(ReviewError):
    """A backup or restore that cannot be made, said in one line."""


Progress = Callable[[str, int], None]  # (stage, files done)


@dataclass(frozen=True)
class BackupResult:
    folder: Path
    manifest: dict[str, Any]

    @property
    def missing(self) -> int:
        return int(self.manifest["media"]["missing"])


@dataclass(frozen=True)
class RestoreResult:
    manifest: dict[str, Any]
    revision: str  # the restored database's revision, after any upgrade
    upgraded_from: str | None  # the backup's revision when it was older than this code's
    media_files: int  # files copied into MEDIA_DIR (files already there are not counted)
    missing: int = 0  # files named by media rows and absent from MEDIA_DIR
    missing_shown: list[str] = field(default_factory=list)  # the first few of them


# ---------------------------------------------------------------------------------------------
# Files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _media_files(root: Path) -> Iterator[tuple[Path, str]]:
    """The store's regular files (path, relative name with '/'), not its ``.tmp-*`` leftovers
    of interrupted writes, not links."""
    if not root.is_dir():
        return
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        base = Path(folder)
        for name in sorted(files):
            path = base / name
            if name.startswith(TEMP_PREFIX) or path.is_symlink() or not path.is_file():
                continue
            yield path, path.relative_to(root).as_posix()


def _copy_file(src: Path, dst: Path) -> None:
    """Copy through a temporary name beside ``dst`` (``review.files``), then rename: an
    interrupted copy leaves no file that looks whole."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with written_beside(dst) as out, src.open("rb") as inp:
        shutil.copyfileobj(inp, out, 1 << 20)


def _copy_media(src: Path, dst: Path, progress: Progress | None, stage: str) -> tuple[int, int]:
    """Copy the store's files from ``src`` to ``dst``; a file already there with the same size is
    kept (content-addressed names). Returns (files copied, bytes copied)."""
    files = size = 0
    for path, rel in _media_files(src):
        target = dst / rel
        n = path.stat().st_size
        if target.is_file() and not target.is_symlink() and target.stat().st_size == n:
            continue
        _copy_file(path, target)
        files += 1
        size += n
        if progress is not None and files % 100 == 0:
            progress(stage, files)
    if progress is not None:
        progress(stage, files)
    return files, size


def _tally(root: Path) -> tuple[int, int]:
    files = size = 0
    for path, _rel in _media_files(root):
        files += 1
        size += path.stat().st_size
    return files, size


def _missing(root: Path, rows: Iterable[tuple[str, str]]) -> tuple[int, list[str]]:
    """How many files named by the media rows are absent under ``root``, and the first few."""
    count = 0
    shown: list[str] = []
    for row in rows:
        for rel in row:
            if rel and not (root / rel).is_file():
                count += 1
                if len(shown) < SHOWN_MISSING:
                    shown.append(rel)
    return count, shown


def _new_folder(out: Path) -> bool:
    """Make sure ``out`` is a new or empty folder; whether it was created here."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise BackupError(f"{out} is not a folder: give a new or empty folder")
    if out.is_dir():
        if any(out.iterdir()):
            raise BackupError(f"{out} is not empty: give a new or empty folder (a backup never mixes with files)")
        return False
    try:
        out.mkdir(parents=True)
    except OSError as exc:
        raise BackupError(f"cannot create {out}: {exc.strerror or exc}") from None
    return True


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------------
# Postgres tools


def _version(binary: Path) -> tuple[int, ...]:
    try:
        done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return ()
    found = re.search(r"(\d+)(?:\.(\d+))?", done.stdout)
    return tuple(int(g) for g in found.groups() if g is not None) if found else ()


def pg_tool(name: str, server_major: int | None = None) -> tuple[Path, tuple[int, ...]]:
    """``pg_dump`` or ``pg_restore``: the one on PATH, else the newest in /usr/lib/postgresql/*/bin;
    never one older than ``server_major`` (it would refuse the server, or the dump)."""
    candidates: list[Path] = []
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    installed = [Path(folder) / name for folder in Path("/").glob(PG_BIN_GLOB.lstrip("/"))]
    candidates += sorted((p for p in installed if p.is_file()), key=_version, reverse=True)
    seen: list[str] = []
    for binary in candidates:
        version = _version(binary)
        if not version:
            continue
        if server_major is None or version[0] >= server_major:
            return binary, version
        seen.append(f"{binary} ({'.'.join(map(str, version))})")
    if not candidates:
        raise BackupError(
            f"{name} was not found on PATH or in {PG_BIN_GLOB}: install the PostgreSQL client tools "
            "(Debian/Ubuntu: apt install postgresql-client) or put their folder on PATH"
        )
    need = f"version {server_major} or newer" if server_major else "a working one"
    raise BackupError(
        f"{name}: {need} is needed for this server; found only {', '.join(seen) or 'none that runs'}. "
        f"Install postgresql-client-{server_major} or put a newer one first on PATH"
    )


def _pg_env(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection string without the password, and the environment for the child
    process with the password in PGPASSWORD."""
    parsed = make_url(normalise_url(url))
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    env.setdefault("PGCONNECT_TIMEOUT", "15")
    # URL.set(password=None) would keep the password (None means "unchanged"): build it anew
    bare = URL.create("postgresql", username=parsed.username, host=parsed.host, port=parsed.port,
                      database=parsed.database, query=parsed.query)  # fmt: skip
    conninfo = bare.render_as_string(hide_password=False)
    return conninfo, env


def _run_pg(args: list[str], env: dict[str, str], what: str) -> None:
    try:
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=PG_TIMEOUT_S, check=False)
    except OSError as exc:
        raise BackupError(f"cannot run {args[0]}: {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:  # subprocess.run has killed it
        raise BackupError(
            f"{what} did not finish within {_duration(PG_TIMEOUT_S)} and was stopped: check the server's load and "
            "locks, then run it again"
        ) from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()][-4:]
        raise BackupError(f"{what} failed (exit {done.returncode}): {' | '.join(lines) or 'no message'}")


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds // 3600:.0f} h"
    return f"{seconds:g} s"


def _server_major(conn: Connection) -> int:
    return int(conn.exec_driver_sql("SHOW server_version_num").scalar_one()) // 10000


# ---------------------------------------------------------------------------------------------
# Dumps: each yields while its snapshot is still readable, for the media check


@dataclass
class Dumped:
    file: Path
    revision: str | None
    counts: dict[str, int]
    media_rows: Callable[[], Iterable[tuple[str, str]]]  # (path, thumb_path) of every media row
    tool: str | None = None


def _counts(execute: Callable[[str], Any], tables: Iterable[str] = COUNTED) -> dict[str, int]:
    return {table: int(execute(f"SELECT count(*) FROM {table}")) for table in tables if table in COUNTED}


def _sqlite_path(url: str) -> Path:
    database = make_url(normalise_url(url)).database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BackupError("backups need a SQLite database in a file (sqlite:///path/review.db)")
    return Path(database).expanduser()


def _sqlite_connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    uri = f"file:{quote(str(path.resolve()))}" + ("?mode=ro" if read_only else "")
    conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
    return conn


@contextmanager
def _dump_sqlite(url: str, out: Path, tables: list[str]) -> Iterator[Dumped]:
    path = _sqlite_path(url)
    if not path.is_file():
        raise BackupError(f"no SQLite database at {path}")
    target = out / SQLITE_FILE
    with closing(sqlite3.connect(target, isolation_level=None)) as dst:
        # Opened read-write (a read-only connection cannot open a WAL database whose -shm file is
        # missing, or create it) and made a reader by query_only: it can write nothing.
        with closing(_sqlite_connect(path, read_only=False)) as src:
            src.execute("PRAGMA query_only=ON")
            src.execute("PRAGMA busy_timeout=30000")
            src.backup(dst)  # pages=-1: all of it in one step, in one read transaction
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        check = dst.execute("PRAGMA integrity_check").fetchall()
        if check != [("ok",)]:
            raise BackupError(f"the copy fails SQLite's integrity check: {check[:3]}")
        revision = dst.execute("SELECT version_num FROM alembic_version").fetchone()
        counts = _counts(lambda sql: dst.execute(sql).fetchone()[0], tables)

        def rows() -> Iterator[tuple[str, str]]:
            yield from dst.execute("SELECT path, thumb_path FROM media")

        yield Dumped(target, revision[0] if revision else None, counts, rows, f"sqlite {sqlite3.sqlite_version}")


@contextmanager
def _dump_postgres(desk: Desk, out: Path, tables: list[str]) -> Iterator[Dumped]:
    target = out / POSTGRES_FILE
    with desk.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            snapshot = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()  # fixes the snapshot
            binary, version = pg_tool("pg_dump", _server_major(conn))
            revision = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
            counts = _counts(lambda sql: conn.exec_driver_sql(sql).scalar_one(), tables)
            conninfo, env = _pg_env(desk.settings.database_url)
            args = [str(binary), "--format=custom", f"--snapshot={snapshot}", f"--file={target}"]
            _run_pg([*args, f"--dbname={conninfo}"], env, "pg_dump")

            def rows() -> Iterator[tuple[str, str]]:
                result = conn.execution_options(yield_per=2000).execute(text("SELECT path, thumb_path FROM media"))
                for row in result:
                    yield row[0], row[1]

            yield Dumped(target, revision, counts, rows, f"pg_dump {'.'.join(map(str, version))}")


# ---------------------------------------------------------------------------------------------
# Create


def create(desk: Desk, out: Path, *, by: Actor = OPERATOR, progress: Progress | None = None) -> BackupResult:
    """Back the desk up into the new or empty folder ``out`` (see the module's docstring). A desk
    whose schema is older than this code's can be backed up too (before ``db upgrade``)."""
    with desk.sessions() as session:
        require_live(session, by, Permission.PURGE)
    check_revision(schema.current_revision(desk.engine))
    backend = desk.engine.dialect.name
    present = set(inspect(desk.engine).get_table_names())
    tables = [t for t in COUNTED if t in present]
    created = _new_folder(out)
    started = datetime.now(UTC)
    try:
        if backend == "sqlite":
            dump = _dump_sqlite(desk.settings.database_url, out, tables)
        else:
            dump = _dump_postgres(desk, out, tables)
        with dump as dumped:
            if progress is not None:
                progress("database", 1)
            media = out / MEDIA
            media.mkdir()
            files, size = _copy_media(desk.settings.media_dir, media, progress, "media")
            missing, shown = _missing(media, dumped.media_rows())
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "kind": KIND,
            "created_at": started.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "backend": backend,
            "schema_revision": dumped.revision,
            "source": safe_url(desk.settings.database_url),
            "media_dir": str(desk.settings.media_dir),
            "by": by.username,
            "database": {
                "file": dumped.file.name,
                "bytes": dumped.file.stat().st_size,
                "sha256": _sha256(dumped.file),
                "tool": dumped.tool,
            },
            "counts": dumped.counts,
            "media": {"folder": MEDIA, "files": files, "bytes": size, "missing": missing, "missing_shown": shown},
        }
        _write_json(out / MANIFEST, manifest)
    except BaseException:
        _clean(out, created)
        raise
    if "audit_event" in present:  # (a schema older than 0007 has no audit log yet)
        audit.log(desk.sessions, by, audit.Action.BACKUP, str(out), op="create", backend=backend,
                  revision=dumped.revision, counts=dumped.counts, media_files=files, media_bytes=size,
                  missing_media=missing, sha256=manifest["database"]["sha256"])  # fmt: skip
    return BackupResult(out, manifest)


def _clean(out: Path, created: bool) -> None:
    """Take away an unfinished backup (the folder was new or empty: everything in it is ours)."""
    if created:
        shutil.rmtree(out, ignore_errors=True)
        return
    for child in out.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Restore


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a finished backup, checked for what restore relies on."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise BackupError(f"no backup folder {folder}")
    if not path.is_file():
        raise BackupError(f"{folder} holds no {MANIFEST}: not a backup, or one that did not finish")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        ok = manifest.get("kind") == KIND and isinstance(manifest.get("counts"), dict)
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise BackupError(f"{path} is not a review-desk backup manifest")
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: backup format {manifest.get('format')!r}; this code reads format {FORMAT}")
    if not set(manifest["counts"]) <= set(COUNTED) or manifest.get("backend") not in ("sqlite", "postgresql"):
        raise BackupError(f"{path} is not a review-desk backup manifest")
    return manifest


def check_revision(revision: str | None) -> None:
    """Refuse a schema this code does not know (made by a newer version), or none at all."""
    if revision is None:
        raise BackupError("no review-desk schema in the database (no revision): nothing to back up or restore")
    known = {rev.revision for rev in ScriptDirectory(str(schema.MIGRATIONS_DIR)).walk_revisions()}
    if revision not in known:
        raise BackupError(
            f"the backup's schema revision {revision!r} is unknown to this code (its newest is "
            f"{schema.head_revision()}): it was made by a newer version of the review desk; restore it with that"
        )


def verify(folder: Path) -> dict[str, Any]:
    """Check a backup folder without restoring it: manifest, revision, the dump's sha256 and the
    media files' count and bytes. Returns the manifest."""
    manifest = read_manifest(folder)
    check_revision(manifest.get("schema_revision"))
    db = manifest["database"]
    dump = folder / db["file"]
    if db["file"] not in (SQLITE_FILE, POSTGRES_FILE) or not dump.is_file():
        raise BackupError(f"the backup's database file {dump} is missing")
    if _sha256(dump) != db["sha256"]:
        raise BackupError(f"{dump} does not match the sha256 in the manifest: the backup is damaged")
    files, size = _tally(folder / MEDIA)
    want = manifest["media"]
    if (files, size) != (want["files"], want["bytes"]):
        raise BackupError(
            f"the backup's media folder holds {files} files ({size} bytes); the manifest says {want['files']} "
            f"({want['bytes']} bytes): the backup is incomplete or damaged"
        )
    return manifest


def _target_is_empty_sqlite(path: Path) -> None:
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise BackupError(f"{path} is not a database file")
    if not path.exists():
        return
    conn = _sqlite_connect(path, read_only=True)
    try:
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise BackupError(
            f"{path} exists and is not an empty SQLite database ({exc}); restore into a new file"
        ) from None
    finally:
        conn.close()
    if tables:
        raise BackupError(
            f"the target database {path} is not empty: a restore never overwrites a desk. Move it aside "
            "(with its -wal and -shm files) or point DATABASE_URL at a new file"
        )


def _restore_sqlite(url: str, dump: Path) -> None:
    path = _sqlite_path(url)
    _target_is_empty_sqlite(path)
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    src = _sqlite_connect(dump, read_only=True)
    dst = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        src.backup(dst)
        check = dst.execute("PRAGMA integrity_check").fetchall()
        if check != [("ok",)]:
            raise BackupError(f"the restored database fails SQLite's integrity check: {check[:3]}")
        dst.execute("PRAGMA journal_mode=WAL")  # as the desk runs it
    except BaseException:
        dst.close()
        if new:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        raise
    finally:
        src.close()
        dst.close()


def _target_is_empty_postgres(url: str) -> int:
    """Refuse a target database that holds any table; the server's major version."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
            ).scalar_one()
            server = _server_major(conn)
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise BackupError(
            f"cannot open the target database {safe_url(url)}: {reason}. Create it first (createdb NAME) "
            "and check DATABASE_URL"
        ) from None
    finally:
        engine.dispose()
    if tables:
        raise BackupError(
            f"the target database {safe_url(url)} is not empty ({tables} tables): a restore never overwrites a desk. "
            "Create a new database (createdb NAME) and point DATABASE_URL at it"
        )
    return int(server)


def _restore_postgres(url: str, dump: Path, made_with: str | None) -> None:
    server = _target_is_empty_postgres(url)  # again: it may have changed while the media were copied
    dumped_major = re.search(r"(\d+)", made_with or "")
    need = max(server, int(dumped_major.group(1)) if dumped_major else 0)
    binary, _version = pg_tool("pg_restore", need)
    conninfo, env = _pg_env(url)
    args = [str(binary), "--single-transaction", "--exit-on-error", "--no-owner", "--no-privileges"]
    _run_pg([*args, f"--dbname={conninfo}", str(dump)], env, "pg_restore")


def _media_dir_is_empty(media_dir: Path) -> bool:
    return not media_dir.exists() or (media_dir.is_dir() and not any(media_dir.iterdir()))


def restore(
    settings: Settings,
    folder: Path,
    *,
    force: bool = False,
    by: Actor = OPERATOR,
    progress: Progress | None = None,
) -> RestoreResult:
    """Restore the backup in ``folder`` into ``settings``' (empty) database and media folder."""
    require(by, Permission.PURGE)  # the target has no accounts yet: the caller's own right counts
    manifest = verify(folder)
    url = settings.database_url
    backend = make_url(normalise_url(url)).get_backend_name()
    if backend != manifest["backend"]:
        raise BackupError(
            f"this is a {manifest['backend']} backup and DATABASE_URL is {backend}: restore into the same kind of "
            "database"
        )
    # every refusal before any file is copied: a refused restore leaves everything as it was
    if backend == "sqlite":
        _target_is_empty_sqlite(_sqlite_path(url))
    else:
        pg_tool("pg_restore", _target_is_empty_postgres(url))
    media_dir = settings.media_dir
    if media_dir.exists() and not media_dir.is_dir():
        raise BackupError(f"MEDIA_DIR {media_dir} is not a folder")
    if not force and not _media_dir_is_empty(media_dir):
        raise BackupError(
            f"MEDIA_DIR {media_dir} already holds files: restore into an empty folder, or add --force to keep them "
            "beside the backup's (same names are the same images)"
        )
    dump = folder / manifest["database"]["file"]
    was_empty = _media_dir_is_empty(media_dir)
    media_dir.mkdir(parents=True, exist_ok=True)
    try:
        copied, _size = _copy_media(folder / MEDIA, media_dir, progress, "media")  # files first, then their rows
        if backend == "sqlite":
            _restore_sqlite(url, dump)
        else:
            _restore_postgres(url, dump, manifest["database"].get("tool"))
    except BaseException:
        if was_empty:  # leave MEDIA_DIR as it was, so that the restore can simply be run again
            _clean(media_dir, created=False)
        raise
    if progress is not None:
        progress("database", 1)

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            revision = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
            counts = _counts(lambda sql: conn.exec_driver_sql(sql).scalar_one(), manifest["counts"])
        if revision != manifest["schema_revision"] or counts != manifest["counts"]:
            raise BackupError(
                f"the restored database differs from the manifest (revision {revision}, counts {counts}; "
                f"expected {manifest['schema_revision']}, {manifest['counts']}): do not use it"
            )
        upgraded_from = None
        if revision != schema.head_revision():
            schema.upgrade(engine)
            upgraded_from, revision = revision, schema.head_revision()
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT path, thumb_path FROM media")
            missing, shown = _missing(media_dir, ((r[0], r[1]) for r in rows))
        with writing(make_session_factory(engine)) as session:
            outbox.skip_ahead(session)  # platforms saw events from after the backup: new ones come after those
        audit.log(make_session_factory(engine), by, audit.Action.BACKUP, str(folder), op="restore",
                  backup_created_at=manifest["created_at"], revision=manifest["schema_revision"],
                  upgraded_to=revision if upgraded_from else None, counts=counts, media_copied=copied,
                  missing_media=missing)  # fmt: skip
    finally:
        engine.dispose()
    return RestoreResult(manifest, str(revision), upgraded_from, copied, missing, shown)

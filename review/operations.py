"""What leads and admins start from the Operations page: ingest uploaded files, start scoring.

Uploads are written to a private temporary folder and handed to :func:`review.ingest.ingest_paths`
exactly as files given on the command line: JSONL / CSV files (their relative image paths
resolve inside the upload, so a zip keeps a folder layout), or, with no data file, the images
as a folder ingest. Scoring runs as a separate ``python -m review score`` process on the same
settings, so it survives the page being closed and uses the scoring worker's leases like any
other worker; the page follows it through its log and the unscored count.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from sqlalchemy.orm import Session, sessionmaker

from review.auth import Actor, Permission, require
from review.config import Settings, settings_env
from review.errors import IngestError
from review.ingest import CSV_SUFFIXES, JSONL_SUFFIXES, IngestReport, ingest_paths

MAX_UPLOAD_BYTES = 2 * 1024**3  # all files of one upload, zip contents included
MAX_ZIP_MEMBERS = 100_000
PROJECT_ROOT = Path(__file__).resolve().parents[1]
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:]")


def _safe_part(name: str) -> str:
    """One path component of an uploaded name, kept as written (spaces, Chinese, …) so that
    the paths a JSONL names still match; only separators and control characters go."""
    cleaned = _UNSAFE.sub("_", name).strip()
    if cleaned in ("", ".", ".."):
        raise IngestError(f"refused file name {name!r}")
    return cleaned


def _unpack(archive: Path, into: Path, budget: int) -> int:
    """Extract a zip under ``into``: no absolute paths, no ``..``, no links, size-limited."""
    written = 0
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            raise IngestError(f"{archive.name}: more than {MAX_ZIP_MEMBERS} files")
        for info in members:
            if info.is_dir():
                continue
            parts = PurePosixPath(info.filename.replace("\\", "/")).parts
            if not parts or parts[0] == "/" or ".." in parts or (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise IngestError(f"{archive.name}: refused member {info.filename!r} (absolute, '..' or a link)")
            written += info.file_size
            if written > budget:
                raise IngestError(f"{archive.name}: the upload is larger than {MAX_UPLOAD_BYTES // 1024**2} MB")
            target = into.joinpath(*(_safe_part(p) for p in parts))
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as dst:
                copied = 0
                while chunk := src.read(1 << 20):
                    copied += len(chunk)
                    if copied > info.file_size:  # a member that lies about its size
                        raise IngestError(f"{archive.name}: member {info.filename!r} is larger than it claims")
                    dst.write(chunk)
    return written


def ingest_upload(
    sessions: sessionmaker[Session],
    settings: Settings,
    actor: Actor,
    files: list[tuple[str, bytes]],
    *,
    source: str | None = None,
) -> IngestReport:
    """Ingest uploaded files (name, content): .jsonl/.csv/.tsv data files, images, .zip archives."""
    require(actor, Permission.INGEST)
    if not files:
        raise IngestError("no files uploaded")
    total = sum(len(content) for _, content in files)
    if total > MAX_UPLOAD_BYTES:
        raise IngestError(f"the upload is larger than {MAX_UPLOAD_BYTES // 1024**2} MB")
    with tempfile.TemporaryDirectory(prefix="review-upload-") as tmp:
        root = Path(tmp)
        try:
            _write_upload(root, files, total)
        except OSError as exc:  # clashing names in a zip, names too long for the file system, a full disk
            raise IngestError(f"the upload could not be unpacked: {exc.strerror or exc}") from None
        data = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in JSONL_SUFFIXES | CSV_SUFFIXES)
        return ingest_paths(sessions, data or [root], settings, source=source)


def _write_upload(root: Path, files: list[tuple[str, bytes]], total: int) -> None:
    """The uploaded files under ``root``, zip archives unpacked into a folder of their name."""
    for name, content in files:
        target = root / _safe_part(Path(name).name)
        if target.exists():
            raise IngestError(f"two uploaded files are named {target.name!r}")
        target.write_bytes(content)
        if target.suffix.lower() == ".zip":
            try:
                total += _unpack(target, root / target.stem, MAX_UPLOAD_BYTES - total)
            except zipfile.BadZipFile:
                raise IngestError(f"{name}: not a readable zip file") from None
            target.unlink()


@dataclass
class Job:
    """A ``python -m review …`` process started from the app."""

    command: list[str]
    log_path: Path
    started_by: str
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        # tqdm redraws with carriage returns: keep each line's last state
        return "\n".join(line.rsplit("\r", 1)[-1] for line in text.splitlines()[-lines:])

    def stop(self, actor: Actor) -> None:
        """Ask the worker to finish its batch and stop (as Ctrl-C does)."""
        require(actor, Permission.SCORE)
        if self.running:
            assert self.process is not None
            self.process.send_signal(2)


def start_scoring(settings: Settings, actor: Actor, *, limit: int | None = None, provider: str | None = None) -> Job:
    """Start a scoring worker on ``settings`` (its database, media and model)."""
    require(actor, Permission.SCORE)
    if limit is not None and limit < 1:
        raise IngestError("the number of posts to score must be at least 1")
    command = [sys.executable, "-m", "review", "score"]
    if limit is not None:
        command += ["--limit", str(limit)]
    if provider:
        command += ["--provider", provider]
    jobs_dir = Path(settings.media_dir).resolve().parent / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    job = Job(command=command, log_path=jobs_dir / f"score-{stamp}.log", started_by=actor.username)
    env = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p)
    with job.log_path.open("wb") as log:
        # the app's working directory: relative settings (data/review.db) mean the same files
        job.process = subprocess.Popen(
            command, cwd=Path.cwd(), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    return job

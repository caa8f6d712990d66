"""Starting the scoring worker from the app: ``start_scoring`` runs ``python -m review score`` as a
separate process on the same settings, so it survives the page being closed and uses the scoring
worker's leases like any other worker; the ``Job`` it returns lets the page follow it through its
log and stop it. This process keeps the jobs it started (:func:`started_jobs`) and starts one at a
time per database (:func:`running_job`): each loads its own copy of the model (gigabytes), and
every browser session of the app sees the same jobs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from db.session import make_engine, make_session_factory
from review.auth import Actor, Permission, require_live
from review.config import Settings, settings_env
from review.errors import IngestError

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Job:
    """A ``python -m review …`` process started from the app."""

    command: list[str]
    log_path: Path
    started_by: str
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    process: subprocess.Popen[bytes] | None = None
    settings: Settings | None = None  # whose database the account is checked against

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 20) -> str:
        try:  # bytes, not read_text: universal newlines would turn each \r into a line of its own
            text = self.log_path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return ""
        # tqdm redraws a line after carriage returns: keep each line's last state
        shown = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n")]
        if shown and not shown[-1]:
            shown.pop()  # the newline that ends the log
        return "\n".join(shown[-lines:])

    def stop(self, actor: Actor, sessions: sessionmaker[Session] | None = None) -> None:
        """Ask the worker to finish its batch and stop (as Ctrl-C does)."""
        _require_live(self.settings, sessions, actor, Permission.SCORE)
        if self.running:
            assert self.process is not None
            self.process.send_signal(2)


def _require_live(
    settings: Settings | None, sessions: sessionmaker[Session] | None, actor: Actor, permission: Permission
) -> Actor:
    """``require_live`` on ``sessions``, or on a short-lived connection to ``settings``' database."""
    if sessions is not None:
        with sessions() as session:
            return require_live(session, actor, permission)
    if settings is None:
        raise IngestError("no database to check the account against")
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            return require_live(session, actor, permission)
    finally:
        engine.dispose()


_STARTED: list[Job] = []  # the jobs this process started, oldest first (the app's: one process, many sessions)
_STARTING = threading.Lock()  # two sessions' clicks: one worker
KEPT_JOBS = 20  # finished jobs kept to be shown


def started_jobs(settings: Settings) -> list[Job]:
    """The jobs this process started on ``settings``' database, oldest first."""
    return [job for job in _STARTED if job.settings is not None and job.settings.database_url == settings.database_url]


def running_job(settings: Settings) -> Job | None:
    """The scoring worker this process runs on ``settings``' database, if one still runs."""
    return next((job for job in started_jobs(settings) if job.running), None)


def start_scoring(
    settings: Settings,
    actor: Actor,
    *,
    limit: int | None = None,
    provider: str | None = None,
    sessions: sessionmaker[Session] | None = None,
) -> Job:
    """Start a scoring worker on ``settings`` (its database, media and model). ``actor`` needs
    the score permission as its account is stored now (checked on ``sessions``, or on a
    connection of its own to the settings' database). One at a time: IngestError while a worker
    this process started on that database still runs."""
    _require_live(settings, sessions, actor, Permission.SCORE)
    if limit is not None and limit < 1:
        raise IngestError("the number of posts to score must be at least 1")
    with _STARTING:
        if (running := running_job(settings)) is not None:
            raise IngestError(
                f"a scoring worker started by {running.started_by} at {running.started_at:%H:%M:%S} UTC still runs: "
                "wait for it, or stop it after its batch"
            )
        job = _start(settings, actor, limit, provider)
        _STARTED.append(job)
        del _STARTED[:-KEPT_JOBS]
    return job


def _start(settings: Settings, actor: Actor, limit: int | None, provider: str | None) -> Job:
    command = [sys.executable, "-m", "review", "score"]
    if limit is not None:
        command += ["--limit", str(limit)]
    if provider:
        command += ["--provider", provider]
    jobs_dir = Path(settings.media_dir).resolve().parent / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    job = Job(command=command, log_path=jobs_dir / f"score-{stamp}.log", started_by=actor.username, settings=settings)
    env = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p)
    with job.log_path.open("wb") as log:
        # the app's working directory: relative settings (data/review.db) mean the same files
        job.process = subprocess.Popen(
            command, cwd=Path.cwd(), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    return job

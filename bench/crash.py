"""Crashes and outages: ``kill -9`` during ingest and during scoring, and Postgres stopped mid-run,
each followed by a re-run and the checks a system of record needs.

    python bench/crash.py [--ingest-kills 3] [--score-kills 2] [--full] [--records 300] [--only ingest|score|postgres]

(a) ingest: ``python -m review ingest`` of a JSONL with one or two images per record is killed
    with SIGKILL at a random point of its run (fresh database and media folder each time). After
    the kill: every media row's files exist and every stored post has all its images. Then the
    same ingest is run again: it completes, every record is stored exactly once with its text,
    every media file holds the bytes its row names. Leftover ``.tmp-*`` files and files no row
    refers to are counted; when ``python -m review media gc`` exists it is run, and must remove
    them all and keep every file a row refers to.
(b) score: ``python -m review score --provider baseline`` (rules over the signals; no model
    download) on posts whose image signals were computed beforehand (so that the kill lands in
    the scoring, not in OCR) is killed the same way. After the kill: no half-written post (an unscored post has
    no verdict, a queued one exactly one, and its ``verdict_id`` is that one). An immediate re-run,
    while the dead worker's leases still hold, must either score everything or say (non-zero
    exit, a line about the leases) that posts are left. After the leases end
    (``--lease-seconds``, 15 here; 600 by default) a re-run gives every post exactly one verdict
    and leaves no lease behind.
(c) Postgres: a throwaway server of our own (``scripts/pg_throwaway.sh``, never the shared one) is
    stopped (``pg_ctl stop -m fast``) while ingest runs, and again while score runs (with
    ``--retry-seconds 5`` where score has it): the command must exit non-zero with one ``error:``
    line and no traceback. The server is started again on
    the same data folder, the commands re-run, and everything must be complete and consistent.
    Then a brief outage (3 s) during score: a worker that retries rides through it.

Prints tried / passed / failed per scenario and the failures; exits 1 if any failed.
``--full`` is the issue's 45 kills: 30 during ingest, 15 during scoring.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image, ImageDraw  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from db import schema  # noqa: E402
from db.models import Media, Post, PostMedia, Signal, Verdict  # noqa: E402
from db.session import make_engine, make_session_factory  # noqa: E402
from review.config import Settings  # noqa: E402
from review.ingest import ingest_paths  # noqa: E402
from review.signals.runner import compute_signals  # noqa: E402

LEASE_SECONDS = 15  # the scoring lease here: longer than a re-run takes to start (the default is 600 s)
DEFAULT_LEASE_SECONDS = 600


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class Check:
    scenario: str
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Results:
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, scenario: str, name: str, problems: list[str] | bool, detail: str = "") -> bool:
        if isinstance(problems, bool):
            ok = problems
        else:
            ok = not problems
            detail = detail or "; ".join(problems[:4]) + (" …" if len(problems) > 4 else "")
        self.checks.append(Check(scenario, name, ok, "" if ok else detail))
        return ok

    def note(self, line: str) -> None:
        self.notes.append(line)
        print(f"  {line}", flush=True)


# --------------------------------------------------------------------------------------------
# Processes


@dataclass
class Done:
    rc: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        return [ln for ln in self.stderr.replace("\r", "\n").split("\n") if ln.strip()]

    @property
    def traceback(self) -> bool:
        return "Traceback" in self.stderr


class Command:
    """``python -m review …`` with a database and media folder, as a child process whose output
    goes to files (so a killed process cannot block on a pipe)."""

    def __init__(self, url: str, media_dir: Path, work: Path) -> None:
        self.url, self.media_dir, self.work = url, media_dir, work
        self.env = {
            **os.environ,
            "DATABASE_URL": url,
            "MEDIA_DIR": str(media_dir),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
        }
        self.env.pop("REVIEW_CONFIG", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self, *args: str) -> None:
        self.out = open(self.work / "stdout", "w+b")  # noqa: SIM115 (closed in wait)
        self.err = open(self.work / "stderr", "w+b")  # noqa: SIM115
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "review", *args], cwd=self.work, env=self.env, stdout=self.out, stderr=self.err
        )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> bool:
        """SIGKILL; False when the process had already finished."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            return False
        os.kill(self.proc.pid, signal.SIGKILL)
        return True

    def wait(self, timeout: float = 600) -> Done:
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            self.err.write(f"\n(bench: still running after {timeout:.0f} s, killed)".encode())
        seconds = time.perf_counter() - self.started
        self.out.seek(0)
        self.err.seek(0)
        done = Done(rc, self.out.read().decode("utf-8", "replace"), self.err.read().decode("utf-8", "replace"), seconds)
        self.out.close()
        self.err.close()
        self.proc = None
        return done

    def run(self, *args: str, timeout: float = 600) -> Done:
        self.start(*args)
        return self.wait(timeout)


def options(command: Command, *sub: str) -> str:
    """The help text of a subcommand ("" when it does not exist): which options this tree has."""
    done = command.run(*sub, "--help", timeout=60)
    return done.stdout if done.rc == 0 else ""


# --------------------------------------------------------------------------------------------
# Inputs and databases


@dataclass
class Input:
    path: Path
    records: dict[str, tuple[str, int]]  # external_id → (text, number of images)


def make_input(folder: Path, n: int, seed: int, image_every: int = 1) -> Input:
    """A JSONL of ``n`` records; every ``image_every``-th with a distinct JPEG (and every fifth of
    those with a second one); 0: text only."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    lines, records = [], {}
    for i in range(n):
        names = []
        with_image = image_every and i % image_every == 0
        for j in range((2 if i % (5 * image_every) == 0 else 1) if with_image else 0):
            img = Image.new("RGB", (128, 128), tuple(rng.randrange(256) for _ in range(3)))
            draw = ImageDraw.Draw(img)
            for _ in range(6):
                x, y = rng.randrange(128), rng.randrange(128)
                draw.rectangle(
                    (x, y, x + rng.randrange(8, 60), y + rng.randrange(8, 60)),
                    fill=tuple(rng.randrange(256) for _ in range(3)),
                )
            draw.text((4, 4), f"{seed}-{i}-{j}", fill=(255, 255, 255))
            name = f"img/{i:05d}-{j}.jpg"
            (folder / "img").mkdir(exist_ok=True)
            img.save(folder / name, "JPEG", quality=85)
            names.append(name)
        body = rng.choice(["加微信 abc123 领取福利", "great product!!", "今天天气很好", "click here to win", "hello"])
        text_ = f"crash post {seed}-{i}: {body}"
        records[f"c{seed}-{i}"] = (text_, len(names))
        lines.append(
            json.dumps(
                {"external_id": f"c{seed}-{i}", "source": "crash", "text": text_, "images": names}, ensure_ascii=False
            )
        )
    path = folder / "posts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Input(path, records)


def empty_sqlite(path: Path) -> Path:
    engine = make_engine(f"sqlite:///{path}")
    schema.upgrade(engine)
    engine.dispose()
    return path


def copy_sqlite(template: Path, target: Path) -> str:
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(template) + suffix)
        if src.exists():
            shutil.copy2(src, str(target) + suffix)
    return f"sqlite:///{target}"


def rows(url: str, table: type[Post] | type[Verdict]) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count(table.id))).scalar() or 0
    except Exception:  # not created yet, locked
        return 0
    finally:
        engine.dispose()


def first_sign(cmd: Command, seen: Callable[[], bool]) -> float:
    """Seconds from the start of ``cmd`` until ``seen()`` (polled every 50 ms): when the run
    begins its real work, so that kills land after start-up."""
    while cmd.running() and not seen():
        time.sleep(0.05)
    return time.perf_counter() - cmd.started


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class MediaState:
    rows_without_files: list[str]
    wrong_bytes: list[str]
    orphans: list[str]  # store files no row refers to
    temporary: list[str]  # .tmp-* files


def media_state(url: str, media_dir: Path) -> MediaState:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(select(Media.sha256, Media.path, Media.thumb_path)).all()
    engine.dispose()
    missing, wrong, referenced = [], [], set()
    for row in rows:
        referenced.update((row.path, row.thumb_path))
        for rel in (row.path, row.thumb_path):
            if not (media_dir / rel).is_file():
                missing.append(rel)
        original = media_dir / row.path
        if original.is_file() and sha(original) != row.sha256:
            wrong.append(row.path)
    files = (
        [p.relative_to(media_dir).as_posix() for p in media_dir.rglob("*") if p.is_file()] if media_dir.is_dir() else []
    )
    temporary = [f for f in files if Path(f).name.startswith(".tmp-")]
    orphans = [f for f in files if f not in referenced and f not in temporary]
    return MediaState(missing, wrong, orphans, temporary)


def posts_problems(url: str, data: Input, *, complete: bool) -> list[str]:
    """Stored posts against the input: text, number of images; with ``complete``, every record once."""
    engine = make_engine(url)
    with engine.connect() as conn:
        posts = conn.execute(select(Post.id, Post.external_id, Post.text)).all()
        links = dict(conn.execute(select(PostMedia.post_id, func.count()).group_by(PostMedia.post_id)).all())
    engine.dispose()
    problems = []
    seen = Counter(p.external_id for p in posts)
    problems += [f"{k} stored {n} times" for k, n in seen.items() if n > 1]
    for p in posts:
        want = data.records.get(p.external_id)
        if want is None:
            problems.append(f"{p.external_id} is not in the input")
        elif p.text != want[0]:
            problems.append(f"{p.external_id}: text differs")
        elif links.get(p.id, 0) != want[1]:
            problems.append(f"{p.external_id}: {links.get(p.id, 0)} images linked, {want[1]} in the input")
    if complete:
        missing = set(data.records) - set(seen)
        problems += [f"{len(missing)} records not stored, e.g. {sorted(missing)[:3]}"] if missing else []
    return problems


# --------------------------------------------------------------------------------------------
# (a) kill -9 during ingest


def ingest_kills(root: Path, kills: int, records: int, rng: random.Random, results: Results) -> None:
    scenario = "kill -9 during ingest"
    print(f"\n{scenario}: {kills} kills, {records} records", flush=True)
    data = make_input(root / "input", records, seed=1)
    template = empty_sqlite(root / "template.db")

    def fresh(k: int) -> Command:
        folder = root / f"ingest-{k}"
        folder.mkdir()
        return Command(copy_sqlite(template, folder / "review.db"), folder / "media", folder)

    calibration = fresh(0)
    calibration.start("ingest", "--quiet", str(data.path))
    begins = first_sign(calibration, lambda: any(calibration.media_dir.rglob("*.jpg")))
    done = calibration.wait()
    duration = done.seconds
    results.add(
        scenario,
        "an uninterrupted ingest stores everything (calibration)",
        posts_problems(calibration.url, data, complete=True) + ([f"exit {done.rc}"] if done.rc else []),
    )
    results.note(f"uninterrupted ingest: {records} records in {duration:.1f} s (first image written at {begins:.1f} s)")
    gc_help = options(calibration, "media", "gc")
    if not gc_help:
        results.note("python -m review media gc does not exist in this tree: leftovers are only counted")

    totals = Counter()
    for k in range(1, kills + 1):
        cmd = fresh(k)
        at = rng.uniform(begins, 0.95 * duration)  # between the first image written and the end
        cmd.start("ingest", "--quiet", str(data.path))
        time.sleep(at)
        killed = cmd.kill()
        cmd.wait()
        after = media_state(cmd.url, cmd.media_dir)
        broken = posts_problems(cmd.url, data, complete=False)
        results.add(scenario, "after the kill: every media row has its files", after.rows_without_files)
        results.add(scenario, "after the kill: every stored post is whole", broken)
        engine = make_engine(cmd.url)
        with engine.connect() as conn:
            count = conn.execute(select(func.count(Post.id))).scalar() or 0
        engine.dispose()
        again = cmd.run("ingest", "--quiet", str(data.path))
        state = media_state(cmd.url, cmd.media_dir)
        results.add(
            scenario,
            "the re-run completes (exit 0, one summary line, no traceback)",
            again.rc == 0 and not again.traceback,
            f"exit {again.rc}: {again.stderr.strip()[-200:]}",
        )
        results.add(
            scenario,
            "after the re-run: every record stored exactly once, with its text and images",
            posts_problems(cmd.url, data, complete=True),
        )
        results.add(
            scenario,
            "after the re-run: every media row has its files, with its bytes",
            state.rows_without_files + [f"{p}: other bytes" for p in state.wrong_bytes],
        )
        totals.update(orphans=len(state.orphans), temporary=len(state.temporary))
        line = (
            f"kill {k} at {at:.1f} s{'' if killed else ' (had already finished)'}: {count} posts committed, "
            f"{len(after.orphans)} files not referenced yet, {len(after.temporary)} .tmp files"
            f"{' (inconsistent)' if broken else ''}; after the re-run {len(state.orphans)} orphan files, "
            f"{len(state.temporary)} .tmp files"
        )
        if gc_help:
            line += "; " + run_gc(cmd, gc_help, scenario, results)
        results.note(line)
    results.note(f"leftovers over {kills} kills: {totals['orphans']} orphan files, {totals['temporary']} .tmp files")


def run_gc(cmd: Command, gc_help: str, scenario: str, results: Results) -> str:
    """``python -m review media gc`` (deleting, no minimum age): every leftover goes, every
    referenced file stays."""
    before = media_state(cmd.url, cmd.media_dir)
    args = ["media", "gc"]
    if "--delete" in gc_help:
        args.append("--delete")
    if "--min-age" in gc_help:
        args += ["--min-age", "0"]
    done = cmd.run(*args)
    after = media_state(cmd.url, cmd.media_dir)
    left = after.orphans + after.temporary
    results.add(
        scenario,
        "media gc removes every orphan and .tmp file",
        done.rc == 0 and not left,
        f"exit {done.rc}; left {left[:3]} {done.stderr.strip()[-150:]}",
    )
    results.add(scenario, "media gc keeps every file a row refers to", after.rows_without_files)
    return f"media gc removed {len(before.orphans) + len(before.temporary) - len(left)}"


# --------------------------------------------------------------------------------------------
# (b) kill -9 during score


def verdict_problems(url: str, *, complete: bool) -> tuple[list[str], int, float]:
    """Half-written posts (and, with ``complete``, any post without its one verdict or with a
    lease left); also how many posts are leased and the longest lease left, in seconds."""
    engine = make_engine(url)
    with engine.connect() as conn:
        posts = conn.execute(
            select(Post.id, Post.status, Post.verdict_id, Post.score_lease_owner, Post.score_lease_expires_at)
        ).all()
        verdicts: dict[int, list[int]] = {}
        for post_id, verdict_id in conn.execute(select(Verdict.post_id, Verdict.id)):
            verdicts.setdefault(post_id, []).append(verdict_id)
        doubled = conn.execute(
            select(Signal.media_id, Signal.kind)
            .where(Signal.media_id.is_not(None))
            .group_by(Signal.media_id, Signal.kind)
            .having(func.count() > 1)
        ).all()
    engine.dispose()
    now = datetime.now(UTC)
    problems, leased, longest = [], 0, 0.0
    for p in posts:
        mine = verdicts.get(p.id, [])
        if p.status == "unscored":
            if mine or p.verdict_id is not None:
                problems.append(f"post {p.id}: unscored with verdicts {mine}")
            if complete:
                problems.append(f"post {p.id}: still unscored")
        elif p.status == "queued":
            if len(mine) != 1 or p.verdict_id != mine[0]:
                problems.append(f"post {p.id}: queued with verdicts {mine}, current {p.verdict_id}")
        else:
            problems.append(f"post {p.id}: status {p.status}")
        if p.score_lease_expires_at is not None and p.status == "unscored" and p.score_lease_expires_at > now:
            leased += 1
            longest = max(longest, (p.score_lease_expires_at - now).total_seconds())
        if complete and p.score_lease_owner is not None:
            problems.append(f"post {p.id}: lease of {p.score_lease_owner} left")
    problems += [f"media {m}: more than one {kind} signal" for m, kind in doubled]
    return problems, leased, longest


def make_score_template(root: Path, records: int) -> tuple[Path, Path]:
    """A database with ``records`` unscored posts, every 30th with an image whose signals (OCR,
    NSFW) are computed here, so that a kill lands in the scoring itself."""
    folder = root / "score-template"
    folder.mkdir(parents=True)
    db = empty_sqlite(folder / "review.db")
    media = folder / "media"
    data = make_input(root / "score-input", records, seed=2, image_every=30)
    settings = Settings(database_url=f"sqlite:///{db}", media_dir=media)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    report = ingest_paths(sessions, [data.path], settings)
    assert not report.rejected, report.summary()
    compute_signals(sessions, settings)
    engine.dispose()
    return db, media


def score_kills(root: Path, kills: int, records: int, rng: random.Random, results: Results) -> None:
    scenario = "kill -9 during score"
    print(f"\n{scenario}: {kills} kills, {records} posts (baseline provider, lease {LEASE_SECONDS} s)", flush=True)
    template_db, template_media = make_score_template(root, records)
    score = ["score", "--provider", "baseline", "--quiet", "--lease-seconds", str(LEASE_SECONDS)]

    def fresh(k: int) -> Command:
        folder = root / f"score-{k}"
        folder.mkdir()
        shutil.copytree(template_media, folder / "media")
        return Command(copy_sqlite(template_db, folder / "review.db"), folder / "media", folder)

    calibration = fresh(0)
    calibration.start(*score)
    begins = first_sign(calibration, lambda: rows(calibration.url, Verdict) > 0)
    done = calibration.wait()
    duration = done.seconds
    problems, _, _ = verdict_problems(calibration.url, complete=True)
    results.add(
        scenario,
        "an uninterrupted score run gives every post one verdict (calibration)",
        problems + ([f"exit {done.rc}: {done.stderr.strip()[-200:]}"] if done.rc else []),
    )
    results.note(
        f"uninterrupted score: {records} posts ({(records - 1) // 30 + 1} with an image) in {duration:.1f} s "
        f"(first verdict at {begins:.1f} s)"
    )
    for k in range(1, kills + 1):
        cmd = fresh(k)
        at = rng.uniform(begins, 0.95 * duration)  # between the first verdict stored and the end
        cmd.start(*score)
        time.sleep(at)
        killed = cmd.kill()
        cmd.wait()
        problems, leased, longest = verdict_problems(cmd.url, complete=False)
        results.add(scenario, "after the kill: no half-written post", problems)
        results.add(
            scenario,
            f"after the kill: leases end within {LEASE_SECONDS} s",
            longest <= LEASE_SECONDS + 1,
            f"a lease has {longest:.0f} s left",
        )
        now = time.perf_counter()
        again = cmd.run(*score)
        _, still, _ = verdict_problems(cmd.url, complete=False)
        says = again.rc != 0 and "lease" in again.stderr.lower()
        results.add(
            scenario,
            "an immediate re-run scores everything or says posts are left leased",
            not again.traceback and (still == 0 and again.rc == 0 or says),
            f"exit {again.rc}, {still} posts left leased, stderr {again.stderr.strip()[-160:]!r}",
        )
        time.sleep(max(0.0, longest - (time.perf_counter() - now)) + 1.0)
        final = cmd.run(*score)
        problems, _, _ = verdict_problems(cmd.url, complete=True)
        results.add(
            scenario,
            "after the leases end: every post has exactly one current verdict, no lease left",
            problems + ([f"exit {final.rc}: {final.stderr.strip()[-200:]}"] if final.rc else []),
        )
        results.note(
            f"kill {k} at {at:.1f} s{'' if killed else ' (had already finished)'}: {leased} posts left "
            f"leased (≤ {longest:.1f} s); the immediate re-run exited {again.rc} with {still} still leased"
            + (f", saying: {again.lines[-1][:110]!r}" if again.lines else ", saying nothing")
        )
    results.note(
        f"a dead worker's posts come back when its lease ends: --lease-seconds, {DEFAULT_LEASE_SECONDS} s by default"
    )


# --------------------------------------------------------------------------------------------
# (c) Postgres stopped mid-run


class PgServer:
    """Our own throwaway Postgres (scripts/pg_throwaway.sh), stopped and started again on the same
    data folder with pg_ctl, as the script starts it."""

    def __init__(self) -> None:
        self.state = Path(tempfile.mkdtemp(prefix="crash-pg-"))
        bindirs = sorted(p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists())
        self.bindir = bindirs[-1] if bindirs else None
        self.url = ""

    def _as_owner(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if os.getuid() == 0 else list(args)

    def _script(self, verb: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PG_STATE_DIR": str(self.state)}
        return subprocess.run(
            ["bash", str(REPO / "scripts" / "pg_throwaway.sh"), verb],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def create(self) -> bool:
        done = self._script("start")
        if done.returncode != 0:
            return False
        self.url = done.stdout.strip().splitlines()[-1]
        return True

    def stop(self) -> None:
        subprocess.run(
            self._as_owner(str(self.bindir / "pg_ctl"), "-D", str(self.state / "data"), "-m", "fast", "-w", "stop"),
            capture_output=True,
            timeout=120,
            check=True,
        )

    def start(self) -> None:
        port = make_url(self.url).port
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {self.state} -c fsync=off -c full_page_writes=off"
        subprocess.run(
            self._as_owner(
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.state / "data"),
                "-l",
                str(self.state / "server.log"),
                "-w",
                "-o",
                opts,
                "start",
            ),
            capture_output=True,
            timeout=120,
            check=True,
        )

    def destroy(self) -> None:
        self._script("stop")
        shutil.rmtree(self.state, ignore_errors=True)

    def database(self, name: str) -> str:
        admin = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = make_url(self.url).set(database=name).render_as_string(hide_password=False)
        engine = make_engine(url)
        schema.upgrade(engine)
        engine.dispose()
        return url


def count_when_up(url: str, what: str) -> int:
    """Rows of ``what`` (posts or verdicts); -1 when the database does not answer."""
    engine = create_engine(url, connect_args={"connect_timeout": 2}, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            table = Post if what == "posts" else Verdict
            return conn.execute(select(func.count(table.id))).scalar() or 0
    except Exception:
        return -1
    finally:
        engine.dispose()


def stop_when(server: PgServer, cmd: Command, url: str, what: str, at_least: int, timeout: float = 300) -> bool:
    """Stop the server once ``at_least`` rows of ``what`` are committed (mid-run); False when the
    command finished first."""
    deadline = time.perf_counter() + timeout
    while cmd.running() and time.perf_counter() < deadline:
        if count_when_up(url, what) >= at_least:
            server.stop()
            return True
        time.sleep(0.2)
    return False


BANNERS = ("scoring with the baseline provider",)  # informational lines the CLI prints before it works


def one_line_exit(results: Results, scenario: str, what: str, done: Done) -> None:
    """The command met the outage: a non-zero exit and one error line (besides the banner and any
    "waiting for the database" lines), no traceback."""
    errors = [ln for ln in done.lines if ln.startswith("error:")]
    last = (done.lines or [""])[-1]
    other = [ln for ln in done.lines if not ln.startswith("error:") and not ln.startswith(BANNERS)]
    results.add(scenario, f"{what}: exits non-zero (not 3)", done.rc not in (0, 3), f"exit {done.rc}")
    results.add(
        scenario,
        f"{what}: one error line, no traceback",
        len(errors) == 1 and not done.traceback,
        f"{len(errors)} error lines{', a traceback' if done.traceback else ''}; last: {last[:160]!r}",
    )
    results.note(
        f"{what}: exit {done.rc}, {len(done.lines)} stderr lines"
        + (f" incl. {done.stderr.count('Traceback')} tracebacks" if done.traceback else "")
        + (f"; besides the error: {[ln[:70] for ln in other[:3]]}" if other and not done.traceback else "")
        + (f"; last: {done.lines[-1][:160]!r}" if done.lines else "")
    )


def postgres_outage(root: Path, records: int, results: Results) -> None:
    scenario = "Postgres stopped mid-run"
    print(f"\n{scenario}: a throwaway server of our own", flush=True)
    server = PgServer()
    if server.bindir is None or not server.create():
        results.note("no Postgres server binaries (or the throwaway server did not start): scenario skipped")
        return
    try:
        url = server.database("crash")
        folder = root / "pg"
        folder.mkdir()
        cmd = Command(url, folder / "media", folder)
        score_help = options(cmd, "score")
        retry = ["--retry-seconds", "5"] if "--retry-seconds" in score_help else []
        data = make_input(root / "pg-input", max(2 * records, 600), seed=4, image_every=60)

        # ingest
        cmd.start("ingest", "--quiet", str(data.path))
        stopped = stop_when(server, cmd, url, "posts", 1)
        done = cmd.wait(300)
        if not stopped:
            results.add(scenario, "ingest: the server was stopped mid-run", False, "the ingest finished first")
        else:
            one_line_exit(results, scenario, "ingest with the server stopped", done)
        server.start()
        again = cmd.run("ingest", "--quiet", str(data.path))
        state = media_state(url, cmd.media_dir)
        results.add(
            scenario,
            "ingest re-run after the restart completes",
            again.rc == 0 and not again.traceback,
            f"exit {again.rc}: {again.stderr.strip()[-200:]}",
        )
        results.add(
            scenario,
            "after it: every record stored once, whole",
            posts_problems(url, data, complete=True) + state.rows_without_files,
        )
        results.note(f"after the ingest re-run: {len(state.orphans)} orphan files, {len(state.temporary)} .tmp files")

        # score, stopped for good
        score = ["score", "--provider", "baseline", "--quiet", "--lease-seconds", str(LEASE_SECONDS), *retry]
        cmd.start(*score)
        stopped = stop_when(server, cmd, url, "verdicts", 1)
        done = cmd.wait(300)
        if not stopped:
            results.add(scenario, "score: the server was stopped mid-run", False, "the scoring finished first")
        else:
            one_line_exit(
                results, scenario, "score with the server stopped" + (" (--retry-seconds 5)" if retry else ""), done
            )
        server.start()
        problems, _, longest = verdict_problems(url, complete=False)
        results.add(scenario, "after the restart: no half-written post", problems)
        time.sleep(longest + 1.0)
        final = cmd.run(*score)
        problems, _, _ = verdict_problems(url, complete=True)
        results.add(
            scenario,
            "score re-run: every post has exactly one current verdict, no lease left",
            problems + ([f"exit {final.rc}: {final.stderr.strip()[-200:]}"] if final.rc else []),
        )

        # a brief outage: the worker should wait for the database and go on
        more = make_input(root / "pg-more", max(records, 200), seed=5, image_every=0)
        loaded = cmd.run("ingest", "--quiet", str(more.path))
        assert loaded.rc == 0, loaded.stderr
        cmd.start("score", "--provider", "baseline", "--quiet", "--lease-seconds", str(LEASE_SECONDS))
        stopped = stop_when(server, cmd, url, "verdicts", len(data.records) + 1)
        time.sleep(3.0)
        server.start()
        done = cmd.wait(300)
        problems, _, _ = verdict_problems(url, complete=True)
        if not stopped:
            results.add(scenario, "score: the brief outage came mid-run", False, "the scoring finished first")
        else:
            results.add(
                scenario,
                "score rides through a 3 s outage (exit 0, everything scored, no traceback)",
                problems
                + ([f"exit {done.rc}: {(done.lines or [''])[-1][:160]!r}"] if done.rc else [])
                + (["a traceback"] if done.traceback else []),
            )
            results.note(
                f"3 s outage during score: exit {done.rc}"
                + (f"; last: {done.lines[-1][:140]!r}" if done.rc and done.lines else "")
            )
    finally:
        server.destroy()


# --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ingest-kills", type=int, default=3, help="kills during ingest (default 3)")
    parser.add_argument("--score-kills", type=int, default=2, help="kills during score (default 2)")
    parser.add_argument("--records", type=int, default=300, help="records per ingest / posts per score run")
    parser.add_argument("--full", action="store_true", help="the issue's 45 kills: 30 during ingest, 15 during score")
    parser.add_argument("--only", choices=["ingest", "score", "postgres"], action="append")
    parser.add_argument("--seed", type=int, default=14, help="for the kill times (default 14)")
    parser.add_argument("--keep", action="store_true", help="keep the databases and media folders")
    args = parser.parse_args()
    ingest_n, score_n = (30, 15) if args.full else (args.ingest_kills, args.score_kills)
    only = set(args.only or ["ingest", "score", "postgres"])
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="crash-"))
    results = Results()
    started = time.perf_counter()
    try:
        if "ingest" in only:
            ingest_kills(root, ingest_n, args.records, rng, results)
        if "score" in only:
            score_kills(root, score_n, args.records, rng, results)
        if "postgres" in only:
            postgres_outage(root, args.records, results)
    finally:
        if args.keep:
            print(f"kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    report(results, time.perf_counter() - started)
    return 1 if any(not c.ok for c in results.checks) else 0


def report(results: Results, seconds: float) -> None:
    scenarios: dict[str, list[Check]] = {}
    for c in results.checks:
        scenarios.setdefault(c.scenario, []).append(c)
    print(f"\n{'scenario':30} {'tried':>6} {'passed':>7} {'failed':>7}")
    for name, cs in scenarios.items():
        failed = sum(not c.ok for c in cs)
        print(f"{name:30} {len(cs):6} {len(cs) - failed:7} {failed:7}")
    failed_checks = [c for c in results.checks if not c.ok]
    total = len(results.checks)
    print(f"{'TOTAL':30} {total:6} {total - len(failed_checks):7} {len(failed_checks):7}   ({seconds:.0f} s)")
    if failed_checks:
        print("\nfailures:")
        for name, count in Counter((c.scenario, c.name) for c in failed_checks).items():
            first = next(c for c in failed_checks if (c.scenario, c.name) == name)
            print(f"  [{name[0]}] {name[1]} ×{count}: {first.detail[:300]}")


if __name__ == "__main__":
    raise SystemExit(main())

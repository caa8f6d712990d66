"""A Postgres server of a test's own, to stop and start: the outage tests (the CLI's one line,
the app's error box, workers that wait and go on) kill it mid-run. Built on
scripts/pg_throwaway.sh; the fixtures ``pg_server`` and ``own_pg`` in conftest.py use it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from glob import glob
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
PG_BINDIRS = sorted(glob("/usr/lib/postgresql/*/bin/initdb"))


class OwnPostgres:
    """A throwaway cluster from scripts/pg_throwaway.sh; ``kill`` stops it at once (as a crash
    or an outage would) and keeps its files, ``start`` brings it back on the same port."""

    def __init__(self) -> None:
        # under /tmp, not pytest's 0700 folder: the server runs as `postgres` when we are root
        self.state = Path(tempfile.mkdtemp(prefix="review-pg-"))
        self.env = {**os.environ, "PG_STATE_DIR": str(self.state)}
        done = subprocess.run(["bash", str(REPO / "scripts/pg_throwaway.sh"), "start"], env=self.env,
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
        subprocess.run(["bash", str(REPO / "scripts/pg_throwaway.sh"), "stop"], env=self.env, timeout=120)
        shutil.rmtree(self.state, ignore_errors=True)

"""review/worker.py on its own: a ``Job``'s state and log as the Ingest page shows them (the
worker process itself: tests/test_worker_scoring.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from review.worker import PROJECT_ROOT, Job


def test_a_job_shows_the_tail_of_its_log(tmp_path: Path) -> None:
    log = tmp_path / "score.log"
    job = Job(command=["python"], log_path=log, started_by="lea")
    assert job.log_tail() == ""  # not written yet
    assert not job.running and job.returncode is None  # never started
    log.write_bytes("signals\nscoring 100%\ndone ✓ ".encode() + b"\xff\n")
    assert job.log_tail() == "signals\nscoring 100%\ndone ✓ \ufffd"  # undecodable bytes do not stop it
    assert job.log_tail(1) == "done ✓ \ufffd"


def test_a_progress_bar_redrawn_in_place_is_one_line(tmp_path: Path) -> None:
    """tqdm redraws its line after carriage returns: the page shows the bar's last state once."""
    log = tmp_path / "score.log"
    job = Job(command=["python"], log_path=log, started_by="lea")
    log.write_bytes(b"signals\nscoring:  10%\rscoring:  50%\rscoring: 100%\ndone\n")
    assert job.log_tail() == "signals\nscoring: 100%\ndone"
    log.write_bytes(b"signals\n\rscoring:  10%\rscoring:  50%")  # still running: the last state drawn
    assert job.log_tail() == "signals\nscoring:  50%"


def test_a_finished_job_has_its_exit_status(tmp_path: Path) -> None:
    job = Job(command=[sys.executable, "-c", "raise SystemExit(3)"], log_path=tmp_path / "x.log", started_by="lea")
    job.process = subprocess.Popen(job.command)
    job.process.wait()
    assert not job.running and job.returncode == 3


def test_the_worker_runs_from_the_project_root() -> None:
    assert (PROJECT_ROOT / "review" / "__main__.py").is_file()

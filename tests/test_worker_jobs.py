"""review/worker.py's jobs: the app starts one scoring worker at a time per database and knows
whether it still runs (the Ingest page disables "Start scoring" by it)."""

from __future__ import annotations

import pytest

from review.errors import IngestError
from review.worker import running_job, start_scoring, started_jobs
from tests.conftest import account, unscored_posts


def test_one_scoring_worker_at_a_time(sqlite_desk) -> None:
    unscored_posts(sqlite_desk, 1)
    lead = account(sqlite_desk, "lead")
    assert running_job(sqlite_desk.settings) is None
    job = start_scoring(sqlite_desk.settings, lead, provider="baseline", sessions=sqlite_desk.sessions)
    assert running_job(sqlite_desk.settings) is job and started_jobs(sqlite_desk.settings) == [job]
    with pytest.raises(IngestError, match=f"started by {lead.username} .* still runs"):
        start_scoring(sqlite_desk.settings, lead, provider="baseline", sessions=sqlite_desk.sessions)
    assert job.process is not None and job.process.wait(timeout=120) == 0
    assert running_job(sqlite_desk.settings) is None and started_jobs(sqlite_desk.settings) == [job]

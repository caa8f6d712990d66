"""review/worker.py, ``start_scoring`` as the Ingest page starts it: the permission and the limit
checked, then a real ``python -m review score`` process with the baseline provider that scores the
posts asked for, its log beside the media folder. (A ``Job`` on its own: test_worker.py.)"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.models import Post, Verdict
from review.auth import PermissionDenied
from review.errors import IngestError
from review.worker import start_scoring
from tests.conftest import ingest_files, jsonl_bytes, png_bytes
from tests.factories import staff


def test_start_scoring_runs_a_baseline_worker(sqlite_desk, tmp_path: Path) -> None:
    desk = sqlite_desk
    p = staff(desk)
    folder = tmp_path / "input"
    folder.mkdir()
    for i in range(4):
        (folder / f"{i}.png").write_bytes(png_bytes(20 + i, (64, 48)))
    (folder / "posts.jsonl").write_bytes(
        jsonl_bytes(
            {"external_id": "s0", "text": "加微信 abc123 领取免费 iPhone", "images": ["0.png"]},
            {"external_id": "s1", "text": "a quiet afternoon", "images": ["1.png"]},
            {"external_id": "s2", "text": "100%有效 最好的产品", "images": ["2.png"]},
            {"external_id": "s3", "text": "left for later", "images": ["3.png"]},
        )
    )
    report = ingest_files(desk, folder / "posts.jsonl")
    assert report.added == 4

    with pytest.raises(PermissionDenied):
        start_scoring(desk.settings, p["ann"], limit=3, provider="baseline")
    with pytest.raises(IngestError, match="at least 1"):
        start_scoring(desk.settings, p["lea"], limit=0, provider="baseline")

    job = start_scoring(desk.settings, p["lea"], limit=3, provider="baseline")
    assert job.started_by == "lea" and job.command[-4:] == ["--limit", "3", "--provider", "baseline"]
    deadline = time.monotonic() + 120
    while job.running and time.monotonic() < deadline:
        time.sleep(0.2)
    if job.running:
        job.process.kill()
        pytest.fail(f"the scoring worker did not finish in 120 s:\n{job.log_tail()}")
    log = job.log_tail(50)
    assert job.returncode == 0, log
    assert "baseline" in log
    assert job.log_path.parent == desk.settings.media_dir.resolve().parent / "jobs"
    with desk.sessions() as session:
        scored = session.scalar(select(func.count(func.distinct(Verdict.post_id))))
        providers = set(session.scalars(select(Verdict.provider)))
        statuses = Counter(session.scalars(select(Post.status)))
    assert scored == 3
    assert providers == {"baseline"}
    assert statuses == {"queued": 3, "unscored": 1}

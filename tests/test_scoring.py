"""review/scoring.py, the scoring worker, with the real transformers provider on the tiny Qwen3-VL:
leases, every post accounted for, failures stored and queued, in-batch twins, kill -9 and lease
expiry, Ctrl-C, constrained answers feeding the cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from db.models import Post, PostStatus, Verdict
from review.desk import Desk
from review.inference.hf import TransformersProvider
from review.ingest import ingest_records
from review.priority import FAILURE_PRIORITY
from review.scoring import Scorer, lease_batch, release_batch
from tests.conftest import REPO


@pytest.fixture(scope="module")
def provider(tiny_model_dir: Path) -> TransformersProvider:
    return TransformersProvider(str(tiny_model_dir), constrained=False, max_pixels=64 * 64, dtype="float32")


def _posts(desk: Desk, tmp_path: Path, n: int, *, twins: int = 0) -> list[int]:
    """n posts with one small distinct image each, plus ``twins`` exact copies of the first."""
    records = []
    for i in range(n):
        Image.new("RGB", (64, 48), (i * 40 % 256, 80, 160)).save(tmp_path / f"i{i}.png")
        records.append({"external_id": f"p{i}", "text": f"post {i}", "images": [f"i{i}.png"]})
    for j in range(twins):
        records.append({"external_id": f"twin{j}", "text": "post 0", "images": ["i0.png"]})
    report = ingest_records(desk.sessions, records, desk.settings, base_dir=tmp_path)
    assert report.ok
    return report.post_ids


def _verdicts(desk: Desk) -> list[Verdict]:
    with desk.sessions() as session:
        return list(session.scalars(select(Verdict).order_by(Verdict.id)))


def test_claims_are_disjoint_and_leases_expire(desk: Desk, tmp_path: Path) -> None:
    _posts(desk, tmp_path, 6)
    a = lease_batch(desk.sessions, "worker-a", 4)
    b = lease_batch(desk.sessions, "worker-b", 4)
    assert len(a) == 4 and len(b) == 2 and not set(a) & set(b)
    assert lease_batch(desk.sessions, "worker-c", 4) == []
    release_batch(desk.sessions, "worker-b", b)
    assert sorted(lease_batch(desk.sessions, "worker-c", 4)) == sorted(b)
    expired = lease_batch(desk.sessions, "worker-d", 4, lease=timedelta(seconds=-1))  # nothing free…
    assert expired == []
    release_batch(desk.sessions, "worker-a", a)
    short = lease_batch(desk.sessions, "worker-d", 4, lease=timedelta(seconds=-1))  # …a lease already over
    assert sorted(short) == sorted(a)
    assert sorted(lease_batch(desk.sessions, "worker-e", 4)) == sorted(a)  # taken over after expiry


def test_every_post_gets_one_verdict(desk: Desk, tmp_path: Path, provider: TransformersProvider) -> None:
    ids = _posts(desk, tmp_path, 5, twins=2)
    scorer = Scorer(desk.sessions, desk.settings, provider, batch_size=8, max_new_tokens=12)  # one batch
    stats = scorer.run()
    verdicts = _verdicts(desk)
    assert sorted(v.post_id for v in verdicts) == sorted(ids)  # one each, none lost
    assert stats.scored == 7
    # The twins share the first post's answer instead of a second model call.
    twin_rows = [v for v in verdicts if v.cache_hit]
    assert len(twin_rows) == 2 and stats.model_calls == 5
    original = next(v for v in verdicts if v.id == twin_rows[0].cached_from_id)
    assert all(t.raw_output == original.raw_output and t.input_hash == original.input_hash for t in twin_rows)
    for v in verdicts:
        assert v.provider == "transformers" and v.model_id == provider.model_id
        assert v.model_revision and v.model_revision.startswith("local-")
        assert v.prompt_version.startswith("moderation@")
        if not v.cache_hit:
            assert v.prompt_tokens and v.completion_tokens and v.latency_ms
        # Random weights write garbage: stored with the raw output and the reason, never dropped.
        assert v.parse_status == "failed" and v.raw_output and v.error
    with desk.sessions() as session:
        posts = list(session.scalars(select(Post)))
    assert all(p.status == PostStatus.QUEUED and p.priority == FAILURE_PRIORITY for p in posts)
    assert all(p.score_lease_owner is None for p in posts)
    assert Scorer(desk.sessions, desk.settings, provider).run().scored == 0  # nothing left to do


def test_a_multi_image_and_a_text_only_post(desk: Desk, tmp_path: Path, provider: TransformersProvider) -> None:
    for i in range(3):
        Image.new("RGB", (40 + i * 30, 60), (10, i * 90, 200)).save(tmp_path / f"m{i}.jpg")
    records = [
        {"external_id": "multi", "text": "三张图", "images": ["m0.jpg", "m1.jpg", "m2.jpg"]},
        {"external_id": "text", "text": "only words here"},
    ]
    ingest_records(desk.sessions, records, desk.settings, base_dir=tmp_path)
    stats = Scorer(desk.sessions, desk.settings, provider, batch_size=2, max_new_tokens=8).run()
    assert stats.scored == 2 and stats.model_calls == 2
    rows = {v.post_id: v for v in _verdicts(desk)}
    assert len(rows) == 2
    assert max(v.prompt_tokens or 0 for v in rows.values()) > min(v.prompt_tokens or 0 for v in rows.values())


def _score_process(desk: Desk, model: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "DATABASE_URL": desk.settings.database_url}
    env["MEDIA_DIR"] = str(desk.settings.media_dir)
    return subprocess.Popen(
        [sys.executable, "-m", "review", "score", "--model", str(model), "--quiet", "--max-new-tokens", "8", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_kill_9_leaves_nothing_half_written(desk: Desk, tmp_path: Path, tiny_model_dir: Path) -> None:
    ids = _posts(desk, tmp_path, 12)
    proc = _score_process(desk, tiny_model_dir, "--batch-size", "2", "--lease-seconds", "3")
    deadline = time.monotonic() + 120
    while len(_verdicts(desk)) < 2:  # killed in the middle of the run
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    verdicts = _verdicts(desk)
    with desk.sessions() as session:
        posts = {p.id: p for p in session.scalars(select(Post))}
    scored = {v.post_id for v in verdicts}
    assert len(verdicts) == len(scored)  # at most one verdict per post
    for pid, post in posts.items():  # a post is either fully scored or untouched
        assert (post.status == PostStatus.QUEUED) == (pid in scored)
    left = [pid for pid in ids if pid not in scored]
    assert left, "the worker finished before it was killed; make the run longer"

    time.sleep(3.2)  # the dead worker's leases run out; a new worker picks its posts up
    proc = _score_process(desk, tiny_model_dir, "--batch-size", "4")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert f"{len(left)} scored" in out
    with desk.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Verdict)) == 12
        assert session.scalar(select(func.count()).where(Post.status == PostStatus.UNSCORED)) == 0


def test_ctrl_c_finishes_the_batch_then_stops(sqlite_desk: Desk, tmp_path: Path, tiny_model_dir: Path) -> None:
    _posts(sqlite_desk, tmp_path, 12)
    proc = _score_process(sqlite_desk, tiny_model_dir, "--batch-size", "3")
    deadline = time.monotonic() + 120
    while not _verdicts(sqlite_desk):  # the first batch is stored: the worker is mid-run
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "finishing the current batch" in err
    scored = len(_verdicts(sqlite_desk))
    assert scored % 3 == 0 and 3 <= scored < 12  # whole batches only, and it did stop early
    assert f"{scored} scored" in out
    with sqlite_desk.sessions() as session:
        posts = list(session.scalars(select(Post)))
    assert sum(p.status == PostStatus.UNSCORED for p in posts) == 12 - scored
    assert all(p.score_lease_owner is None for p in posts)  # nothing left claimed


@pytest.fixture(scope="module")
def constrained(tiny_model_dir: Path) -> TransformersProvider:
    return TransformersProvider(str(tiny_model_dir), constrained=True, max_pixels=64 * 64, dtype="float32")


@pytest.mark.parametrize("batch_size", [2, 4])
def test_constrained_answers_parse_and_feed_the_cache(
    desk: Desk, tmp_path: Path, constrained: TransformersProvider, batch_size: int
) -> None:
    """Even random weights give schema-valid verdicts under constrained decoding; a later exact
    repost and a resized repost (near-duplicates on) reuse them instead of calling the model,
    whether they come in a later batch (2) or in the same one (4)."""
    base = Image.new("RGB", (96, 96), (230, 230, 230))
    for x in range(0, 96, 12):
        for y in range(0, 96, 12):
            if (x + y) % 24 == 0:
                base.paste((20, 20, 120), (x, y, x + 12, y + 12))
    base.save(tmp_path / "orig.png")
    base.resize((48, 48)).save(tmp_path / "small.png")
    Image.new("RGB", (64, 64), (200, 40, 40)).save(tmp_path / "other.png")
    records = [
        {"external_id": "orig", "text": "看图", "images": ["orig.png"]},
        {"external_id": "other", "text": "other post", "images": ["other.png"]},
        {"external_id": "repost", "text": "  看图 ", "images": ["orig.png"]},  # same bytes, same text
        {"external_id": "resized", "text": "看图", "images": ["small.png"]},  # near-duplicate image
    ]
    ingest_records(desk.sessions, records, desk.settings, base_dir=tmp_path)
    scorer = Scorer(
        desk.sessions, desk.settings, constrained, batch_size=batch_size, max_new_tokens=320, near_duplicates=True
    )
    stats = scorer.run()
    assert stats.scored == 4 and stats.model_calls == 2
    assert (stats.cache_hits, stats.near_duplicate_hits) == (2, 1)
    rows = {v.post_id: v for v in _verdicts(desk)}
    assert all(v.parse_status in ("ok", "repaired") for v in rows.values()), [v.error for v in rows.values()]
    assert all(v.category is not None and 0 <= (v.confidence or 0) <= 1 for v in rows.values())
    by_external = {}
    with desk.sessions() as session:
        for post in session.scalars(select(Post)):
            by_external[post.external_id] = rows[post.id]
    orig = by_external["orig"]
    assert not orig.cache_hit and not by_external["other"].cache_hit
    assert by_external["repost"].cached_from_id == orig.id  # each copy names the orig's verdict,
    assert by_external["resized"].cached_from_id == orig.id  # never the unrelated post's
    assert "cached_from" not in stats.summary() and "2 from the cache" in stats.summary()

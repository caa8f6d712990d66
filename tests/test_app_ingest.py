"""The Ingest and score page (pages/ingest.py) through Streamlit's AppTest: starting a scoring
worker, and the demo's simulated review history, offered while the demo posts wait with no
decision (uploads: tests/test_ingest_uploads.py)."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from db.models import ReviewEvent, Verdict
from review.demo import demo_waiting
from review.ingest import ingest_records
from review.worker import running_job
from tests.conftest import account, jsonl_bytes, open_app, open_page
from tests.factories import demo_world

PAGE = "pages/ingest.py"


pytestmark = pytest.mark.usefixtures("fresh_caches")


def _app(monkeypatch: pytest.MonkeyPatch, desk, role: str) -> AppTest:
    return open_page(monkeypatch, desk, account(desk, role), PAGE, timeout=120)


def _decisions(desk) -> int:
    with desk.sessions() as session:
        return session.scalar(select(func.count(ReviewEvent.id))) or 0


def test_admin_simulates_the_demo_history_on_the_ingest_page(monkeypatch, sqlite_desk) -> None:
    demo_world(sqlite_desk)
    at = _app(monkeypatch, sqlite_desk, "admin")
    assert not at.exception
    assert any("Trying the desk on the demo posts?" in m.value for m in at.markdown)
    at.button(key="simulate_demo").click().run()
    assert not at.exception
    assert _decisions(sqlite_desk) > 0 and not demo_waiting(sqlite_desk.sessions)
    assert not [b for b in at.button if b.key == "simulate_demo"]  # done once: the offer is gone
    told = [c.value for c in at.caption if c.value.startswith("Simulating the demo's review history is not offered")]
    assert told and "simulated on this desk already" in told[0] and "python -m review demo --history" in told[0]


def test_a_desk_without_demo_posts_says_why_there_is_no_history_to_simulate(monkeypatch, sqlite_desk) -> None:
    at = _app(monkeypatch, sqlite_desk, "admin")
    assert not at.exception and not [b for b in at.button if b.key == "simulate_demo"]
    assert any("no demo post waits in the queue" in c.value for c in at.caption)


def test_a_lead_is_told_an_admin_simulates_the_demo_history(monkeypatch, sqlite_desk) -> None:
    demo_world(sqlite_desk)
    at = _app(monkeypatch, sqlite_desk, "lead")
    assert not at.exception
    assert not [b for b in at.button if b.key == "simulate_demo"]
    assert any("An admin can do this" in c.value for c in at.caption)
    assert _decisions(sqlite_desk) == 0


def test_no_demo_offer_without_the_demo_set(monkeypatch, sqlite_desk) -> None:
    at = _app(monkeypatch, sqlite_desk, "admin")
    assert not at.exception
    assert not [b for b in at.button if b.key == "simulate_demo"]
    assert not any("demo" in m.value.lower() for m in at.markdown)


def test_operations_starts_a_scoring_worker(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    Image.new("RGB", (64, 64), (10, 200, 10)).save(tmp_path / "a.png")
    ingest_records(sqlite_desk.sessions, [{"external_id": "u1", "text": "加微信 abc12345 领红包", "images": ["a.png"]}],
                   sqlite_desk.settings, base_dir=tmp_path)  # fmt: skip
    at = open_app(monkeypatch, sqlite_desk, "lead", "pages/ingest.py")
    assert any("1 post waits for a verdict" in c.value for c in at.caption)
    at.selectbox(key="score_provider").select("baseline").run()
    at.button(key="score_start").click().run()
    assert not at.exception
    assert at.button(key="score_start").disabled  # at once: one worker from the app at a time
    job = running_job(sqlite_desk.settings)
    assert job is not None and job.process is not None
    job.process.wait(timeout=120)
    at.run()  # what the log's fragment does when the worker is seen to end
    assert any("0 posts wait for a verdict" in c.value for c in at.caption)
    deadline = datetime.now(UTC) + timedelta(seconds=120)
    while datetime.now(UTC) < deadline:
        with sqlite_desk.sessions() as session:
            if session.scalar(select(func.count(Verdict.id))):
                break
    with sqlite_desk.sessions() as session:
        verdict = session.scalars(select(Verdict)).one()
    assert verdict.provider == "baseline" and verdict.violation


def test_an_uploads_rejections_are_listed_whole_in_its_own_names(monkeypatch, sqlite_desk) -> None:
    """Every rejected record, with why, in the names the user uploaded (a zip's data file by its
    path in the archive), never a server folder; in a table and a CSV, kept over later clicks."""
    bad = [{"external_id": f"b{i}", "text": "x" * 300, "images": [f"missing-{i}.png"]} for i in range(30)]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("day1/posts.jsonl", jsonl_bytes({"external_id": "z", "images": ["gone.png"]}))
    at = open_app(monkeypatch, sqlite_desk, "lead", PAGE)
    at.file_uploader(key="ingest_files").set_value(
        [
            ("my posts.jsonl", jsonl_bytes(*bad), "application/json"),
            ("week 1.zip", archive.getvalue(), "application/zip"),
        ]
    )
    next(b for b in at.button if b.label == "Ingest").click().run()
    assert not at.exception
    for _ in range(2):  # the upload's run, and a later one
        assert any("0 added, 0 already present, 31 rejected" in w.value for w in at.warning)
        shown = next(df.value for df in at.dataframe if "why" in df.value.columns)
        assert len(shown) == 31 and list(shown["where"])[28:] == ["my posts.jsonl:29", "my posts.jsonl:30",
                                                                  "week 1.zip/day1/posts.jsonl:1"]  # fmt: skip
        assert "file not found: week 1.zip/day1/gone.png (" in shown["why"].iloc[30]
        assert "Download the 31 rejections (CSV)" in {b.proto.label for b in at.get("download_button")}
        assert "review-upload-" not in repr(at._tree)
        at.run()


def test_an_uploads_warnings_are_one_line_per_reason(monkeypatch, sqlite_desk) -> None:
    """Posts kept with a field left empty: one warning line per reason with the count, not one
    line per post (an export with 15,000 such dates printed 15,000 lines)."""
    records = [{"external_id": f"w{i}", "text": "a post", "created_at": "yesterday"} for i in range(3)]
    at = open_app(monkeypatch, sqlite_desk, "lead", PAGE)
    at.file_uploader(key="ingest_files").set_value([("posts.jsonl", jsonl_bytes(*records), "application/json")])
    next(b for b in at.button if b.label == "Ingest").click().run()
    assert not at.exception
    lines = [t.value for t in at.text if "created_at" in t.value]
    assert len(lines) == 1 and "3 records" in lines[0] and "posts.jsonl:1" in lines[0], lines

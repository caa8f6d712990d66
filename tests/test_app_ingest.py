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
from tests.conftest import account, jsonl_bytes, open_app, open_page, review_events, stored_posts
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


def test_an_export_goes_in_with_the_pages_reading_and_storing_options(monkeypatch, sqlite_desk) -> None:
    """The command line's options on the page: a tab-separated .txt read as TSV with its columns
    mapped, image ids naming files, a missing image skipped; then the same export with one text
    edited replaces that post's content only with "Replace changed posts" ticked."""
    header = "tweetId\ttweetText\timageId(s)\tuser\n"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        picture = io.BytesIO()
        Image.new("RGB", (16, 12), (200, 40, 40)).save(picture, format="PNG")
        zf.writestr("export/images/p1.png", picture.getvalue())
        zf.writestr("export/tweets.txt", header + '7\t"quoted" shark\tp1,p2\tann\n8\tplain\t\tbob\n')
    at = open_app(monkeypatch, sqlite_desk, "lead", PAGE)

    def upload(edited: bool = False, update: bool = False) -> None:
        data = archive.getvalue()
        if edited:
            edited_zip = io.BytesIO()
            with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(edited_zip, "w") as dst:
                for item in src.infolist():
                    content = src.read(item)
                    dst.writestr(item, content.replace(b"plain", b"plain, edited") if item.filename.endswith("txt")
                                 else content)  # fmt: skip
            data = edited_zip.getvalue()
        at.file_uploader(key="ingest_files").set_value([("export.zip", data, "application/zip")])
        at.selectbox(key="ingest_format").set_value("tsv")
        at.text_input(key="ingest_map").set_value("external_id=tweetId,text=tweetText,images=imageId(s),author=user")
        at.text_input(key="ingest_image_path").set_value("images/{}.*")
        at.checkbox(key="ingest_no_quoting").check()
        at.selectbox(key="ingest_missing").set_value("store the post without it")
        if update:
            at.checkbox(key="ingest_update").check()
        next(b for b in at.button if b.label == "Ingest").click().run()
        assert not at.exception

    upload()
    assert any("2 added, 0 already present, 0 rejected" in w.value for w in at.warning)  # with a warning
    assert any("image not found; the post is stored without it" in t.value for t in at.text)
    posts = stored_posts(sqlite_desk)
    assert (posts["7"].text, posts["7"].author) == ('"quoted" shark', "ann")  # no quoting: the quotes are text
    assert [m.original_name for m in posts["7"].media_links] == ["images/p1.png"]
    assert posts["7"].meta["missing_images"] == ["images/p2.*"]

    upload(edited=True)
    assert any("(1 of them with other content, kept: see the warnings)" in w.value for w in at.warning)
    assert stored_posts(sqlite_desk)["8"].text == "plain"
    upload(edited=True, update=True)
    assert any("0 added, 1 updated, 1 already present, 0 rejected" in s.value for s in at.success)
    assert stored_posts(sqlite_desk)["8"].text == "plain, edited"
    (event,) = [e for e in review_events(sqlite_desk) if e.action == "update"]
    assert event.user_id == account(sqlite_desk, "lead").id


def test_a_bad_option_on_the_page_ingests_nothing_and_says_why(monkeypatch, sqlite_desk) -> None:
    at = open_app(monkeypatch, sqlite_desk, "lead", PAGE)
    at.file_uploader(key="ingest_files").set_value([("p.jsonl", jsonl_bytes({"external_id": "a"}), "x")])
    at.text_input(key="ingest_map").set_value("textt=body")
    next(b for b in at.button if b.label == "Ingest").click().run()
    assert not at.exception and any("Nothing was ingested." in e.value for e in at.error)
    assert "textt" in at.code[0].value and stored_posts(sqlite_desk) == {}

"""The Posts page (pages/posts.py), the post browser, headless (AppTest): what an empty desk
says, search, filters and paging, plain-text rendering of untrusted text, verdict badges and
blurred thumbnails."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from db.models import Media, Post, PostMedia, Verdict
from review.demo import load_demo
from review.ingest import ingest_records
from review.media import data_uri
from tests.conftest import account, open_page

pytestmark = pytest.mark.usefixtures("fresh_caches")


def _app(monkeypatch: pytest.MonkeyPatch, desk, role: str = "moderator") -> AppTest:
    """The app on the Posts page, signed in as a user of ``role``, after its first run."""
    return open_page(monkeypatch, desk, account(desk, role), "pages/posts.py", timeout=30)


def test_empty_database_explains_how_to_load(sqlite_desk, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(monkeypatch, sqlite_desk)
    assert not at.exception
    assert any("python -m review demo" in info.value for info in at.info)


def test_browser_lists_searches_and_pages(sqlite_desk, monkeypatch: pytest.MonkeyPatch) -> None:
    load_demo(sqlite_desk.sessions, sqlite_desk.settings)
    at = _app(monkeypatch, sqlite_desk)
    assert not at.exception
    table = at.dataframe[0].value
    assert len(table) == 20
    assert "40 posts match" in at.caption[0].value
    assert table["thumbnail"].iloc[0].startswith("data:image/jpeg;base64,")

    at.button(key="posts_older").click().run()
    second = at.dataframe[0].value
    assert len(second) == 20 and set(second.index).isdisjoint(table.index)
    assert at.button(key="posts_older").disabled

    at.text_input(key="posts_search").input("岁月静好").run()
    found = at.dataframe[0].value
    assert len(found) >= 3 and all("岁月静好" in t for t in found["text"])
    assert "posts match" in at.caption[0].value

    at.text_input(key="posts_search").input("no such words anywhere").run()
    assert any("No post matches" in info.value for info in at.info)


def test_source_and_status_filters(sqlite_desk, monkeypatch: pytest.MonkeyPatch) -> None:
    with sqlite_desk.sessions() as session, session.begin():
        for i in range(5):
            session.add(Post(source="weibo" if i < 3 else "douyin", external_id=str(i), text=f"t{i}"))
        session.add(Post(source="weibo", external_id="q", text="queued one", status="queued"))
    at = _app(monkeypatch, sqlite_desk)
    source = at.selectbox(key="posts_source")
    assert source.options == ["All sources", "douyin (2)", "weibo (4)"]
    source.select("weibo").run()
    assert len(at.dataframe[0].value) == 4
    at.selectbox(key="posts_status").select("queued").run()
    table = at.dataframe[0].value
    assert list(table["text"]) == ["queued one"]
    assert "1 post matches" in at.caption[0].value


def test_post_text_is_plain_text(sqlite_desk, monkeypatch: pytest.MonkeyPatch) -> None:
    """Untrusted text never reaches markdown or HTML rendering."""
    hostile = "**bold** <script>alert(1)</script> [link](javascript:alert(1)) <img src=x onerror=alert(1)>"
    with sqlite_desk.sessions() as session, session.begin():
        session.add(Post(source="x", external_id="evil", text=hostile, author="<b>me</b>"))
    at = _app(monkeypatch, sqlite_desk)
    row = at.dataframe[0].value.iloc[0]
    assert (row["text"], row["author"]) == (hostile, "<b>me</b>")
    assert all("alert" not in md.value and "<b>me" not in md.value for md in at.markdown)


def test_verdicts_and_blurred_thumbnails_in_the_table(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    """The latest verdict is a badge in the table; a post whose verdict is in a category the
    policy blurs gets an obscured thumbnail, the others the stored one."""
    Image.new("RGB", (200, 150), (200, 40, 40)).save(tmp_path / "a.png")
    Image.new("RGB", (200, 150), (40, 40, 200)).save(tmp_path / "b.png")
    records = [
        {"external_id": "gore", "text": "warning", "images": ["a.png"]},
        {"external_id": "calm", "text": "a lake", "images": ["b.png"]},
    ]
    ids = ingest_records(sqlite_desk.sessions, records, sqlite_desk.settings, base_dir=tmp_path).post_ids
    with sqlite_desk.sessions() as session, session.begin():
        for post_id, violation, category in ((ids[0], True, "violence_gore"), (ids[1], False, "none")):
            session.add(
                Verdict(
                    post_id=post_id,
                    provider="transformers",
                    model_id="m",
                    prompt_version="p@1",
                    input_hash=f"h{post_id}",
                    text_hash=f"t{post_id}",
                    parse_status="ok",
                    violation=violation,
                    category=category,
                    severity=2 if violation else 0,
                    confidence=0.9,
                    tags=[],
                    parse_notes=[],
                    rationale="r",
                )  # fmt: skip
            )
        thumbs = dict(
            session.execute(
                select(PostMedia.post_id, Media.thumb_path).join(Media, Media.id == PostMedia.media_id)
            ).all()
        )
    at = _app(monkeypatch, sqlite_desk)
    assert not at.exception
    table = at.dataframe[0].value
    media_dir = sqlite_desk.settings.media_dir
    assert table.loc[ids[0], "verdict"] == "⚠ violence_gore 0.90"
    assert table.loc[ids[1], "verdict"] == "✓ no violation 0.90"
    assert table.loc[ids[0], "thumbnail"] == data_uri(media_dir, thumbs[ids[0]], blur=True)
    assert table.loc[ids[0], "thumbnail"] != data_uri(media_dir, thumbs[ids[0]])
    assert table.loc[ids[1], "thumbnail"] == data_uri(media_dir, thumbs[ids[1]])

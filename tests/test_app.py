"""The Streamlit app, headless (AppTest): the schema guard, the post browser, plain-text rendering."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from db.models import Post
from review.demo import load_demo

DASHBOARD = str(Path(__file__).resolve().parents[1] / "dashboard.py")


def _app(monkeypatch: pytest.MonkeyPatch, desk) -> AppTest:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    return AppTest.from_file(DASHBOARD, default_timeout=30)


def _clear_cache() -> None:
    import streamlit as st

    st.cache_resource.clear()  # the desk is cached per process; each test has its own database


def test_out_of_date_schema_stops_the_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_cache()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    at = AppTest.from_file(DASHBOARD, default_timeout=30).run()
    assert not at.exception
    assert len(at.error) == 1
    assert "cannot start" in at.error[0].value
    assert "python -m review db upgrade" in at.code[0].value  # verbatim, ready to copy
    assert not at.dataframe  # nothing else rendered


def test_empty_database_explains_how_to_load(sqlite_desk, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    _clear_cache()
    at = _app(monkeypatch, sqlite_desk).run()
    assert not at.exception
    assert any("python -m review demo" in info.value for info in at.info)


def test_browser_lists_searches_and_pages(sqlite_desk, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    _clear_cache()
    load_demo(sqlite_desk.sessions, sqlite_desk.settings)
    at = _app(monkeypatch, sqlite_desk).run()
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


def test_source_and_status_filters(sqlite_desk, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    _clear_cache()
    with sqlite_desk.sessions() as session, session.begin():
        for i in range(5):
            session.add(Post(source="weibo" if i < 3 else "douyin", external_id=str(i), text=f"t{i}"))
        session.add(Post(source="weibo", external_id="q", text="queued one", status="queued"))
    at = _app(monkeypatch, sqlite_desk).run()
    source = at.selectbox(key="posts_source")
    assert source.options == ["All sources", "douyin (2)", "weibo (4)"]
    source.select("weibo").run()
    assert len(at.dataframe[0].value) == 4
    at.selectbox(key="posts_status").select("queued").run()
    table = at.dataframe[0].value
    assert list(table["text"]) == ["queued one"]
    assert "1 post matches" in at.caption[0].value


def test_post_text_is_plain_text(sqlite_desk, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Untrusted text never reaches markdown or HTML rendering."""
    _clear_cache()
    hostile = "**bold** <script>alert(1)</script> [link](javascript:alert(1)) <img src=x onerror=alert(1)>"
    with sqlite_desk.sessions() as session, session.begin():
        session.add(Post(source="x", external_id="evil", text=hostile, author="<b>me</b>"))
    at = _app(monkeypatch, sqlite_desk).run()
    row = at.dataframe[0].value.iloc[0]
    assert (row["text"], row["author"]) == (hostile, "<b>me</b>")
    assert all("alert" not in md.value and "<b>me" not in md.value for md in at.markdown)

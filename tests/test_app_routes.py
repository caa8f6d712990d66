"""app.py's sign-in session routes on a real server: `streamlit run app.py` on a free loopback
port, talked to with httpx as a browser's fetch and beacon would (the same flow in Chromium is
in tests/test_browser.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2 as httpx
import pytest

from db.models import Post, SessionEnd, WebSession
from review import websession
from review.decisions import LEAVE_GRACE, claim
from review.desk import Desk
from tests.conftest import REPO
from tests.factories import queued_posts_with_verdicts, staff
from tests.live_app import served_app


@pytest.fixture
def served(sqlite_desk: Desk, tmp_path: Path) -> Iterator[tuple[Desk, str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "DATABASE_URL": sqlite_desk.settings.database_url,
           "MEDIA_DIR": str(sqlite_desk.settings.media_dir)}  # fmt: skip
    with served_app(tmp_path, env) as url:
        yield sqlite_desk, url


def test_the_cookie_routes_answer_same_origin_requests_only(served) -> None:
    desk, url = served
    p = staff(desk)
    ann = p["ann"]
    started = websession.start(desk.sessions, ann, desk.settings)

    with httpx.Client(base_url=url) as browser:
        # another site's page cannot trade a code, even a good one; the code stays good for us
        assert browser.post(websession.TRADE_PATH, content=started.handoff,
                            headers={"Origin": "https://evil.example"}).status_code == 403  # fmt: skip
        assert browser.post(websession.TRADE_PATH, content="x" * 300).status_code == 400
        answer = browser.post(websession.TRADE_PATH, content=started.handoff, headers={"Origin": url})
        assert answer.status_code == 204 and answer.content == b""
        cookie = answer.headers["set-cookie"]
        token = browser.cookies[websession.COOKIE]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # SESSION_COOKIE_SECURE is off: plain http://127.0.0.1 works
        max_age = int(cookie.split("Max-Age=")[1].split(";")[0])
        assert abs(max_age - desk.settings.session_max_hours * 3600) < 60
        assert browser.post(websession.TRADE_PATH, content=started.handoff).status_code == 403  # once
        live = websession.resume(desk.sessions, token, desk.settings)
        assert isinstance(live, websession.Live) and live.actor == ann

        # the beacon of a closing Review tab: the claim's lease is cut to LEAVE_GRACE
        post_id = queued_posts_with_verdicts(desk, ["fraud_spam"])[0]
        claim(desk.sessions, ann, post_id)
        for body, status in (("not a post", 400), ("", 400)):
            assert browser.post(websession.LEAVE_PATH, content=body).status_code == status
        assert httpx.post(f"{url}{websession.LEAVE_PATH}", content=str(post_id)).status_code == 403  # no cookie
        assert browser.post(websession.LEAVE_PATH, content=str(post_id)).status_code == 204
        with desk.sessions() as session:
            left = session.get(Post, post_id).lease_expires_at - datetime.now(UTC)
        assert timedelta(0) < left <= LEAVE_GRACE

        # sign-out: the session ends and the cookie is deleted
        out = browser.post(websession.SIGN_OUT_PATH)
        assert out.status_code == 204 and 'review_session=""' in out.headers["set-cookie"]
        assert "Max-Age=0" in out.headers["set-cookie"]
        with desk.sessions() as session:
            assert session.get(WebSession, live.session_id).end_reason == SessionEnd.SIGNED_OUT
        # the old cookie, replayed, signs no one in and moves no claim
        assert httpx.post(f"{url}{websession.LEAVE_PATH}", content=str(post_id),
                          cookies={websession.COOKIE: token}).status_code == 403  # fmt: skip

"""The app as users get it: `streamlit run app.py` in a child process on a free loopback port,
and Debian's chromium to open it (tests/test_browser.py, tests/test_app_routes.py,
bench/floor.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import REPO, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# In the page: are the pictures of the post on the Review page loaded? The page's own rule
# (PICTURE_FIRST in pages/review.py), which holds decisions back until then.
PICTURES_LOADED = "() => typeof window.reviewPicturesLoading === 'function' && !window.reviewPicturesLoading()"
# In the page: is the Review page's Confirm there (not a leftover of the last post) and usable?
CONFIRM_ENABLED = """() => [...document.querySelectorAll('.st-key-review_confirm button')]
  .some((b) => !b.closest('[data-stale="true"]') && !b.disabled)"""


@contextmanager
def served_app(cwd: Path, env: dict[str, str]) -> Iterator[str]:
    """``streamlit run app.py`` with ``env`` (the desk's settings), from ``cwd``; its URL once
    it answers. Its output goes to ``cwd/streamlit.log`` (a pipe nobody reads would fill and
    stall it); RuntimeError with that output when it does not start within a minute."""
    port = free_port()
    log_path = cwd / "streamlit.log"
    streamlit = shutil.which("streamlit", path=str(Path(sys.executable).parent))
    assert streamlit, "streamlit is not installed in this environment"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [streamlit, "run", str(REPO / "app.py"), "--server.headless", "true", "--server.address", "127.0.0.1",
             "--server.port", str(port), "--browser.gatherUsageStats", "false"],
            cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    server.wait()
                    raise RuntimeError(f"the app did not start:\n{log_path.read_text(errors='replace')}") from None
                time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


def sign_in(browser, url: str, name: str, password: str):
    """A new browser (a context: its own cookies) on ``url``, signed in as ``name``; its first tab."""
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(url)
    sign_in_here(page, name, password)
    return page


def sign_in_here(page, name: str, password: str) -> None:
    """Fill and send the sign-in form shown on ``page``; wait until it is signed in and the
    browser holds the session cookie (the page fetches it just after showing the user, so a
    reload at once would still find none, and a cookie of an ended session may still be there)."""
    page.get_by_role("textbox", name="Username").wait_for(timeout=30_000)
    before = [c["value"] for c in page.context.cookies() if c["name"] == "review_session"]
    # the app's run done first: a form filled while the page is still being drawn may lose its input
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=30_000)
    page.get_by_role("textbox", name="Username").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.keyboard.press("Enter")
    page.get_by_text(f"Signed in as {name}").wait_for(timeout=30_000)
    session_cookie(page, other_than=before[0] if before else None)


def session_cookie(page, other_than: str | None = None) -> dict:
    """The app's session cookie in ``page``'s browser, once the sign-in's hand-over has set it
    (one whose value is not ``other_than``: the cookie of a session that ended)."""
    for _ in range(100):
        found = [c for c in page.context.cookies() if c["name"] == "review_session" and c["value"] != other_than]
        if found:
            return found[0]
        page.wait_for_timeout(100)
    raise AssertionError("the browser got no session cookie within 10 s of signing in")

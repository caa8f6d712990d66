"""The app in a real browser: Debian's chromium driven by Playwright against `streamlit run`
on 127.0.0.1, with the demo data loaded the way the README's first command loads it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

HOSTILE = "**bold** <script>window.pwned=1</script> <img src=x onerror=window.pwned=1> [x](javascript:alert(1))"

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed in CI (.ci/run installs it)")
        pytest.skip("Debian chromium is not installed (apt-get install chromium chromium-driver)")
    home = tmp_path_factory.mktemp("app")
    env = {**os.environ, "PYTHONPATH": str(REPO), "DATABASE_URL": f"sqlite:///{home / 'review.db'}"}
    env["MEDIA_DIR"] = str(home / "media")
    env["MODEL"] = str(home / "no-weights")  # as on a fresh machine: the demo is scored by the baseline
    hostile = {"external_id": "x1", "source": "zz", "author": "**eve**", "text": HOSTILE}
    (home / "hostile.jsonl").write_text(json.dumps(hostile) + "\n", encoding="utf-8")
    for command in (["db", "upgrade"], ["demo"], ["ingest", "hostile.jsonl"]):
        subprocess.run([sys.executable, "-m", "review", *command], cwd=home, env=env, check=True, capture_output=True)
    port = _free_port()
    streamlit = shutil.which("streamlit", path=str(Path(sys.executable).parent))
    assert streamlit, "streamlit is not installed in this environment"
    server = subprocess.Popen(
        [streamlit, "run", str(REPO / "dashboard.py"), "--server.headless", "true", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
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
                    output = server.stdout.read().decode() if server.stdout else ""
                    pytest.fail(f"streamlit did not start:\n{output}")
                time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_post_browser_in_chromium(app_url: str, browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(app_url)
    page.get_by_text("41 posts match").wait_for(timeout=30_000)
    grid = page.locator('[data-testid="stDataFrame"]')
    grid.wait_for()
    page.screenshot(path=str(tmp_path / "posts.png"))

    # Select the first row (checkbox column of the canvas grid): the post's detail opens.
    box = grid.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 14, box["y"] + 36 + 32)  # header ~36 px, rows 64 px
    page.get_by_text("Post 41").wait_for(timeout=15_000)
    # Untrusted text is shown verbatim: no markup rendered, no script run.
    page.locator('[data-testid="stText"]', has_text="<script>window.pwned=1</script>").wait_for()
    assert page.evaluate("window.pwned") is None
    assert page.locator("main strong", has_text="bold").count() == 0

    # Select a row far down the page, then narrow the list: no stale selection, no crash.
    page.mouse.click(box["x"] + 14, box["y"] + 36 + 64 * 6 + 32)
    page.get_by_text("Post 35").wait_for(timeout=15_000)
    # Its verdict, labelled as the baseline's, with the rationale as plain text.
    page.get_by_text("baseline rules, not a model", exact=False).wait_for(timeout=15_000)
    page.locator('[data-testid="stText"]', has_text="Baseline rules —").first.wait_for()
    # Older → shows the next page; search narrows the list.
    page.get_by_role("button", name="Older").click()
    page.get_by_role("button", name="Newer").wait_for()
    search = page.get_by_role("textbox", name="Search")
    search.fill("岁月静好")
    search.press("Enter")
    page.get_by_text("3 posts match").wait_for(timeout=15_000)
    page.get_by_text("Select a row to see the post.").wait_for()  # the old selection is not carried over
    page.screenshot(path=str(tmp_path / "search.png"))
    assert page.locator('[data-testid="stException"]').count() == 0
    page.close()

"""The app in a real browser: Debian's chromium driven by Playwright against `streamlit run
app.py` (as scripts/start.sh serves it, with the sign-in session's routes) on 127.0.0.1, with the
demo data loaded the way the README's first command loads it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from review.config import Settings
from review.decisions import LEAVE_GRACE
from tests.conftest import REPO
from tests.live_app import (
    CHROMIUM,
    CHROMIUM_ARGS,
    CONFIRM_ENABLED,
    PICTURES_LOADED,
    served_app,
    session_cookie,
    sign_in,
    sign_in_here,
)

HOSTILE = (
    "**bold** <script>window.pwned=1</script> <img src=x onerror=window.pwned=1> [x](javascript:alert(1)) "
    "$\\frac{1}{2}$"
)

pytestmark = pytest.mark.browser


MODERATOR = ("mia", "mia's long password")


@dataclass(frozen=True)
class App:
    url: str
    database_url: str


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
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
    commands = (["db", "upgrade"], ["demo"], ["ingest", "hostile.jsonl"], ["score", "--provider", "baseline"])
    for command in commands:
        subprocess.run([sys.executable, "-m", "review", *command], cwd=home, env=env, check=True, capture_output=True)
    for (name, password), role in ((("root", "root's long password"), "admin"), (MODERATOR, "moderator")):
        subprocess.run([sys.executable, "-m", "review", "user", "add", name, "--role", role, "--password-stdin"],
                       cwd=home, env=env, check=True, capture_output=True, input=password.encode())  # fmt: skip
    try:
        with served_app(home, env) as url:
            yield App(url, env["DATABASE_URL"])
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _sign_in(browser, app: App, name: str, password: str):
    return sign_in(browser, app.url, name, password)


def _idle(page) -> None:
    """Wait until the app has finished its rerun, and take the focus off any input (single-key
    shortcuts do not fire while typing)."""
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=30_000)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.wait_for_timeout(300)


def _settled(page) -> None:
    """Wait until the app has finished its rerun, leaving the focus where the page put it."""
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=30_000)


def _focus_in(page, container_key: str) -> None:
    """The keyboard focus is inside the container with ``container_key`` (st.container(key=...))."""
    page.wait_for_function(
        "(key) => !!document.activeElement && !!document.activeElement.closest('.st-key-' + key)",
        arg=container_key,
        timeout=15_000,
    )


def test_post_browser_in_chromium(app: App, browser, tmp_path: Path) -> None:
    page = _sign_in(browser, app, *MODERATOR)
    page.get_by_role("link", name="Posts").click()
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


def _events(app: App, columns: str = "post_id, action, label_category") -> list[tuple]:
    from sqlalchemy import create_engine, text

    engine = create_engine(app.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(f"SELECT {columns} FROM review_event ORDER BY id"))
            return [tuple(r) for r in rows]
    finally:
        engine.dispose()


def _choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the select box ``label``; once more if a rerun closed the dropdown."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = page.locator("[data-testid=stSelectbox]", has_text=label)
    for _ in range(3):
        if box.locator("input").first.input_value() == option:
            return
        page.get_by_role("combobox", name=label).click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=5_000)
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
        _settled(page)
    assert box.locator("input").first.input_value() == option


def _only_escalated(page) -> None:
    """The Queue page with its filter on escalated posts (a lead's), and the one post there.
    The filters may be kept from an earlier visit, expanded or not."""
    page.get_by_role("link", name="Queue").click()
    page.get_by_text("posts waiting").first.wait_for(timeout=30_000)
    _idle(page)
    if not page.get_by_role("combobox", name="Escalated").is_visible():
        page.get_by_text("Filters", exact=True).click()  # collapsed by default
    _choose(page, "Escalated", "only escalated")
    page.get_by_text("1 posts waiting under these filters").wait_for(timeout=30_000)
    _idle(page)


def test_a_moderator_works_the_queue_by_keyboard(app: App, browser, tmp_path: Path) -> None:
    """Sign in, take the next post, reveal its blurred image, confirm with the keyboard,
    overturn the next ones (O alone saves nothing and asks for the label, with the focus on the
    categories; the category's key, and the severity, complete it), undo, open the history,
    escalate (refused without a reason, then with one), sign out; every action is in
    review_event. Then a lead reads the reason in the queue and on the post, and decides it in
    bulk, where an overturn also waits for a label chosen on purpose."""
    page = _sign_in(browser, app, *MODERATOR)
    # the queue of graphic posts: the Queue page's filter is the one "Next" claims under
    page.get_by_role("link", name="Queue").click()
    page.get_by_text("posts waiting").first.wait_for(timeout=30_000)
    _idle(page)
    page.get_by_text("Filters", exact=True).click()  # collapsed by default
    _choose(page, "Category", "violence_gore")
    page.get_by_text("posts waiting under these filters").wait_for(timeout=30_000)
    page.get_by_role("link", name="Review").click()
    page.get_by_text("to take the next post of the queue").wait_for(timeout=30_000)
    _idle(page)
    page.keyboard.press("n")
    page.get_by_text("Label for overturn").wait_for(timeout=30_000)
    _idle(page)
    first = int(page.get_by_role("heading", name="Post ").inner_text().split()[-1])
    # the demo's graphic placeholders are blurred
    page.get_by_text("Blurred: category violence_gore").wait_for()
    page.screenshot(path=str(tmp_path / "blurred.png"))
    page.keyboard.press("v")
    page.get_by_text("Blurred:").wait_for(state="detached", timeout=15_000)
    _idle(page)
    assert page.get_by_role("button", name="Reveal images").count() == 0  # nothing left to reveal
    page.keyboard.press("y")
    page.get_by_text(f"Post {first}: confirm saved").wait_for(timeout=15_000)
    _idle(page)
    second = int(page.get_by_role("heading", name="Post ").inner_text().split()[-1])
    assert second != first

    # overturn: O with nothing chosen saves nothing, asks for the label and puts the focus on
    # the categories; the category's key then completes it. This flagged post (violence_gore)
    # gets "no violation" only by O and then 0, on purpose.
    before = len(_events(app))
    page.keyboard.press("o")
    page.get_by_text("Overturn: nothing saved yet. Choose the new label").wait_for(timeout=15_000)
    _settled(page)
    _focus_in(page, "review_categories")
    page.screenshot(path=str(tmp_path / "choose-label.png"))
    assert len(_events(app)) == before
    page.keyboard.press("0")
    page.get_by_text(f"Post {second}: overturn saved").wait_for(timeout=15_000)
    _idle(page)
    labelled = "post_id, action, label_category, label_severity"
    assert _events(app, labelled)[before] == (second, "overturn", "none", 0)

    page.keyboard.press("u")
    page.get_by_text(f"Undone: your overturn of post {second}").wait_for(timeout=15_000)
    page.get_by_role("heading", name=f"Post {second}").wait_for()
    _idle(page)
    page.keyboard.press("h")
    dialog = page.get_by_role("dialog")
    dialog.get_by_text(f"History of post {second}").wait_for(timeout=15_000)
    page.screenshot(path=str(tmp_path / "history.png"))
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached", timeout=15_000)
    _idle(page)

    # a violation also needs its severity: 3 (hate_harassment), then O asks for it, Shift+2 saves
    before = len(_events(app))
    page.keyboard.press("3")
    _idle(page)
    page.keyboard.press("o")
    page.get_by_text("Overturn: nothing saved yet. Choose the severity").wait_for(timeout=15_000)
    _settled(page)
    _focus_in(page, "review_severity")
    assert len(_events(app)) == before
    page.keyboard.press("Shift+2")
    page.get_by_text(f"Post {second}: overturn saved").wait_for(timeout=15_000)
    _idle(page)
    assert _events(app, labelled)[before] == (second, "overturn", "hate_harassment", 2)
    page.keyboard.press("u")
    page.get_by_text(f"Undone: your overturn of post {second}").wait_for(timeout=15_000)
    _idle(page)

    # escalate: refused without a reason (the focus goes to the note), saved with one
    before = len(_events(app))
    page.keyboard.press("e")
    page.get_by_text("Escalation: nothing saved. Write the reason in the note").wait_for(timeout=15_000)
    _settled(page)
    _focus_in(page, "review_note")
    assert len(_events(app)) == before
    reason = "Looks staged: a lead should check the source"
    page.keyboard.type(reason)
    page.keyboard.press("Tab")
    _idle(page)
    page.keyboard.press("e")
    page.get_by_text(f"Post {second}: escalate saved").wait_for(timeout=15_000)
    _idle(page)
    assert [e for e in _events(app, "post_id, action, note") if e[1] == "escalate"] == [(second, "escalate", reason)]

    mine = [(post, action) for post, action, *_ in _events(app) if post in (first, second)]
    assert mine == [
        (first, "claim"), (first, "confirm"), (second, "claim"), (second, "overturn"), (second, "reopen"),
        (second, "overturn"), (second, "reopen"), (second, "escalate"),
    ]  # fmt: skip
    assert page.locator('[data-testid="stException"]').count() == 0

    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("textbox", name="Username").wait_for(timeout=15_000)
    page.close()

    # a lead opens the escalated post from the queue and reads why
    page = _sign_in(browser, app, "root", "root's long password")
    _only_escalated(page)
    page.screenshot(path=str(tmp_path / "escalated-queue.png"))
    box = page.locator('[data-testid="stDataFrame"]').first.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 14, box["y"] + 36 + 32)
    page.get_by_role("button", name="Review the selected post").click()
    page.get_by_role("heading", name=f"Post {second}").wait_for(timeout=30_000)
    page.get_by_text("Escalated for a lead to decide").wait_for(timeout=15_000)
    page.locator('[data-testid="stText"]', has_text=f"mia: {reason}").wait_for()
    page.screenshot(path=str(tmp_path / "escalated.png"))

    # the lead decides it in bulk: overturn without a label decides nothing and asks for one
    _only_escalated(page)  # the Queue page's filters start afresh after another page
    box = page.locator('[data-testid="stDataFrame"]').first.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 14, box["y"] + 36 + 32)
    page.get_by_role("button", name="Decide 1 post").wait_for(timeout=15_000)  # no decision is preset
    _idle(page)
    _choose(page, "Decision", "overturn")
    page.get_by_role("button", name="Overturn 1 post").click()
    page.get_by_text("Nothing was decided. Choose the new label first").wait_for(timeout=15_000)
    _settled(page)
    _focus_in(page, "bulk_categories")
    page.screenshot(path=str(tmp_path / "bulk-choose.png"))
    before = len(_events(app))
    page.keyboard.press("0")  # the key picks the category here too
    _idle(page)
    assert len(_events(app)) == before
    page.get_by_role("button", name="Overturn 1 post").click()
    page.get_by_text("No post waits under these filters.").wait_for(timeout=15_000)  # it was the only one
    assert _events(app, "post_id, action, label_category, bulk_id IS NOT NULL")[before:] == [
        (second, "overturn", "none", 1)
    ]
    assert page.locator('[data-testid="stException"]').count() == 0
    page.close()


def test_untrusted_text_on_the_review_page_is_literal(app: App, browser) -> None:
    """The hostile post (HTML, script, markdown link, LaTeX-ish text) opened from the queue."""
    page = _sign_in(browser, app, "root", "root's long password")
    page.get_by_role("link", name="Queue").click()
    page.get_by_text("posts waiting").first.wait_for(timeout=30_000)
    page.get_by_text("Filters", exact=True).click()  # collapsed by default
    page.get_by_role("textbox", name="Source").fill("zz")
    page.keyboard.press("Enter")
    page.get_by_text("1 posts waiting under these filters").wait_for(timeout=15_000)
    _settled(page)  # the rerun's end: the table before the filter (kept while it ran) is gone
    page.wait_for_function("() => document.querySelectorAll('[data-testid=stDataFrame]').length === 1")
    grid = page.locator('[data-testid="stDataFrame"]')
    box = grid.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 14, box["y"] + 36 + 32)
    page.get_by_role("button", name="Review the selected post").click()
    page.get_by_text("Label for overturn").wait_for(timeout=30_000)
    page.locator('[data-testid="stText"]', has_text="<script>window.pwned=1</script>").wait_for()
    page.locator('[data-testid="stText"]', has_text="[x](javascript:alert(1))").wait_for()
    assert page.evaluate("window.pwned") is None
    assert page.locator("main strong", has_text="bold").count() == 0
    assert page.locator("main a[href^='javascript']").count() == 0
    page.close()


def test_a_lead_drills_down_from_the_confusion_matrix(app: App, browser, tmp_path: Path) -> None:
    """The demo history simulated from the command line; on Accuracy, a click on a heatmap cell
    picks that cell's human and model categories and lists its posts."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "DATABASE_URL": app.database_url}
    done = subprocess.run([sys.executable, "-m", "review", "demo", "--history"], env=env, capture_output=True)
    assert done.returncode == 0 or b"already" in done.stderr, done.stderr
    page = _sign_in(browser, app, "root", "root's long password")
    page.get_by_role("link", name="Accuracy").click()
    page.locator("[data-testid=stMetricLabel]", has_text="Decided posts").wait_for(timeout=30_000)
    _idle(page)
    page.get_by_role("tab", name="Confusion").click()
    cells = page.locator("[data-testid=stVegaLiteChart] g.mark-rect path").filter(visible=True)
    cells.first.wait_for(timeout=30_000)
    cells.first.click()  # the top-left cell: the first category against itself
    _idle(page)

    def picked(label: str) -> str:
        box = page.locator("[data-testid=stSelectbox]", has_text=label)
        return box.locator("input").first.input_value()

    first = picked("Humans said")  # before the click, the pickers showed the largest wrong cell
    assert first and picked("Model said") == first
    from sqlalchemy import create_engine, text

    engine = create_engine(app.database_url)
    with engine.connect() as conn:
        wrong = conn.execute(text("SELECT count(*) FROM post_label WHERE human_category != model_category")).scalar()
    engine.dispose()
    assert wrong, "the demo history has no wrong cell: the click would be indistinguishable from the default"
    page.locator("[data-testid=stDataFrame]").filter(visible=True).first.wait_for()
    page.get_by_text("Select a row to see that post's review history or open it on Review.").wait_for()
    assert f"human={first}" in page.url and f"model={first}" in page.url  # the cell is in the address
    page.reload()  # ... so a reload (or the link, sent) opens the same cell
    page.locator("[data-testid=stDataFrame]").filter(visible=True).first.wait_for(timeout=30_000)
    _idle(page)
    assert picked("Humans said") == first and picked("Model said") == first
    page.screenshot(path=str(tmp_path / "confusion.png"))
    assert page.locator('[data-testid="stException"]').count() == 0
    page.close()


def test_an_admin_makes_a_token_that_is_shown_once(app: App, browser, tmp_path: Path) -> None:
    """On Integrations, an admin makes a token with two scopes: it is shown once, it works (its
    hash is what the database holds), and back on the page after another, it is shown no more."""
    from review.desk import open_desk
    from review.tokens import Scope, authenticate, token_hash

    page = _sign_in(browser, app, "root", "root's long password")
    page.get_by_role("link", name="Integrations").click()
    page.get_by_text("Make a token").wait_for(timeout=30_000)
    _idle(page)
    page.get_by_role("textbox", name="Name").fill("acme")
    for scope in ("ingest", "decisions"):  # a multiselect inside a form: no rerun between picks
        page.get_by_role("combobox", name="Scopes").click()
        page.get_by_role("option", name=scope, exact=True).click()
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Make token").click()
    shown = page.locator("[data-testid=stCode]").filter(has_text="rd_")
    shown.wait_for(timeout=30_000)
    token = shown.inner_text().strip()
    page.screenshot(path=str(tmp_path / "token.png"))
    desk = open_desk(Settings(database_url=app.database_url))
    try:
        info = authenticate(desk.sessions, token)
        assert info is not None and info.name == "acme" and info.scopes == (Scope.INGEST, Scope.DECISIONS)
        with desk.engine.connect() as conn:  # the database holds the hash, never the token
            stored = conn.exec_driver_sql("SELECT token_hash FROM api_token WHERE name = 'acme'").scalar()
            assert stored == token_hash(token)
    finally:
        desk.engine.dispose()
    page.get_by_role("link", name="Posts").click()
    _idle(page)
    page.get_by_role("link", name="Integrations").click()
    page.get_by_text("Make a token").wait_for(timeout=30_000)
    _idle(page)
    assert token not in page.content() and page.locator('[data-testid="stException"]').count() == 0
    page.close()


def _signed_in_as(page, name: str) -> None:
    page.get_by_text(f"Signed in as {name}").wait_for(timeout=30_000)


def test_a_sign_in_survives_reloads_and_new_tabs_until_it_ends(app: App, browser) -> None:
    """The session cookie: HttpOnly and SameSite=Strict; a reload of any page keeps the user on
    that page signed in (no "Page not found"); a new tab is signed in; sign-out ends it in every
    tab and a replayed cookie signs no one in; an admin's deactivation signs the user out with
    the reason; a link to a page while signed out opens that page after the sign-in."""
    page = _sign_in(browser, app, *MODERATOR)
    cookie = session_cookie(page)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert "review_session" not in page.evaluate("document.cookie")  # page scripts never see it

    page.goto(f"{app.url}/queue")
    _signed_in_as(page, MODERATOR[0])
    page.reload()
    _signed_in_as(page, MODERATOR[0])
    page.get_by_role("heading", name="Queue").wait_for()
    assert page.url.endswith("/queue")
    assert not page.get_by_text("Page not found").is_visible()
    second = page.context.new_page()  # a new tab of the same browser
    second.goto(f"{app.url}/posts")
    _signed_in_as(second, MODERATOR[0])
    # toolbarMode = "minimal" (.streamlit/config.toml, found beside app.py): no Deploy button
    assert second.locator("[data-testid=stAppDeployButton], [data-testid=stMainMenu]").count() == 0

    second.get_by_role("button", name="Sign out").click()
    second.get_by_role("textbox", name="Username").wait_for()
    page.reload()
    page.get_by_role("textbox", name="Username").wait_for()  # the other tab is signed out too
    assert not page.get_by_text("Page not found").is_visible()
    replay = browser.new_context()  # the cookie copied elsewhere after the sign-out: worth nothing
    replay.add_cookies([{"name": cookie["name"], "value": cookie["value"], "url": app.url}])
    stolen = replay.new_page()
    stolen.goto(app.url)
    stolen.get_by_role("textbox", name="Username").wait_for()
    replay.close()

    # signed out, a link to /posts: the sign-in form there, then that page
    page.goto(f"{app.url}/posts")
    sign_in_here(page, *MODERATOR)
    page.get_by_role("heading", name="Posts").wait_for()
    # an admin deactivates the account: the next click signs the user out, saying why
    subprocess.run([sys.executable, "-m", "review", "user", "deactivate", MODERATOR[0]], env=_cli_env(app),
                   check=True, capture_output=True)  # fmt: skip
    page.reload()
    page.get_by_text("an admin deactivated your account").wait_for()
    subprocess.run([sys.executable, "-m", "review", "user", "activate", MODERATOR[0]], env=_cli_env(app),
                   check=True, capture_output=True)  # fmt: skip
    # a session idle for longer than SESSION_IDLE_MINUTES: the reason, and the form still signs in
    sign_in_here(page, *MODERATOR)
    _age_sessions(app, timedelta(hours=2))
    page.reload()
    page.get_by_text("You were signed out after 60 minutes without activity.").wait_for()
    sign_in_here(page, *MODERATOR)
    page.close()


def _age_sessions(app: App, by: timedelta) -> None:
    """Every live session of the app last seen ``by`` earlier (as if nobody clicked for that long)."""
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from db.models import WebSession
    from db.session import make_engine

    engine = make_engine(app.database_url)
    try:
        with Session(engine) as session, session.begin():
            session.execute(update(WebSession).where(WebSession.ended_at.is_(None))
                            .values(last_seen_at=datetime.now(UTC) - by))  # fmt: skip
    finally:
        engine.dispose()


def _cli_env(app: App) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "DATABASE_URL": app.database_url}


def _lease_left(app: App, post_id: int) -> float | None:
    """Seconds left on the claim of ``post_id`` (None: not claimed)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(app.database_url)
    try:
        with engine.connect() as conn:
            until = conn.execute(text("SELECT lease_expires_at FROM post WHERE id = :id AND claimed_by_id IS NOT NULL"),
                                 {"id": post_id}).scalar()  # fmt: skip
    finally:
        engine.dispose()
    if until is None:
        return None
    stamp = until if isinstance(until, datetime) else datetime.fromisoformat(str(until))
    return (stamp.replace(tzinfo=stamp.tzinfo or UTC) - datetime.now(UTC)).total_seconds()


def test_a_reload_keeps_the_post_and_a_closed_tab_gives_it_back(app: App, browser) -> None:
    """The address names the post shown (?post=ID): a reload returns to it, signed in, with its
    lease renewed; closing the tab cuts the lease to review.decisions.LEAVE_GRACE (a beacon)."""
    page = _sign_in(browser, app, *MODERATOR)
    _idle(page)
    page.keyboard.press("n")
    page.get_by_role("heading", name="Post ").wait_for(timeout=30_000)
    _idle(page)
    post_id = int(page.get_by_role("heading", name="Post ").inner_text().split()[-1])
    assert page.url.endswith(f"?post={post_id}")
    page.reload()
    page.get_by_role("heading", name=f"Post {post_id}").wait_for(timeout=30_000)
    _idle(page)
    assert _lease_left(app, post_id) > 5 * 60  # cut by the reload's beacon, renewed by the page
    page.close(run_before_unload=True)
    for _ in range(50):
        left = _lease_left(app, post_id)
        if left is None or left <= LEAVE_GRACE.total_seconds():
            break

        time.sleep(0.1)
    assert left is not None and 0 < left <= LEAVE_GRACE.total_seconds(), left


def _next_post_shown(page, before: int | None) -> int:
    """The id of the post the Review page shows once another post than ``before`` is on it alone
    (no element of the last one left) and the app has finished its run."""
    page.wait_for_function(
        """(before) => {
          const live = [...document.querySelectorAll('[data-testid="stMain"] h3')]
            .filter((h) => h.innerText.startsWith('Post ') && !h.closest('[data-stale="true"]'));
          return live.length === 1 && live[0].innerText !== 'Post ' + before
            && !document.querySelector('[data-stale="true"]');
        }""",
        arg=before,
        timeout=30_000,
    )
    _idle(page)
    return int(page.get_by_role("heading", name="Post ").inner_text().split()[-1])


def test_no_decision_before_the_picture(app: App, browser) -> None:
    """While a post's image is still on its way (its request held here), Y and a click on
    Confirm decide nothing; once it has loaded, Y confirms."""
    page = _sign_in(browser, app, *MODERATOR)  # a new browser: nothing in its image cache
    _idle(page)
    held: list = []

    def hold(route) -> None:
        held.append(route)

    page.route("**/media/**", hold)
    post_id = None
    for _ in range(10):  # the next post that has an image and a verdict to confirm
        page.keyboard.press("n")
        post_id = _next_post_shown(page, post_id)
        if page.evaluate("() => window.reviewPictures || 0") and page.evaluate(CONFIRM_ENABLED):
            break
        while held:
            held.pop().continue_()
        page.wait_for_function(PICTURES_LOADED, timeout=15_000)
    else:
        pytest.fail("no post with an image and a usable verdict")
    assert held and not page.evaluate(PICTURES_LOADED)
    before = len(_events(app))
    page.keyboard.press("y")
    page.locator(".st-key-review_confirm button").first.click()
    page.wait_for_timeout(1000)
    assert len(_events(app)) == before and page.get_by_role("heading", name=f"Post {post_id}").is_visible()
    while held:
        held.pop().continue_()
    page.unroute("**/media/**")
    page.wait_for_function(PICTURES_LOADED, timeout=15_000)
    page.keyboard.press("y")
    page.get_by_text(f"Post {post_id}: confirm saved").wait_for(timeout=15_000)
    assert _events(app)[before][:2] == (post_id, "confirm")
    page.close()

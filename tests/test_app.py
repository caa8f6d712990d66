"""The Streamlit app as a whole (dashboard.py), headless (AppTest): the schema guard, a database
outage shown as an error box, tracebacks hidden from the browser, sign-in and the first admin,
what each role may open (refusals included), and display preferences kept per user. Each page's
own tests are in test_app_<page>.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update
from streamlit.testing.v1 import AppTest

from db.models import Post, SessionEnd, User, WebSession
from pages._common import ACTOR, WEB_SESSION
from review.auth import preferences
from review.decisions import claim
from tests.conftest import ACCOUNT_PASSWORD, DASHBOARD, REPO, account, held_post, open_app
from tests.factories import queued_posts, queued_posts_with_verdicts

pytestmark = pytest.mark.usefixtures("fresh_caches")


def test_out_of_date_schema_stops_the_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    at = AppTest.from_file(DASHBOARD, default_timeout=30).run()
    assert not at.exception
    assert len(at.error) == 1
    assert "cannot start" in at.error[0].value
    assert "python -m review db upgrade" in at.code[0].value  # verbatim, ready to copy
    assert not at.dataframe  # nothing else rendered


def test_app_shows_an_outage_as_an_error_box(own_pg, monkeypatch) -> None:
    pg, desk = own_pg
    at = open_app(monkeypatch, desk, "moderator")  # the first run draws the sidebar with its toggles
    assert not at.exception
    desk.engine.dispose()
    pg.kill()
    at.toggle(key="pref_blur").set_value(False).run()  # a callback that writes: runs before the page
    assert not at.exception
    shown = " ".join(e.value for e in at.error) + " ".join(c.value for c in at.code)
    assert "cannot be reached" in shown and "saved before is kept" in shown
    assert "Traceback" not in shown and ".py" not in shown
    pg.start()
    at.run()  # back: the page works again
    assert not at.exception and not at.error


def test_streamlit_hides_tracebacks(tmp_path: Path, monkeypatch) -> None:
    """.streamlit/config.toml, read from the repository root (where scripts/start.sh runs
    streamlit), sets client.showErrorDetails to "none": "false" would still show the trace."""
    import tomllib

    from streamlit import config

    assert tomllib.loads((REPO / ".streamlit/config.toml").read_text())["client"]["showErrorDetails"] == "none"
    assert 'cd "$(dirname "$0")/.."' in (REPO / "scripts/start.sh").read_text()
    monkeypatch.chdir(REPO)
    config.get_config_options(force_reparse=True)
    assert config.get_option("client.showErrorDetails") == "none"
    script = tmp_path / "boom.py"
    script.write_text("raise RuntimeError('secret detail in /srv/review/x.py')\n", encoding="utf-8")
    at = AppTest.from_file(str(script)).run()
    assert at.exception
    shown = at.exception[0]
    assert "secret" not in shown.message and not shown.stack_trace


# ---------------------------------------------------------------------------------------------
# Signing in, what each role may open, display preferences


def test_first_run_creates_the_admin_and_signs_in(sqlite_desk, monkeypatch) -> None:
    at = open_app(monkeypatch, sqlite_desk, None)
    assert not at.exception
    assert any("no accounts yet" in i.value for i in at.info)
    at.text_input(key="first_username").input("boss")
    at.text_input(key="first_password").input("long enough password")
    at.text_input(key="first_password_again").input("long enough password")
    at.button[0].click().run()
    assert not at.exception
    assert at.session_state[ACTOR].username == "boss" and at.session_state[ACTOR].role == "admin"
    with sqlite_desk.sessions() as session:
        assert session.scalar(select(User.role).where(User.username == "boss")) == "admin"


def test_sign_in_refuses_wrong_password_then_accepts_and_signs_out(sqlite_desk, monkeypatch) -> None:
    account(sqlite_desk, "moderator", "ann")
    at = open_app(monkeypatch, sqlite_desk, None)
    assert not any("no accounts yet" in i.value for i in at.info)
    at.text_input(key="login_username").input("ann")
    at.text_input(key="login_password").input("not the password")
    at.button[0].click().run()
    assert at.error and "wrong username or password" in at.error[0].value.lower()
    assert ACTOR not in at.session_state
    at.text_input(key="login_password").input(ACCOUNT_PASSWORD)
    at.button[0].click().run()
    assert at.session_state[ACTOR].username == "ann"
    # AppTest runs dashboard.py, with the sidebar, on a session's first run only: a new session
    post_id = queued_posts_with_verdicts(sqlite_desk, ["fraud_spam"])[0]
    claim(sqlite_desk.sessions, account(sqlite_desk, "moderator", "ann"), post_id)
    at = open_app(monkeypatch, sqlite_desk, "moderator", name="ann")
    assert any("Signed in as ann (moderator)" in t.value for t in at.sidebar.text)
    assert held_post(at) == post_id  # the Review page resumed ann's claim
    session_id = at.session_state[WEB_SESSION]
    at.button(key="sign_out").click().run()
    assert ACTOR not in at.session_state
    # the session ended and its post is back in the queue (tests/test_browser.py: the cookie goes)
    with sqlite_desk.sessions() as session:
        assert session.get(WebSession, session_id).end_reason == SessionEnd.SIGNED_OUT
        assert session.get(Post, post_id).claimed_by_id is None


def test_sign_out_works_for_an_account_deactivated_meanwhile(sqlite_desk, monkeypatch) -> None:
    """Its held post cannot be released by it any more (the core refuses an inactive account):
    the tab is signed out all the same, its session ended, without an error."""
    post_id = queued_posts_with_verdicts(sqlite_desk, ["fraud_spam"])[0]
    claim(sqlite_desk.sessions, account(sqlite_desk, "moderator", "ann"), post_id)
    at = open_app(monkeypatch, sqlite_desk, "moderator", name="ann")
    assert held_post(at) == post_id
    session_id = at.session_state[WEB_SESSION]
    with sqlite_desk.sessions() as session, session.begin():  # by hand: claims and sessions left as they are
        session.execute(update(User).where(User.username == "ann").values(active=False))
    at.button(key="sign_out").click().run()
    assert not at.exception and ACTOR not in at.session_state
    with sqlite_desk.sessions() as session:
        assert session.get(WebSession, session_id).end_reason == SessionEnd.SIGNED_OUT


def test_a_deactivated_account_is_signed_out_at_the_next_click(sqlite_desk, monkeypatch) -> None:
    at = open_app(monkeypatch, sqlite_desk, "moderator")
    assert not at.exception and ACTOR in at.session_state
    with sqlite_desk.sessions() as session, session.begin():
        session.execute(update(User).where(User.username == "moderator").values(active=False))
    at.run()
    assert ACTOR not in at.session_state
    assert any("signed out" in e.value for e in at.error)


@pytest.mark.parametrize(
    ("role", "page", "refusal"),
    [
        ("moderator", "pages/users.py", "may not manage users"),
        ("moderator", "pages/ingest.py", "may not ingest or score"),
        ("lead", "pages/users.py", "may not manage users"),
        ("lead", "pages/integrations.py", "may not manage integrations"),
    ],
)
def test_pages_refuse_roles_without_the_permission(
    sqlite_desk, monkeypatch, role: str, page: str, refusal: str
) -> None:
    """Even when opened directly (not listed in the navigation), a page refuses and shows nothing."""
    at = open_app(monkeypatch, sqlite_desk, role, page)
    assert not at.exception
    assert any(refusal in e.value for e in at.error)
    assert not at.dataframe and not [b for b in at.button if b.key in ("score_start", "user_set_role")]


@pytest.mark.parametrize("role", ["moderator", "lead", "admin"])
def test_every_page_a_role_may_open_renders(sqlite_desk, monkeypatch, tmp_path: Path, role: str) -> None:
    queued_posts(sqlite_desk, tmp_path, 3)
    pages = ["pages/review.py", "pages/queue.py", "pages/posts.py"]
    pages += ["pages/ingest.py"] if role != "moderator" else []
    pages += ["pages/users.py", "pages/integrations.py"] if role == "admin" else []
    for page in pages:
        at = open_app(monkeypatch, sqlite_desk, role, page)
        assert not at.exception, (page, at.exception)
        assert not at.error, (page, [e.value for e in at.error])


def test_display_preferences_are_kept_per_user(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    ids = queued_posts(sqlite_desk, tmp_path, 1)
    # AppTest runs dashboard.py (with the sidebar) on a session's first run only: a new session per step
    open_app(monkeypatch, sqlite_desk, "moderator").toggle(key="pref_grey").set_value(True).run()
    at = open_app(monkeypatch, sqlite_desk, "moderator")
    at.toggle(key="pref_blur").set_value(False).run()
    at.switch_page("pages/queue.py").run()
    actor = at.session_state[ACTOR]
    with sqlite_desk.sessions() as session:
        prefs = preferences(session, actor)
    assert (prefs.greyscale, prefs.blur_flagged) == (True, False)
    thumb = at.dataframe[0].value.loc[ids[0], "thumbnail"]
    fresh = open_app(monkeypatch, sqlite_desk, "moderator")  # kept for the next session
    assert fresh.toggle(key="pref_grey").value is True
    fresh.switch_page("pages/queue.py").run()
    assert fresh.dataframe[0].value.loc[ids[0], "thumbnail"] == thumb
    other = open_app(monkeypatch, sqlite_desk, "moderator", name="other")
    assert other.toggle(key="pref_grey").value is False


@pytest.mark.parametrize(("role", "shown"), [("moderator", False), ("lead", False), ("admin", True)])
def test_only_admins_see_the_database_address(sqlite_desk, monkeypatch, role: str, shown: bool) -> None:
    at = open_app(monkeypatch, sqlite_desk, role)
    assert not at.exception
    assert any(c.value.startswith("Database: ") for c in at.sidebar.caption) == shown

"""Streamlit entry point: the app script that `streamlit run app.py` serves (app.py adds the
sign-in session's HTTP routes; `streamlit run dashboard.py` runs the app without them).

Opens the desk (settings, database), refuses to run on an out-of-date schema, signs the user
in, and hands over to the pages their role may use through st.navigation. Pages hold widgets
and layout only; everything else lives in review/, which checks permissions again itself.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from db.session import safe_url
from pages._common import (
    PREFERENCES,
    desk_or_stop,
    guarded,
    hand_over_cookie,
    outages_shown,
    sign_out,
    signed_in,
    user_preferences,
)
from review.auth import Actor, Permission, Preferences, set_preferences

st.set_page_config(page_title="Review desk", page_icon="🛡️", layout="wide")

desk = desk_or_stop()
with outages_shown():  # a database gone away: an error box, never a traceback (pages/_common.py)
    actor = signed_in(desk)

# Every page, by group, with the permission that shows it (None: every signed-in user).
PAGES: list[tuple[str, str, str, str, Permission | tuple[Permission, ...] | None]] = [
    ("Moderation", "pages/review.py", "Review", ":material/gavel:", None),
    ("Moderation", "pages/queue.py", "Queue", ":material/inbox:", None),
    ("Moderation", "pages/posts.py", "Posts", ":material/article:", None),
    ("Leads", "pages/accuracy.py", "Accuracy", ":material/query_stats:", Permission.METRICS),
    ("Leads", "pages/agreement.py", "Agreement", ":material/handshake:", Permission.METRICS),
    ("Leads", "pages/activity.py", "Activity", ":material/monitoring:", Permission.METRICS),
    ("Leads", "pages/export.py", "Export", ":material/dataset:", Permission.EXPORT),
    ("Operations", "pages/ingest.py", "Ingest and score", ":material/upload:", (Permission.INGEST, Permission.SCORE)),
    ("Operations", "pages/users.py", "Users", ":material/group:", Permission.MANAGE_USERS),
    ("Operations", "pages/audit.py", "Audit log", ":material/history:", Permission.AUDIT),
    ("Operations", "pages/data.py", "Erasure and retention", ":material/delete_forever:", Permission.PURGE),
    ("Operations", "pages/integrations.py", "Integrations", ":material/webhook:", Permission.INTEGRATIONS),
]
DEFAULT_PAGE = "pages/review.py"

if actor is None:
    # The sign-in form answers at every page's address: a reload or a link to /queue while
    # signed out shows it (no "Page not found"), and after the sign-in that page opens.
    login = [st.Page("pages/login.py", title="Sign in", icon=":material/login:", default=True)]
    login += [
        st.Page("pages/login.py", title="Sign in", url_path=Path(path).stem)
        for _, path, _, _, _ in PAGES
        if path != DEFAULT_PAGE
    ]
    with outages_shown():
        st.navigation(login, position="hidden").run()
    st.stop()
user: Actor = actor  # signed in from here on; the functions below see this name, not the narrowed one


def shown(need: Permission | tuple[Permission, ...] | None) -> bool:
    needs = need if isinstance(need, tuple) else () if need is None else (need,)
    return not needs or any(user.can(p) for p in needs)


pages: dict[str, list[st.Page]] = {}
for group, path, title, icon, need in PAGES:
    if shown(need):
        pages.setdefault(group, []).append(st.Page(path, title=title, icon=icon, default=path == DEFAULT_PAGE))
navigation = st.navigation(pages)


def save_preferences() -> None:
    prefs = Preferences(blur_flagged=st.session_state["pref_blur"], greyscale=st.session_state["pref_grey"])
    set_preferences(desk.sessions, user, prefs)
    st.session_state[PREFERENCES] = prefs


def sidebar() -> None:
    st.text(f"Signed in as {user.username} ({user.role})")
    prefs = user_preferences()
    st.toggle("Blur flagged images", value=prefs.blur_flagged, key="pref_blur", on_change=guarded(save_preferences),
              help="Images the NSFW score or the category flags stay blurred until you reveal them.")  # fmt: skip
    st.toggle("Greyscale images", value=prefs.greyscale, key="pref_grey", on_change=guarded(save_preferences))
    st.button("Sign out", key="sign_out", icon=":material/logout:", on_click=guarded(sign_out))
    if user.can(Permission.MANAGE_USERS):  # the desk's address is the admins' business, not everyone's
        st.caption(f"Database: {safe_url(desk.settings.database_url)}")
    hand_over_cookie()  # right after a sign-in: the browser fetches its session cookie


with st.sidebar:  # before the page, which may stop early
    sidebar()
with outages_shown():
    navigation.run()

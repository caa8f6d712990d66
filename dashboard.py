"""Streamlit entry point: `streamlit run dashboard.py`.

Opens the desk (settings, database), refuses to run on an out-of-date schema, signs the user
in, and hands over to the pages their role may use through st.navigation. Pages hold widgets
and layout only; everything else lives in review/, which checks permissions again itself.
"""

from __future__ import annotations

import streamlit as st

from db.session import safe_url
from pages._common import PREFERENCES, desk_or_stop, guarded, outages_shown, sign_out, signed_in, user_preferences
from review.auth import Actor, Permission, Preferences, set_preferences

st.set_page_config(page_title="Review desk", page_icon="🛡️", layout="wide")

desk = desk_or_stop()
with outages_shown():  # a database gone away: an error box, never a traceback (pages/_common.py)
    actor = signed_in(desk)

if actor is None:
    with outages_shown():
        st.navigation([st.Page("pages/login.py", title="Sign in", icon=":material/login:")], position="hidden").run()
    st.stop()
user: Actor = actor  # signed in from here on; the functions below see this name, not the narrowed one

pages = {
    "Moderation": [
        st.Page("pages/review.py", title="Review", icon=":material/gavel:", default=True),
        st.Page("pages/queue.py", title="Queue", icon=":material/inbox:"),
        st.Page("pages/posts.py", title="Posts", icon=":material/article:"),
    ]
}
if actor.can(Permission.METRICS):
    pages["Leads"] = [
        st.Page("pages/accuracy.py", title="Accuracy", icon=":material/query_stats:"),
        st.Page("pages/agreement.py", title="Agreement", icon=":material/handshake:"),
        st.Page("pages/activity.py", title="Activity", icon=":material/monitoring:"),
    ]
if actor.can(Permission.EXPORT):
    pages.setdefault("Leads", []).append(st.Page("pages/export.py", title="Export", icon=":material/dataset:"))
if actor.can(Permission.INGEST) or actor.can(Permission.SCORE):
    pages["Operations"] = [st.Page("pages/ingest.py", title="Ingest and score", icon=":material/upload:")]
if actor.can(Permission.MANAGE_USERS):
    pages.setdefault("Operations", []).append(st.Page("pages/users.py", title="Users", icon=":material/group:"))
if actor.can(Permission.AUDIT):
    pages.setdefault("Operations", []).append(st.Page("pages/audit.py", title="Audit log", icon=":material/history:"))
if actor.can(Permission.PURGE):
    pages.setdefault("Operations", []).append(
        st.Page("pages/data.py", title="Erasure and retention", icon=":material/delete_forever:")
    )
if actor.can(Permission.INTEGRATIONS):
    pages.setdefault("Operations", []).append(
        st.Page("pages/integrations.py", title="Integrations", icon=":material/webhook:")
    )
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
    st.button("Sign out", key="sign_out", icon=":material/logout:", on_click=sign_out)
    if user.can(Permission.MANAGE_USERS):  # the desk's address is the admins' business, not everyone's
        st.caption(f"Database: {safe_url(desk.settings.database_url)}")


with st.sidebar:  # before the page, which may stop early
    sidebar()
with outages_shown():
    navigation.run()

"""Audit log (admins): what was done to the desk itself, newest first, with filters and a CSV
download. review.audit checks the admin's permission again, against the stored account.

Subjects, names and details come from outside (usernames, file names, client addresses): they
are shown in a table as text, never as markdown.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import streamlit as st

from pages._common import allowed_or_stop, current_actor, current_desk, guarded, show_error
from review import audit
from review.auth import Permission
from review.csvout import to_csv_bytes
from review.errors import ReviewError

ALL = "All actions"
LIMITS = [100, 1000, 10000]

desk = current_desk()
actor = current_actor()
allowed_or_stop(actor, Permission.AUDIT, "read the audit log")

st.title("Audit log")
st.caption(
    "User administration, sign-ins, ingest runs, exports, purges, retention runs and backups. The log is "
    "append-only: the database refuses to change or delete its rows. Times are UTC."
)


def _start(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, time(), tzinfo=UTC)


actions = [str(a) for a in audit.Action]
# the families of two or more actions: "user." (user.create, user.role, …), "signin." (signin and
# signin.failed); a family holds its bare action too (review.audit's filter)
heads = {a.split(".")[0] for a in actions}
families = sorted(f"{h}." for h in heads if sum(a == h or a.startswith(f"{h}.") for a in actions) > 1)
since_col, until_col, action_col, actor_col, limit_col = st.columns([1, 1, 1.2, 1.2, 0.8])
since = since_col.date_input("From", value=None, key="audit_since", format="YYYY-MM-DD")
until = until_col.date_input("Through", value=None, key="audit_until", format="YYYY-MM-DD")
action = action_col.selectbox(
    "Action",
    [ALL, *families, *actions],
    key="audit_action",
    help="an action, or a family of them ('user.'; 'signin.' is signin and signin.failed)",
)
who = actor_col.text_input("Actor", key="audit_actor", help="the name as stored; '(command line)' for the CLI")
limit = limit_col.selectbox("Rows", LIMITS, key="audit_limit")

until_day = _start(until)
flt = audit.AuditFilter(
    since=_start(since),
    until=None if until_day is None else until_day + timedelta(days=1),
    action=None if action == ALL else action,
    actor=who.strip() or None,
    limit=limit,
)
try:
    with desk.sessions() as session:
        rows = audit.events(session, flt, by=actor)
except ReviewError as exc:
    show_error("The audit log cannot be shown.", str(exc))
    st.stop()

if rows.empty:
    st.info("No audit events match these filters.")
    st.stop()

shown = audit.as_text(rows)
more = f" (the newest {limit}: narrow the filters, or use python -m review audit export)" if len(shown) == limit else ""
st.caption(f"{len(shown)} events, newest first{more}")
st.dataframe(
    shown,
    hide_index=True,
    column_config={
        "id": st.column_config.NumberColumn("Id", format="%d"),
        "created_at": st.column_config.TextColumn("Time (UTC)"),
        "actor": st.column_config.TextColumn("Actor"),
        "action": st.column_config.TextColumn("Action"),
        "subject": st.column_config.TextColumn("Subject"),
        "client": st.column_config.TextColumn("Client"),
        "details": st.column_config.TextColumn("Details (JSON)", width="large"),
    },
)
st.download_button(
    "Download these rows as CSV",
    to_csv_bytes(shown),
    file_name="audit.csv",
    mime="text/csv",
    key="audit_csv",
    icon=":material/download:",
    on_click=guarded(audit.log),
    args=(desk.sessions, actor, audit.Action.EXPORT, "audit.csv"),
    kwargs={"what": "audit log (page download)", "rows": len(shown)},
)

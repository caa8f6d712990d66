"""Users (admins): add accounts, change roles, reset passwords, activate and deactivate, and
unlock an account throttled after failed sign-ins.

Every change goes through review.auth, which checks the admin's permission itself and writes
the audit log. Deactivating an account releases the posts it was reviewing.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._common import allowed_or_stop, current_actor, current_desk, request_address, show_error
from review.auth import (
    Permission,
    create_user,
    list_users,
    set_active,
    set_password,
    set_role,
    unlock,
)
from review.errors import ReviewError

ROLES = ["moderator", "lead", "admin"]

desk = current_desk()
actor = current_actor()
allowed_or_stop(actor, Permission.MANAGE_USERS, "manage users")
client = request_address()  # for the audit log

st.title("Users")
with desk.sessions() as session:
    users = list_users(session, by=actor)
st.dataframe(
    pd.DataFrame(users),
    hide_index=True,
    column_config={
        "last_login_at": st.column_config.DatetimeColumn("Last sign-in", format="YYYY-MM-DD HH:mm"),
        "locked": st.column_config.TextColumn("Sign-in locked", help="after failed sign-ins: Unlock clears it"),
        "locked_until": st.column_config.DatetimeColumn("Locked until (UTC)", format="YYYY-MM-DD HH:mm"),
    },
)


ROLE_SHOWN_FOR = "change_role_for"  # session_state: the user whose role the picker was set to


def done(message: str) -> None:
    st.session_state["users_flash"] = message


add, change = st.columns(2, gap="large")
with add, st.form("add_user", clear_on_submit=True):
    st.subheader("Add a user")
    username = st.text_input("Username", key="new_username")
    role = st.selectbox("Role", ROLES, key="new_role")
    sso_only = st.checkbox("Single sign-on only (no password)", key="new_sso")
    password = st.text_input("Password (at least 10 characters)", type="password", key="new_password")
    if st.form_submit_button("Add user", type="primary"):
        try:
            created = create_user(
                desk.sessions, username, None if sso_only else password, role, by=actor, client=client
            )
        except ReviewError as exc:
            show_error("The user was not added.", str(exc))
        else:
            done(f"Added {created.username} ({created.role}).")
            st.rerun()

with change:
    st.subheader("Change a user")
    names = [str(u["username"]) for u in users]
    who = st.selectbox("User", names, key="change_user")
    if st.session_state.get(ROLE_SHOWN_FOR) != who:  # another user chosen: the picker starts at their role
        st.session_state[ROLE_SHOWN_FOR] = who
        st.session_state["change_role"] = next((str(u["role"]) for u in users if u["username"] == who), None)
    new_role = st.selectbox("Role", ROLES, index=None, placeholder="Choose the new role", key="change_role")
    new_password = st.text_input("New password", type="password", key="change_password")
    buttons = st.container(horizontal=True)
    actions = {
        "Set role": lambda: set_role(desk.sessions, who, new_role or "", by=actor, client=client),
        "Set password": lambda: set_password(desk.sessions, who, new_password, by=actor, client=client),
        "Activate": lambda: set_active(desk.sessions, who, True, by=actor, client=client),
        "Deactivate": lambda: set_active(desk.sessions, who, False, by=actor, client=client),
        "Unlock": lambda: unlock(desk.sessions, who, by=actor, client=client),
    }
    for name, action in actions.items():
        if buttons.button(name, key=f"user_{name.lower().replace(' ', '_')}"):
            try:
                result = action()
            except ReviewError as exc:
                show_error(f"{name}: not done.", str(exc))
            else:
                extra = ""
                if name == "Deactivate" and result:
                    extra = f" {result} post{'s' if result != 1 else ''} it was reviewing went back to the queue."
                elif name == "Unlock":
                    extra = " Its failed sign-ins are forgotten." if result else " It was not locked."
                done(f"{name}: {who}.{extra}")
                st.rerun()

if message := st.session_state.pop("users_flash", None):
    st.success(message)

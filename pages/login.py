"""Sign in: a local account (username and password), or single sign-on through ``st.login``
when an identity provider is configured in .streamlit/secrets.toml. On a desk with no
accounts yet, the first admin is created here (or with ``python -m review user add``).

Sign-in attempts are throttled per account, per client address and per account and client
together (review.auth); every failure shows the same message. The client address is
``st.context.ip_address`` (None on localhost: "unknown", for which only the account-wide limit
counts), or, when the ``trusted_proxy_header`` setting names a header (X-Forwarded-For behind a
reverse proxy), that header's last entry: the address the proxy saw.

A sign-in starts a session (review.websession) that reloads and new tabs keep, through an
HttpOnly cookie set by app.py, until sign-out or its timeouts. When a session was ended for the
user (an admin deactivated the account or changed its role or password, or it timed out), this
page says why.
"""

from __future__ import annotations

import streamlit as st

from pages._common import (
    SIGNED_OUT_BECAUSE,
    current_desk,
    forget_cookie,
    request_address,
    show_error,
    sign_in,
    sso_configured,
)
from review.auth import AuthError, authenticate, create_user, sso_actor, user_count
from review.errors import ReviewError

desk = current_desk()
client = request_address()

with desk.sessions() as session:
    first_run = user_count(session) == 0

st.title("Review desk")
forget_cookie()  # after a sign-out: the browser deletes the session cookie
if why := st.session_state.get(SIGNED_OUT_BECAUSE):
    st.warning(why, icon="🔒")

if first_run:
    st.info("This desk has no accounts yet. Create the first admin account (or run `python -m review user add`).")
    with st.form("first_admin"):
        username = st.text_input("Admin username", key="first_username")
        password = st.text_input("Password (at least 10 characters)", type="password", key="first_password")
        again = st.text_input("Password again", type="password", key="first_password_again")
        if st.form_submit_button("Create admin account", type="primary"):
            if password != again:
                st.error("The two passwords differ.")
            else:
                try:
                    actor = create_user(desk.sessions, username, password, "admin", by=None, client=client)
                except ReviewError as exc:
                    show_error("The account was not created.", str(exc))
                else:
                    sign_in(desk, actor, client)
                    st.rerun()
    st.stop()

with st.form("login"):
    username = st.text_input("Username", key="login_username", autocomplete="username")
    password = st.text_input("Password", type="password", key="login_password", autocomplete="current-password")
    submitted = st.form_submit_button("Sign in", type="primary")
if submitted:
    try:
        actor = authenticate(desk.sessions, username, password, client=client)
    except AuthError as exc:
        st.error(str(exc).capitalize() + ".")
    else:
        sign_in(desk, actor, client)
        st.rerun()

if sso_configured():
    st.divider()
    if st.user.is_logged_in and st.session_state.get(SIGNED_OUT_BECAUSE):
        # the desk ended the session (a timeout, an admin's change): the identity provider's
        # sign-in, still valid, does not sign the user straight back in; a click does
        def resume_sso() -> None:
            st.session_state.pop(SIGNED_OUT_BECAUSE, None)

        st.button("Continue with single sign-on", on_click=resume_sso)
        st.button("Sign out of single sign-on", on_click=st.logout)
    elif st.user.is_logged_in:
        # the e-mail address is the identity (never an editable display name), unless the
        # provider says outright that it is not verified
        email = str(st.user.get("email") or "")
        try:
            if not email or st.user.get("email_verified") is False:
                raise AuthError("the identity provider gave no verified e-mail address")
            actor = sso_actor(desk.sessions, email, client=client)
        except AuthError as exc:
            show_error("Single sign-on did not sign you in.", str(exc))
            st.button("Sign out of single sign-on", on_click=st.logout)
        else:
            sign_in(desk, actor, client)
            st.rerun()
    else:
        st.button("Sign in with single sign-on", on_click=st.login)

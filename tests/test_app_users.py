"""The Users page (pages/users.py), headless (AppTest): an admin adds a user and changes a role."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from db.models import User
from tests.conftest import open_app

pytestmark = pytest.mark.usefixtures("fresh_caches")


def test_admin_adds_a_user_and_changes_a_role(sqlite_desk, monkeypatch) -> None:
    at = open_app(monkeypatch, sqlite_desk, "admin", "pages/users.py")
    at.text_input(key="new_username").input("carol")
    at.selectbox(key="new_role").select("moderator")
    at.text_input(key="new_password").input("carols password 1")
    at.button[[b.label for b in at.button].index("Add user")].click().run()
    assert any("Added carol (moderator)" in s.value for s in at.success)
    at.selectbox(key="change_user").select("carol").run()
    assert at.selectbox(key="change_role").value == "moderator"  # the picker starts at carol's role
    at.selectbox(key="change_role").select("lead")
    at.button(key="user_set_role").click().run()
    with sqlite_desk.sessions() as session:
        assert session.scalar(select(User.role).where(User.username == "carol")) == "lead"
    at.selectbox(key="change_user").select("admin").run()
    assert at.selectbox(key="change_role").value == "admin"
    at.button(key="user_deactivate").click().run()
    assert any("cannot deactivate their own account" in c.value for c in at.code)  # verbatim, not markdown

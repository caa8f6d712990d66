"""review/auth.py, accounts: argon2 hashes, the first admin, generic login failures, throttling with lockout,
permissions checked in the core, and the `user` command."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from db.models import LoginThrottle, User
from review import auth
from review.auth import Actor, AuthError, Permission, PermissionDenied, authenticate, create_user, require
from review.cli import main
from review.errors import ReviewError

PASSWORD = "correct horse battery"
CLIENT = "198.51.100.20"  # a known address: from "unknown" only the account-wide key counts


def _first_admin(desk) -> Actor:
    return create_user(desk.sessions, "Root", PASSWORD, "admin", by=None)


def test_first_admin_then_only_admins_add_users(desk) -> None:
    with pytest.raises(ReviewError, match="first account must be an admin"):
        create_user(desk.sessions, "mod", PASSWORD, "moderator", by=None)
    admin = _first_admin(desk)
    assert (admin.username, admin.role) == ("root", "admin")  # usernames are case-insensitive
    with pytest.raises(PermissionDenied, match="only an admin"):
        create_user(desk.sessions, "eve", PASSWORD, "admin", by=None)
    mod = create_user(desk.sessions, "mod", PASSWORD, "moderator", by=admin)
    with pytest.raises(PermissionDenied, match="a moderator may not manage users"):
        create_user(desk.sessions, "eve", PASSWORD, "admin", by=mod)
    with pytest.raises(ReviewError, match="already exists"):
        create_user(desk.sessions, "MOD", PASSWORD, "lead", by=admin)
    with pytest.raises(ReviewError, match="at least 10"):
        create_user(desk.sessions, "short", "abc", "lead", by=admin)
    with pytest.raises(ReviewError, match="may not be the username"):
        create_user(desk.sessions, "samename12", "SameName12", "lead", by=admin)
    with pytest.raises(ReviewError, match="username is 2–64"):
        create_user(desk.sessions, "bad name!", PASSWORD, "lead", by=admin)
    with desk.sessions() as session:
        stored = session.scalars(select(User).where(User.username == "mod")).one()
    assert stored.password_hash.startswith("$argon2id$") and PASSWORD not in stored.password_hash


def test_login_failures_are_generic_and_throttled(desk) -> None:
    admin = _first_admin(desk)
    mod = create_user(desk.sessions, "mod", PASSWORD, "moderator", by=admin)
    assert authenticate(desk.sessions, " MOD ", PASSWORD, client=CLIENT).username == "mod"
    messages = set()
    for name, password in (("mod", "wrong password"), ("nobody", PASSWORD), ("mod", "x" * 5000)):
        with pytest.raises(AuthError) as failed:
            authenticate(desk.sessions, name, password, client=CLIENT)
        messages.add(str(failed.value))
    assert messages == {auth.FAILED}  # which part was wrong is not told
    now = datetime.now(UTC)
    for _ in range(auth.MAX_FAILURES - 1):  # one failure is already counted above
        with pytest.raises(AuthError):
            authenticate(desk.sessions, "mod", "still wrong", now=now, client=CLIENT)

    def locked_for() -> float:
        with desk.sessions() as session:
            row = session.get(LoginThrottle, f"acct:{mod.id}|client:{CLIENT}")  # the pair: this account and client
        return (row.locked_until - now).total_seconds() if row and row.locked_until else 0.0

    assert locked_for() == auth.LOCK_SECONDS
    with pytest.raises(AuthError, match="wrong username or password, or too many"):
        # even the right password waits, and is not told apart
        authenticate(desk.sessions, "mod", PASSWORD, now=now, client=CLIENT)
    later = now + timedelta(seconds=auth.LOCK_SECONDS + 1)
    with pytest.raises(AuthError):
        authenticate(desk.sessions, "mod", "wrong again", now=later, client=CLIENT)  # the lock doubles
    assert locked_for() == auth.LOCK_SECONDS + 1 + 2 * auth.LOCK_SECONDS
    with pytest.raises(AuthError):
        authenticate(desk.sessions, "mod", PASSWORD, now=later, client=CLIENT)
    much_later = later + timedelta(seconds=2 * auth.LOCK_SECONDS + 1)
    assert authenticate(desk.sessions, "mod", PASSWORD, now=much_later, client=CLIENT).role == "moderator"
    with desk.sessions() as session:
        user = session.scalars(select(User).where(User.username == "mod")).one()
        assert session.get(LoginThrottle, f"acct:{mod.id}|client:{CLIENT}") is None  # the pair's count is cleared
    assert locked_for() == 0.0 and user.last_login_at is not None


def test_deactivated_and_sso_only_accounts(sqlite_desk) -> None:
    admin = _first_admin(sqlite_desk)
    create_user(sqlite_desk.sessions, "lead1", PASSWORD, "lead", by=admin)
    create_user(sqlite_desk.sessions, "sso.user", None, "moderator", by=admin)
    with pytest.raises(AuthError, match="wrong username or password"):
        authenticate(sqlite_desk.sessions, "sso.user", "")  # no password to guess
    assert auth.sso_actor(sqlite_desk.sessions, "SSO.user").username == "sso.user"
    with pytest.raises(AuthError, match="no active single-sign-on account"):  # never a password account
        auth.sso_actor(sqlite_desk.sessions, "lead1")
    auth.set_active(sqlite_desk.sessions, "sso.user", False, by=admin)
    with pytest.raises(AuthError, match="no active single-sign-on account"):
        auth.sso_actor(sqlite_desk.sessions, "sso.user")
    auth.set_active(sqlite_desk.sessions, "lead1", False, by=admin)
    with pytest.raises(AuthError, match="wrong username or password"):
        authenticate(sqlite_desk.sessions, "lead1", PASSWORD)
    with pytest.raises(ReviewError, match="own account"):
        auth.set_active(sqlite_desk.sessions, "root", False, by=admin)
    with pytest.raises(ReviewError, match="own admin role"):
        auth.set_role(sqlite_desk.sessions, "root", "lead", by=admin)


def test_permissions_are_checked_in_the_core() -> None:
    mod, lead, admin = (Actor(i, f"u{i}", role) for i, role in enumerate(("moderator", "lead", "admin")))
    assert require(mod, Permission.REVIEW) is mod
    for denied in (Permission.EXPORT, Permission.MANAGE_USERS, Permission.READ_ALL_NOTES, Permission.BULK):
        with pytest.raises(PermissionDenied):
            require(mod, denied)
    assert lead.can(Permission.EXPORT) and lead.can(Permission.READ_ALL_NOTES) and not lead.can(Permission.MANAGE_USERS)
    assert all(admin.can(p) for p in Permission)
    with pytest.raises(PermissionDenied, match="log in first"):
        require(None, Permission.REVIEW)
    with pytest.raises(PermissionDenied):
        auth.set_password(_NoDesk(), "someone.else", PASSWORD, by=mod)  # refused before any database work


class _NoDesk:
    def __call__(self):
        raise AssertionError("the database was touched")

    def begin(self):
        raise AssertionError("the database was touched")


def test_user_command(sqlite_desk, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(sqlite_desk.settings.media_dir))

    def run(*argv: str, stdin: str = "") -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        return main(list(argv))

    assert run("user", "list") == 0
    assert "no users yet" in capsys.readouterr().err
    assert run("user", "add", "mod", "--role", "moderator", "--password-stdin", stdin=PASSWORD + "\n") == 2
    assert "first account must be an admin" in capsys.readouterr().err
    assert run("user", "add", "mod", "--role", "moderator") == 2  # no terminal, no --password-stdin
    assert "--password-stdin" in capsys.readouterr().err
    assert run("user", "add", "Boss", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n") == 0
    assert run("user", "add", "mod", "--role", "moderator", "--password-stdin", stdin=PASSWORD + "\n") == 0
    assert "added mod (moderator)" in capsys.readouterr().out
    assert run("user", "role", "mod", "lead") == 0
    assert run("user", "deactivate", "mod") == 0
    assert run("user", "list") == 0
    out = capsys.readouterr().out
    assert "boss\tadmin\tactive" in out and "mod\tlead\tdeactivated" in out
    assert run("user", "passwd", "nobody", "--password-stdin", stdin=PASSWORD + "\n") == 2
    assert "there is no user 'nobody'" in capsys.readouterr().err
    assert authenticate(sqlite_desk.sessions, "boss", PASSWORD).role == "admin"

"""review/auth.py under attack: the sign-in attempt is reserved before the password is checked, so
parallel guesses cannot check more passwords than the limit allows and the right password does
not get in once the limit is reached (SQLite and Postgres, 40 threads); throttling per client,
per account and per pair, so a slow guesser cannot keep the real owner out; the admin's way
back in (``user unlock``, the Users page, a new password); from an unknown client (localhost, a
local proxy) only the account-wide key counts, and behind a trusted proxy the client is its
header's last entry; the audit log of user administration and sign-ins, never with a password
nor a username that names no account as typed; an account changed during the password check
does not sign in.

The hash cost is lowered for these tests only (``fast_hashes``): the throttle is the subject,
not argon2's parameters; every check is still a real argon2id verification."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from db.models import LoginThrottle, User
from review import auth
from review.audit import Action
from review.auth import AuthError, authenticate, create_user
from review.cli import main
from tests.conftest import REPO, audit_rows, open_page

PASSWORD = "correct horse battery"
ATTACKER = "203.0.113.9"
OFFICE = "198.51.100.7"


@pytest.fixture(autouse=True)
def fast_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id with a small cost, for this test module only (the module keeps its defaults)."""
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(auth, "_hasher", hasher)
    monkeypatch.setattr(auth, "_DUMMY_HASH", hasher.hash("dummy password for the tests"))


class Checks:
    """Counts the password checks against real account hashes (not the dummy), around the real
    verification; ``hold`` makes the checks of wrong guesses wait until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, right: str = PASSWORD) -> None:
        self.real = 0
        self.started = threading.Semaphore(0)
        self.release_wrong = threading.Event()
        self.release_right = threading.Event()
        self.hold = False
        self.right = right
        self._lock = threading.Lock()
        verify = auth._verify

        def counted(hashed: str, password: str) -> bool:
            if hashed != auth._DUMMY_HASH:
                with self._lock:
                    self.real += 1
                self.started.release()
                if self.hold:
                    gate = self.release_right if password == self.right else self.release_wrong
                    assert gate.wait(30), "a password check was never released"
            return verify(hashed, password)

        monkeypatch.setattr(auth, "_verify", counted)


def _admin(desk):
    return create_user(desk.sessions, "root", PASSWORD, "admin", by=None)


def _try(desk, name: str, password: str, client: str | None, now: datetime | None = None) -> bool:
    try:
        authenticate(desk.sessions, name, password, now, client=client)
    except AuthError as exc:
        assert str(exc) == auth.FAILED
        return False
    return True


def _row(desk, key: str) -> LoginThrottle | None:
    with desk.sessions() as session:
        return session.get(LoginThrottle, key)


def test_parallel_wrong_guesses_check_at_most_the_limit(desk, monkeypatch) -> None:
    """40 wrong guesses at once from one client: only MAX_FAILURES passwords are checked (the
    rest are refused before, at the same cost), the pair is locked, and then even the right
    password is refused. Before the fix every one of the 40 was checked."""
    admin = _admin(desk)
    checks = Checks(monkeypatch)
    start = threading.Barrier(40)

    def guess(i: int) -> bool:
        start.wait(10)
        return _try(desk, "root", f"wrong guess {i:02d}", ATTACKER)

    with ThreadPoolExecutor(40) as pool:
        results = list(pool.map(guess, range(40)))
    assert not any(results)
    assert checks.real == auth.MAX_FAILURES
    pair = _row(desk, f"acct:{admin.id}|client:{ATTACKER}")
    assert pair is not None and pair.failures == auth.MAX_FAILURES and pair.locked_until is not None
    assert _row(desk, f"acct:{admin.id}").failures == auth.MAX_FAILURES  # refused attempts are not counted
    assert not _try(desk, "root", PASSWORD, ATTACKER)
    assert checks.real == auth.MAX_FAILURES  # the right password was not even checked
    failed = audit_rows(desk, Action.SIGNIN_FAILED)
    assert len(failed) == 41 and {e.subject for e in failed} == {"root"} and {e.client for e in failed} == {ATTACKER}
    assert sorted(e.details["reason"] for e in failed).count("wrong password") == auth.MAX_FAILURES


def test_the_right_password_in_a_burst_past_the_limit_does_not_get_in(desk, monkeypatch) -> None:
    """29 wrong guesses whose checks are all in flight, then the right password: the lock was
    taken when the 5th guess was reserved, so the right password is refused. Before the fix it
    read "not locked" (nothing recorded yet), and got in after the 29 failures were recorded."""
    _admin(desk)
    checks = Checks(monkeypatch)
    checks.hold = True
    with ThreadPoolExecutor(30) as pool:
        wrong = [pool.submit(_try, desk, "root", f"wrong guess {i:02d}", ATTACKER) for i in range(29)]
        for _ in range(auth.MAX_FAILURES):  # at least the limit's worth of guesses are being checked
            assert checks.started.acquire(timeout=30)
        right = pool.submit(_try, desk, "ROOT ", PASSWORD, ATTACKER)
        try:
            got_in_early = right.result(timeout=5)  # refused at once, before any check
        except TimeoutError:  # waiting in its password check: the old code
            got_in_early = None
        checks.release_wrong.set()
        assert not any(f.result(timeout=60) for f in wrong)
        checks.release_right.set()
        got_in = right.result(timeout=60) if got_in_early is None else got_in_early
    assert got_in is False
    assert checks.real == auth.MAX_FAILURES
    assert not audit_rows(desk, Action.SIGNIN)


def test_a_slow_guesser_never_keeps_the_owner_out(desk) -> None:
    """One wrong guess every 15 minutes for a day from one client: the owner, from another
    client, signs in all along (before the fix the account was locked after 5 guesses, for
    everyone); the guesser's own client is locked once it makes 5 in a window."""
    admin = _admin(desk)
    start = datetime.now(UTC)
    for step in range(96):
        at = start + timedelta(minutes=15 * step)
        assert not _try(desk, "root", f"guess {step}", ATTACKER, at)
        if step % 8 == 0:
            assert _try(desk, "root", PASSWORD, OFFICE, at + timedelta(seconds=1))
    # four an hour stay under every limit; failures older than the window stop counting
    pair = _row(desk, f"acct:{admin.id}|client:{ATTACKER}")
    assert pair.locked_until is None and pair.failures <= 4
    # five quick guesses lock the guesser's client, and only that one
    later = start + timedelta(days=2)
    for i in range(auth.MAX_FAILURES):
        assert not _try(desk, "root", f"quick {i}", ATTACKER, later)
    assert not _try(desk, "root", PASSWORD, ATTACKER, later)
    assert _try(desk, "root", PASSWORD, OFFICE, later)
    assert _try(desk, "root", PASSWORD, ATTACKER, later + timedelta(seconds=auth.LOCK_SECONDS + 1))


def test_client_and_account_limits(desk) -> None:
    """A client that sprays guesses across accounts (and unknown names) is stopped after
    CLIENT_MAX_FAILURES, for every account, while other clients sign in; guesses spread over
    many clients stop at ACCOUNT_MAX_FAILURES for the account, everywhere; an admin unlocks it."""
    admin = _admin(desk)
    create_user(desk.sessions, "ann", PASSWORD, "moderator", by=admin)
    now = datetime.now(UTC)
    names = ["root", "ann", "nobody", "ghost"]
    for i in range(auth.CLIENT_MAX_FAILURES):
        # at most 4 per account from this client: no pair reaches its limit
        assert not _try(desk, names[i % 4] if i < 16 else f"nobody{i}", "wrong password!", ATTACKER, now)
    assert _row(desk, f"client:{ATTACKER}").locked_until is not None
    assert not _try(desk, "ann", PASSWORD, ATTACKER, now)  # the client is locked, whichever account
    assert _try(desk, "ann", PASSWORD, OFFICE, now)

    spread = [f"192.0.2.{i}" for i in range(60)]
    failures = _row(desk, f"acct:{admin.id}").failures
    i = 0
    while failures < auth.ACCOUNT_MAX_FAILURES:
        assert not _try(desk, "root", "wrong password!", spread[i % len(spread)], now)
        failures += 1
        i += 1
    account_key = _row(desk, f"acct:{admin.id}")
    assert account_key.failures == auth.ACCOUNT_MAX_FAILURES and account_key.locked_until is not None
    assert not _try(desk, "root", PASSWORD, "192.0.2.250", now)  # a new client is refused too
    with desk.sessions() as session:
        state = {u["username"]: u for u in auth.list_users(session, by=admin)}
    assert state["root"]["locked"] == "everywhere" and state["ann"]["locked"] == ""
    assert auth.unlock(desk.sessions, "Root", by=auth.OPERATOR) >= 1
    with desk.sessions() as session:
        keys = session.scalars(select(LoginThrottle.key)).all()
    assert not [k for k in keys if k.startswith(f"acct:{admin.id}")]  # every key of the account is gone
    assert f"client:{ATTACKER}" in keys  # a client's lock is not the account's to clear
    assert _try(desk, "root", PASSWORD, "192.0.2.250", now)


def test_failures_older_than_the_window_stop_counting(desk) -> None:
    admin = _admin(desk)
    start = datetime.now(UTC)
    for i in range(auth.MAX_FAILURES - 1):
        assert not _try(desk, "root", f"typo {i}", OFFICE, start)
    later = start + auth.FAILURE_WINDOW + timedelta(seconds=1)
    for i in range(auth.MAX_FAILURES - 1):
        assert not _try(desk, "root", f"typo again {i}", OFFICE, later)
    assert _row(desk, f"acct:{admin.id}|client:{OFFICE}").failures == auth.MAX_FAILURES - 1
    assert _try(desk, "root", PASSWORD, OFFICE, later)


def test_unlock_command_and_new_password_clear_the_lock(sqlite_desk, tmp_path: Path, capsys, monkeypatch) -> None:
    """The recovery path: ``python -m review user list`` shows the lock, ``user unlock`` (a
    real process) clears it; a new password clears it too. (``unlock`` itself runs on both
    backends in test_client_and_account_limits.)"""
    desk = sqlite_desk
    admin = _admin(desk)
    create_user(desk.sessions, "ann", PASSWORD, "moderator", by=admin)
    for who in ("root", "ann"):
        for i in range(auth.MAX_FAILURES):
            _try(desk, who, f"wrong {i}", ATTACKER)
        assert not _try(desk, who, PASSWORD, ATTACKER)
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "review", *argv], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip

    listed = cli("user", "list")
    assert listed.returncode == 0, listed.stderr
    assert "root\tadmin\tactive\tlast login never\tlocked from 1 client until " in listed.stdout
    done = cli("user", "unlock", "ROOT")
    assert done.returncode == 0, done.stderr
    assert "root unlocked (1 lock cleared" in done.stdout
    assert _try(desk, "root", PASSWORD, ATTACKER)
    assert main(["user", "unlock", "nobody"]) == 2
    assert "there is no user 'nobody'" in capsys.readouterr().err
    auth.set_password(desk.sessions, "ann", "a brand new password", by=admin)
    assert _try(desk, "ann", "a brand new password", ATTACKER)
    unlocked = audit_rows(desk, Action.USER_UNLOCK)
    assert [(e.actor_name, e.subject, e.details) for e in unlocked] == [("(command line)", "root", {"locked_keys": 1})]


def test_user_administration_and_sign_ins_are_audited(desk) -> None:
    """Every change is written with the change (a refused one writes nothing); sign-ins and
    failures with the normalised username and the client; never a password or a hash."""
    admin = create_user(desk.sessions, "Root", PASSWORD, "admin", by=None, client=OFFICE)
    create_user(desk.sessions, "ann", PASSWORD, "moderator", by=admin, client=OFFICE)
    auth.set_role(desk.sessions, "ANN", "lead", by=admin, client=OFFICE)
    auth.set_role(desk.sessions, "ann", "lead", by=admin)  # no change, no row
    auth.set_active(desk.sessions, "ann", False, by=admin, client=OFFICE)
    auth.set_active(desk.sessions, "ann", True, by=admin, client=OFFICE)
    auth.set_password(desk.sessions, "ann", "another long password", by=admin, client=OFFICE)
    auth.unlock(desk.sessions, "ann", by=admin, client=OFFICE)
    before = len(audit_rows(desk))
    with pytest.raises(auth.ReviewError, match="no user 'nobody'"):
        auth.set_role(desk.sessions, "nobody", "lead", by=admin)
    with pytest.raises(auth.ReviewError, match="already exists"):
        create_user(desk.sessions, "ANN", PASSWORD, "lead", by=admin)
    assert len(audit_rows(desk)) == before  # refused: nothing written
    assert not _try(desk, "  ANN ", "not her password", ATTACKER)
    assert not _try(desk, "Nobody", PASSWORD, ATTACKER)
    assert _try(desk, "ann", "another long password", OFFICE)
    rows = [(e.actor_name, e.action, e.subject, e.client) for e in audit_rows(desk)]
    assert rows == [
        ("root", "user.create", "root", OFFICE),  # the first admin makes itself on the web form
        ("root", "user.create", "ann", OFFICE),
        ("root", "user.role", "ann", OFFICE),
        ("root", "user.deactivate", "ann", OFFICE),
        ("root", "user.activate", "ann", OFFICE),
        ("root", "user.password", "ann", OFFICE),
        ("root", "user.unlock", "ann", OFFICE),
        ("(nobody)", "signin.failed", "ann", ATTACKER),
        ("(nobody)", "signin.failed", auth.unknown_name("nobody"), ATTACKER),  # no account: never as typed
        ("ann", "signin", "ann", OFFICE),
    ]
    events = audit_rows(desk)
    assert events[2].details == {"before": "moderator", "after": "lead"}
    assert [e.details.get("reason") for e in events[7:9]] == ["wrong password", "unknown user"]
    with desk.sessions() as session:
        hashes = session.scalars(select(User.password_hash)).all()
    dumped = repr([(e.subject, e.details, e.client) for e in events])
    for secret in (PASSWORD, "not her password", "another long password", *hashes, "$argon2"):
        assert secret not in dumped


def test_users_page_shows_the_lock_and_unlocks(sqlite_desk, monkeypatch) -> None:
    admin = _admin(sqlite_desk)
    create_user(sqlite_desk.sessions, "ann", PASSWORD, "moderator", by=admin)
    for i in range(auth.MAX_FAILURES):
        _try(sqlite_desk, "ann", f"wrong {i}", ATTACKER)
    at = open_page(monkeypatch, sqlite_desk, admin, "pages/users.py")
    table = at.dataframe[0].value.set_index("username")
    assert table.loc["ann", "locked"] == "from 1 client" and table.loc["root", "locked"] == ""
    at.selectbox(key="change_user").select("ann")
    at.button(key="user_unlock").click().run()
    assert not at.exception
    assert any("Unlock: ann. Its failed sign-ins are forgotten." in s.value for s in at.success)
    assert at.dataframe[0].value.set_index("username").loc["ann", "locked"] == ""
    assert _try(sqlite_desk, "ann", PASSWORD, ATTACKER)


def test_from_an_unknown_client_only_the_account_counts(desk) -> None:
    """The default deployment: the app binds to 127.0.0.1, so behind a local proxy or tunnel every
    sign-in comes from "unknown" (client=None), the attacker's and the owner's alike. Before the
    fix the pair "root from unknown" locked after 5 guesses and "unknown" after 30: anyone locked
    the owner out, and 30 guesses locked every password sign-in. Now only the account-wide key
    counts there: the owner gets in, and 100 guesses still lock the account (an admin unlocks it)."""
    admin = _admin(desk)
    create_user(desk.sessions, "ann", PASSWORD, "moderator", by=admin)
    start = datetime.now(UTC)
    for hour in range(24):  # each hour: 5 quick guesses, then one every 15 minutes
        at = start + timedelta(hours=hour)
        for i in range(auth.MAX_FAILURES):
            assert not _try(desk, "root", f"quick {hour}.{i}", None, at + timedelta(seconds=i))
        assert _try(desk, "root", PASSWORD, None, at + timedelta(seconds=10))
        for quarter in (1, 2, 3):
            at_quarter = at + timedelta(minutes=15 * quarter)
            assert not _try(desk, "root", f"slow {hour}.{quarter}", None, at_quarter)
            assert _try(desk, "root", PASSWORD, None, at_quarter + timedelta(seconds=1))
    later = start + timedelta(days=2)
    names = ["root", "ann", "nobody", "ghost"]
    for i in range(auth.CLIENT_MAX_FAILURES):  # 30 fast wrong guesses across accounts
        assert not _try(desk, names[i % 4], "wrong password!", None, later)
    assert _try(desk, "root", PASSWORD, None, later)
    assert _try(desk, "ann", PASSWORD, None, later)
    with desk.sessions() as session:
        keys = set(session.scalars(select(LoginThrottle.key)))
    assert not [k for k in keys if "client:" in k]  # no key shared by everyone "unknown"

    for i in range(auth.ACCOUNT_MAX_FAILURES):  # the ceiling still holds from "unknown"
        _try(desk, "root", f"guess {i}", None, later)
    account_key = _row(desk, f"acct:{admin.id}")
    assert account_key is not None and account_key.locked_until is not None
    assert not _try(desk, "root", PASSWORD, None, later)
    assert _try(desk, "ann", PASSWORD, None, later)  # only that account
    auth.unlock(desk.sessions, "root", by=auth.OPERATOR)
    assert _try(desk, "root", PASSWORD, None, later)


def test_the_client_behind_a_trusted_proxy() -> None:
    """``request_client``: the address the app saw unless the trusted_proxy_header setting names a
    header; then that header's last entry (what the nearest proxy saw; earlier entries are the
    client's own words), over every occurrence of the header, in Streamlit's real header mapping."""
    from streamlit.runtime.context import StreamlitHeaders

    forwarded = StreamlitHeaders([("X-Forwarded-For", "6.6.6.6, 198.51.100.1"), ("x-forwarded-for", "203.0.113.9")])
    assert auth.request_client("10.0.0.2", forwarded, "") == "10.0.0.2"  # off by default: the header is ignored
    assert auth.request_client(None, forwarded, "") == auth.UNKNOWN_CLIENT
    assert auth.request_client("10.0.0.2", forwarded, "X-Forwarded-For") == "203.0.113.9"
    assert auth.request_client("10.0.0.2", StreamlitHeaders([]), "X-Forwarded-For") == auth.UNKNOWN_CLIENT
    assert auth.request_client(None, {"X-Real-IP": "198.51.100.7"}, "x-real-ip") == "198.51.100.7"
    assert auth.forwarded_client("1.2.3.4, [2001:db8::1]:443") == "2001:db8::1"
    assert auth.forwarded_client("2001:db8::1") == "2001:db8::1"
    assert auth.forwarded_client("203.0.113.9:5678") == "203.0.113.9"
    for bad in ("", " ", "unknown", "_hidden", "evil\nforged line", "1.2.3.4, not-an-address", "999.1.1.1"):
        assert auth.forwarded_client(bad) == auth.UNKNOWN_CLIENT, bad


def test_login_page_takes_the_client_from_the_trusted_header(sqlite_desk, monkeypatch) -> None:
    """The sign-in page with TRUSTED_PROXY_HEADER set: a request without the header is "unknown"
    (never the proxy's own address), and the sign-in works and is audited with it."""
    _admin(sqlite_desk)
    import streamlit as st

    st.cache_resource.clear()
    monkeypatch.setenv("DATABASE_URL", sqlite_desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(sqlite_desk.settings.media_dir))
    monkeypatch.setenv("TRUSTED_PROXY_HEADER", "X-Forwarded-For")
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=60).run()
    at.text_input(key="login_username").input("root")
    at.text_input(key="login_password").input(PASSWORD)
    at.button[0].click().run()
    assert not at.exception and not at.error
    signed = audit_rows(sqlite_desk, Action.SIGNIN)
    assert [(e.subject, e.client) for e in signed] == [("root", auth.UNKNOWN_CLIENT)]


def test_a_username_that_names_no_account_is_not_stored_as_typed(desk) -> None:
    """A password typed into the username field stays out of the append-only audit log: a failed
    sign-in under a name with no account is stored as a short hash and the length (the same text
    reads the same), whatever the reason (throttled too); a known account's name is kept."""
    _admin(desk)
    typed = "Tr0ub4dor&3-Secret"
    for _ in range(2):
        assert not _try(desk, typed, PASSWORD, ATTACKER)
    for i in range(auth.CLIENT_MAX_FAILURES):  # lock the client: the next one is refused as throttled
        _try(desk, f"spray{i}", "wrong password!", ATTACKER)
    assert not _try(desk, typed, PASSWORD, ATTACKER)
    assert not _try(desk, "root", "wrong password!", OFFICE)
    failed = audit_rows(desk, Action.SIGNIN_FAILED)
    mine = [e for e in failed if e.subject == auth.unknown_name(typed.lower())]
    assert [e.details["reason"] for e in mine] == ["unknown user", "unknown user", "throttled"]
    assert mine[0].subject.startswith("(unknown username sha256:") and f", {len(typed)} characters)" in mine[0].subject
    assert (failed[-1].subject, failed[-1].details["reason"]) == ("root", "wrong password")
    dumped = repr([(e.subject, e.details, e.client) for e in audit_rows(desk)]).lower()
    assert typed.lower() not in dumped and "spray1" not in dumped


def test_an_account_changed_during_the_password_check_does_not_sign_in(desk, monkeypatch) -> None:
    """The password is checked outside any transaction; an account deactivated (or given a new
    password) meanwhile must not sign in with it. Before the fix the success transaction did not
    look at the account again: the deactivated account signed in once."""
    admin = _admin(desk)
    create_user(desk.sessions, "ann", PASSWORD, "moderator", by=admin)
    verify = auth._verify
    change: dict[str, object] = {}

    def meanwhile(hashed: str, password: str) -> bool:
        if change.pop("deactivate", False):
            auth.set_active(desk.sessions, "ann", False, by=admin)
        if change.pop("new_password", False):
            auth.set_password(desk.sessions, "ann", "a brand new password", by=admin)
        return verify(hashed, password)

    monkeypatch.setattr(auth, "_verify", meanwhile)
    change["deactivate"] = True
    assert not _try(desk, "ann", PASSWORD, OFFICE)
    auth.set_active(desk.sessions, "ann", True, by=admin)
    change["new_password"] = True
    assert not _try(desk, "ann", PASSWORD, OFFICE)  # the old password, checked against the old hash
    assert _try(desk, "ann", "a brand new password", OFFICE)
    with desk.sessions() as session:
        logins = session.scalars(select(User.last_login_at).where(User.username == "ann")).all()
    assert logins[0] is not None
    failed = [e.details["reason"] for e in audit_rows(desk, Action.SIGNIN_FAILED)]
    assert failed == ["inactive account", "password changed during the sign-in"]
    assert [e.subject for e in audit_rows(desk, Action.SIGNIN)] == ["ann"]

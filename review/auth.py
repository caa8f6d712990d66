"""Users, roles, password hashing, sign-in throttling and permission checks.

Passwords are hashed with argon2id (``argon2-cffi``, its default parameters); a hash made with
older parameters is upgraded at the next successful sign-in. Sign-ins fail with one message
whether the user is unknown, inactive, throttled or the password wrong, and each failure costs
one hash check (a refused attempt checks a dummy hash), so the form does not tell which
usernames exist or which are locked.

Throttling (table ``login_throttle``, one row per key). Every attempt is counted on up to three
keys, and the attempt is *reserved* before the password is checked: in one write transaction
(``BEGIN IMMEDIATE`` on SQLite; on Postgres the rows are created with ``INSERT … ON CONFLICT DO
NOTHING`` and locked with ``SELECT … FOR UPDATE`` in key order) the attempt is refused if any of
its keys is locked, and otherwise counted as a failure on every key up front, locking a key whose
count reaches its limit. Only then is the password checked; a right one clears the pair's count
and takes this attempt back from the other two. So N parallel guesses can never check more than
the limit's worth of passwords, and none gets in once the limit is reached.

- ``acct:<id>|client:<address>`` (the pair): one account from one client. ``MAX_FAILURES`` (5)
  failures lock it for ``LOCK_SECONDS`` (60 s), doubling with each further failure up to
  ``MAX_LOCK_SECONDS`` (15 min). It locks out the guesser, not the owner signing in elsewhere.
- ``client:<address>``: one client across every account (and unknown usernames), locked after
  ``CLIENT_MAX_FAILURES`` (30), doubling in the same way (password spraying).
- ``acct:<id>``: one account from every client together, locked after ``ACCOUNT_MAX_FAILURES``
  (100), doubling in the same way: the ceiling on guesses spread over many clients. It is high so
  that slow guessing (one guess every 15 minutes is 4 an hour) never locks the real owner out.

Failures count within ``FAILURE_WINDOW`` (1 hour) from a key's first failure; once the window has
passed (and the key is not locked) the count starts again. Attempts refused while locked are not
counted (hammering a lock does not prolong it). The client address is the one the app sees
(``st.context.ip_address``), or, behind a reverse proxy named in the ``trusted_proxy_header``
setting, the last entry of that header (``forwarded_client``). When the app knows no address
(``"unknown"``: ``st.context.ip_address`` is None for 127.0.0.1, so every sign-in through a local
proxy or tunnel looks alike) only the account-wide key counts: a client key or a pair shared by
everyone would let anyone lock every account, or one account for its owner, in a few guesses.
Admins clear an account's keys with ``python -m review user unlock NAME`` or the Users page; a
new password clears them too.

User administration (create, role, activate / deactivate, password, unlock) and sign-ins (and
failed sign-ins, with the client and, for an existing account, its username, never the password)
are written to the audit log (``review.audit``), in the transaction of the change where there is
one. A username that names no account is not stored as typed (it may be a password typed in the
wrong field, and the log is append-only): the subject is a short sha256 prefix and the length
(``unknown_name``).

Permissions are checked here, in the core, by the functions that act (``require(actor, …)``),
not only by hiding pages. Roles, from least to most: moderator (review posts), lead (also
escalated posts, bulk decisions, releasing others' claims, metrics, exports, ingest and scoring,
everyone's notes), admin (also users, the audit log, purges).
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.models import LoginThrottle, Post, Role, SessionEnd, User
from db.session import rows_changed, writing
from review import audit, events, websession  # websession as a module: it reads accounts here
from review.audit import Action
from review.errors import ReviewError

MAX_FAILURES = 5  # the pair: one account from one client
CLIENT_MAX_FAILURES = 30  # one client, across accounts
ACCOUNT_MAX_FAILURES = 100  # one account, from every client together
FAILURE_WINDOW = timedelta(hours=1)  # failures older than this (since a key's first) stop counting
LOCK_SECONDS = 60
MAX_LOCK_SECONDS = 15 * 60
UNKNOWN_CLIENT = "unknown"
MAX_CLIENT = 64
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 hashes anything, but a megabyte "password" is an attack
USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789._-@+")  # e-mail addresses for single sign-on

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a real password: makes unknown users cost the same")


class Permission(enum.StrEnum):
    REVIEW = "review"  # claim and decide posts, ask the model
    READ_ALL_NOTES = "read_all_notes"  # other moderators' notes in post histories
    BULK = "bulk"  # one decision for many posts
    ESCALATIONS = "escalations"  # claim and decide escalated posts
    METRICS = "metrics"
    EXPORT = "export"
    INGEST = "ingest"
    SCORE = "score"
    MANAGE_USERS = "manage_users"
    AUDIT = "audit"  # read and export the audit log
    PURGE = "purge"  # erase posts' content, apply retention, make backups
    INTEGRATIONS = "integrations"  # API tokens and webhook endpoints (review/tokens.py, review/webhooks.py)


GRANTS: dict[str, frozenset[Permission]] = {
    Role.MODERATOR: frozenset({Permission.REVIEW}),
    Role.LEAD: frozenset(Permission)
    - {Permission.MANAGE_USERS, Permission.AUDIT, Permission.PURGE, Permission.INTEGRATIONS},
    Role.ADMIN: frozenset(Permission),
}


class AuthError(ReviewError):
    """A login that did not succeed; the message never says which part was wrong."""


class PermissionDenied(ReviewError):
    """The user's role does not allow the action."""


@dataclass(frozen=True)
class Actor:
    """Who is acting: a logged-in user (pages pass it to every core function that acts)."""

    id: int
    username: str
    role: str

    def can(self, permission: Permission) -> bool:
        return permission in GRANTS.get(self.role, frozenset())


# Whoever runs the command line on the desk's database already holds every right over it.
OPERATOR = Actor(id=0, username="(command line)", role=Role.ADMIN)


def account_id(actor: Actor) -> int | None:
    """The account id to store for ``actor`` (an event's or an audit row's user): None for the
    command line, whose id 0 is no account. The one place of that rule."""
    return None if actor.id == OPERATOR.id else actor.id


def require(actor: Actor | None, permission: Permission) -> Actor:
    """``actor`` if its role grants ``permission``; otherwise PermissionDenied."""
    if actor is None:
        raise PermissionDenied("log in first")
    if not actor.can(permission):
        raise PermissionDenied(f"a {actor.role} may not {permission.value.replace('_', ' ')}")
    return actor


def require_live(session: Session, actor: Actor | None, permission: Permission) -> Actor:
    """``require`` against the account as it is stored now, not as the caller's ``Actor`` says:
    a role taken away or an account deactivated since sign-in applies at once. The command
    line's ``OPERATOR`` is no account and stands for itself. Returns the fresh actor."""
    if actor is not None and actor != OPERATOR:
        fresh = active_actor(session, actor.id)
        if fresh is None or fresh.username != actor.username:
            raise PermissionDenied("this account is no longer active: sign in again")
        actor = fresh
    return require(actor, permission)


def normalise_username(name: str) -> str:
    """Usernames are compared case-insensitively: NFKC, stripped, lower case."""
    return unicodedata.normalize("NFKC", name).strip().lower()


def check_username(name: str) -> str:
    username = normalise_username(name)
    if not 2 <= len(username) <= 64 or not set(username) <= USERNAME_CHARS:
        raise ReviewError("a username is 2–64 characters: letters, digits, '.', '_', '-', '@' or '+'")
    return username


def check_role(role: str) -> None:
    if role not in set(Role):
        raise ReviewError(f"unknown role {role!r}: use moderator, lead or admin")


def check_password(password: str, username: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ReviewError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ReviewError(f"a password may have at most {MAX_PASSWORD} characters")
    if normalise_username(password) == username:
        raise ReviewError("the password may not be the username")


def _actor(user: User) -> Actor:
    return Actor(user.id, user.username, user.role)


def user_count(session: Session) -> int:
    return session.scalar(select(func.count(User.id))) or 0


def create_user(
    sessions: sessionmaker[Session],
    username: str,
    password: str | None,
    role: str,
    *,
    by: Actor | None,
    via: Actor | None = None,
    client: str | None = None,
) -> Actor:
    """A new account. ``by`` must be an admin, except for the very first account of a desk,
    which is created by whoever runs the desk (``by=None``; ``via`` names them in the audit log,
    the new admin itself otherwise) and must be an admin. ``password=None`` makes a
    single-sign-on-only account."""
    username = check_username(username)
    check_role(role)
    if by is not None:
        require(by, Permission.MANAGE_USERS)
    if password is not None:
        check_password(password, username)
    hashed = _hasher.hash(password) if password is not None else None
    try:
        with writing(sessions) as session:
            if by is None:
                if user_count(session):
                    raise PermissionDenied("only an admin can add users once the first admin exists")
                if role != Role.ADMIN:
                    raise ReviewError("the first account must be an admin (--role admin)")
            else:
                by = require_live(session, by, Permission.MANAGE_USERS)
            user = User(username=username, password_hash=hashed, role=role, active=True)
            session.add(user)
            session.flush()
            created = _actor(user)
            who = by or via or created
            audit.record(session, who, Action.USER_CREATE, username, client=client, role=role,
                         single_sign_on_only=hashed is None, first_admin=by is None)  # fmt: skip
            return created
    except IntegrityError:
        raise ReviewError(f"a user named {username!r} already exists") from None


def add_user_as_operator(sessions: sessionmaker[Session], username: str, password: str | None, role: str) -> Actor:
    """``python -m review user add``: whoever can run the CLI on the desk's database already
    holds every right over it, so the command acts as the desk itself (``OPERATOR``)."""
    with sessions() as session:
        first = user_count(session) == 0
    return create_user(sessions, username, password, role, by=None if first else OPERATOR, via=OPERATOR)


FAILED = "wrong username or password, or too many failed attempts (then wait a few minutes)"


def client_address(client: str | None) -> str:
    """The client as the throttle and the audit log name it: the address as given (printable
    characters, at most ``MAX_CLIENT``), or ``"unknown"``."""
    given = client if isinstance(client, str) else ""
    text = "".join(ch for ch in given if ch.isprintable() and not ch.isspace())[:MAX_CLIENT]
    return text or UNKNOWN_CLIENT


def forwarded_client(values: Iterable[str] | str | None) -> str:
    """The client address from a reverse proxy's header (``X-Forwarded-For``; every occurrence,
    in order): its last entry, the address the nearest proxy, the trusted one, saw (the entries
    before it are whatever the client sent). ``"unknown"`` when there is none or it is no IP
    address; a port, and the brackets of ``[IPv6]:port``, are taken off."""
    if values is None:
        return UNKNOWN_CLIENT
    entries = [e for value in ([values] if isinstance(values, str) else values) for e in str(value).split(",")]
    host = entries[-1].strip().strip('"') if entries else ""
    if host.startswith("["):  # [2001:db8::1]:443
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:  # 203.0.113.9:5678
        host = host.split(":", 1)[0]
    try:
        return client_address(str(ipaddress.ip_address(host)))
    except ValueError:
        return UNKNOWN_CLIENT


def request_client(ip_address: str | None, headers: Mapping[str, str] | None, trusted_header: str = "") -> str:
    """The client of a web request (``st.context``) as the throttle and the audit log name it: with
    ``trusted_header`` set (the ``trusted_proxy_header`` setting), the last entry of that header
    (every occurrence: ``get_all`` where the mapping has it), or ``"unknown"`` without one; the
    address the app saw otherwise."""
    if not trusted_header:
        return client_address(ip_address)
    get_all = getattr(headers, "get_all", None)
    if callable(get_all):
        values = list(get_all(trusted_header))
    else:
        values = [v for k, v in (headers or {}).items() if k.lower() == trusted_header.lower()]
    return forwarded_client(values or None)


def unknown_name(name: str) -> str:
    """How the audit log names a username that matches no account: never as typed (it may be a
    password typed in the wrong field), but so that the same name typed again reads the same."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"(unknown username sha256:{digest}, {len(name)} characters)"


def _account_key(user_id: int) -> str:
    return f"acct:{user_id}"


def _keys_of_account(user_id: int) -> ColumnElement[bool]:
    """The throttle keys that belong to an account: account-wide and its pairs with clients."""
    return or_(
        LoginThrottle.key == _account_key(user_id),
        LoginThrottle.key.startswith(_pair_key(user_id, ""), autoescape=True),
    )


def _pair_key(user_id: int, client: str) -> str:
    return f"acct:{user_id}|client:{client}"


def _client_key(client: str) -> str:
    return f"client:{client}"


def _limits(user_id: int | None, client: str) -> dict[str, int]:
    """The throttle keys of one attempt and the failures that lock each. From an unknown client
    only the account-wide key: "unknown" is everyone the app cannot tell apart, and a key it
    shared would let any one of them lock the others out."""
    limits: dict[str, int] = {}
    if client != UNKNOWN_CLIENT:
        limits[_client_key(client)] = CLIENT_MAX_FAILURES
    if user_id is not None:
        if client != UNKNOWN_CLIENT:
            limits[_pair_key(user_id, client)] = MAX_FAILURES
        limits[_account_key(user_id)] = ACCOUNT_MAX_FAILURES
    return limits


def _lock_for(over: int) -> timedelta:
    """How long a key is locked when its count is ``over`` failures past its limit."""
    return timedelta(seconds=min(MAX_LOCK_SECONDS, LOCK_SECONDS * 2 ** min(max(over, 0), 20)))


def _throttle_rows(session: Session, keys: list[str], now: datetime) -> dict[str, LoginThrottle]:
    """The throttle rows of ``keys``, created when missing and locked for this transaction, in
    key order (every attempt locks in the same order: no deadlock). SQLite needs no row lock:
    ``writing`` holds the database's write lock (BEGIN IMMEDIATE)."""
    ordered = sorted(set(keys))
    if not ordered:
        return {}
    postgres = session.get_bind().dialect.name == "postgresql"
    insert = pg_insert if postgres else sqlite_insert
    query = select(LoginThrottle).where(LoginThrottle.key.in_(ordered)).order_by(LoginThrottle.key)
    if postgres:
        query = query.with_for_update()
    rows: dict[str, LoginThrottle] = {}
    for _ in range(3):  # a row seen by the insert can be pruned (_prune) before it is locked: again
        fresh = [{"key": k, "failures": 0, "window_started_at": now, "locked_until": None} for k in ordered]
        session.execute(insert(LoginThrottle).values(fresh).on_conflict_do_nothing(index_elements=["key"]))
        rows = {row.key: row for row in session.scalars(query.execution_options(populate_existing=True))}
        if len(rows) == len(ordered):
            break
    return rows


def _locked(row: LoginThrottle, now: datetime) -> bool:
    return row.locked_until is not None and row.locked_until > now


def _reserve(session: Session, limits: dict[str, int], now: datetime) -> bool:
    """Reserve one attempt on every key of ``limits``: False (nothing counted) when one of them
    is locked; otherwise each counts the attempt as a failure now, and a key whose count
    reaches its limit is locked. A right password takes it back afterwards (``_succeeded``)."""
    rows = _throttle_rows(session, list(limits), now)
    if any(_locked(row, now) for row in rows.values()):
        return False
    for key, row in rows.items():
        if now - row.window_started_at >= FAILURE_WINDOW:  # the window is over: count afresh
            row.failures, row.window_started_at, row.locked_until = 0, now, None
        row.failures += 1
        if row.failures >= limits[key]:
            row.locked_until = now + _lock_for(row.failures - limits[key])
    return True


def _succeeded(session: Session, user_id: int, client: str, now: datetime) -> None:
    """A verified password: the pair's count is cleared; the client's and the account's counts
    (which hold other people's guesses too) give back this attempt's reservation."""
    limits = _limits(user_id, client)
    pair = _pair_key(user_id, client)
    for key, row in _throttle_rows(session, list(limits), now).items():
        row.failures = 0 if key == pair else max(0, row.failures - 1)
        if row.failures < limits[key]:
            row.locked_until = None
        if row.failures == 0:
            session.delete(row)  # nothing left to count: the key is forgotten


def _prune(sessions: sessionmaker[Session], now: datetime) -> None:
    """Forget keys whose window is over and that are not locked (they would start afresh anyway).
    On Postgres rows another sign-in holds are skipped, so this never waits for one."""
    stale = or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until <= now)
    old = LoginThrottle.window_started_at <= now - FAILURE_WINDOW
    with writing(sessions) as session:
        if session.get_bind().dialect.name == "postgresql":
            keys = select(LoginThrottle.key).where(old, stale).with_for_update(skip_locked=True).limit(1000)
            session.execute(delete(LoginThrottle).where(LoginThrottle.key.in_(keys.scalar_subquery())))
        else:
            session.execute(delete(LoginThrottle).where(old, stale))


def authenticate(
    sessions: sessionmaker[Session],
    username: str,
    password: str,
    now: datetime | None = None,
    *,
    client: str | None = None,
) -> Actor:
    """The actor for a correct username and password; AuthError otherwise. Every failure has
    the same message and the same hashing cost: unknown user, inactive account, wrong password,
    or a throttled attempt. The attempt is reserved (counted as a failure, refused when a key is
    locked) in one write transaction before the password is checked; the check itself runs
    outside any transaction (argon2 takes a fraction of a second; the desk's writes must not
    wait for it), and a right password then takes the failure back. ``client`` is the address
    the request came from (None: unknown). Sign-ins and failures go to the audit log."""
    now = now or datetime.now(UTC)
    name = normalise_username(username[:256])[:255]  # the longest username is 64 characters
    client = client_address(client)
    with writing(sessions) as session:
        user = session.execute(select(User.id, User.password_hash, User.active).where(User.username == name)).first()
        subject = name if user is not None else unknown_name(name)  # never a typed text that names nobody
        limits = _limits(None if user is None else user.id, client)
        if not _reserve(session, limits, now):
            reason = "throttled"
        elif user is None:
            reason = "unknown user"
        elif not user.active:
            reason = "inactive account"
        elif user.password_hash is None:
            reason = "single-sign-on-only account"
        elif len(password) > MAX_PASSWORD:
            reason = "password too long"
        else:
            reason = None
        if reason is not None:  # known to fail: said in the same transaction
            audit.record(session, None, Action.SIGNIN_FAILED, subject, client=client, reason=reason)
    if reason is not None:
        if len(password) <= MAX_PASSWORD:
            _verify(_DUMMY_HASH, password)  # the same cost as a real check
        raise AuthError(FAILED)
    assert user is not None and user.password_hash is not None
    if not _verify(user.password_hash, password):
        audit.log(sessions, None, Action.SIGNIN_FAILED, name, client=client, reason="wrong password")
        raise AuthError(FAILED)  # the failure was counted up front
    values: dict[str, object] = {"last_login_at": now}
    if _hasher.check_needs_rehash(user.password_hash):
        values["password_hash"] = _hasher.hash(password)
    with writing(sessions) as session:
        # the account as it is now: deactivated, or given a new password, during the check above
        # means no sign-in (the attempt stays counted as a failure)
        signed_in = rows_changed(
            session,
            update(User)
            .where(User.id == user.id, User.active.is_(True), User.password_hash == user.password_hash)
            .values(**values)
            .execution_options(synchronize_session=False),
        )
        signed = session.get(User, user.id, populate_existing=True)
        if signed_in != 1 or signed is None:
            late = "inactive account" if signed is None or not signed.active else "password changed during the sign-in"
            audit.record(session, None, Action.SIGNIN_FAILED, name, client=client, reason=late)
        else:
            _succeeded(session, user.id, client, now)
            actor = _actor(signed)
            audit.record(session, actor, Action.SIGNIN, name, client=client, method="password")
    if signed_in != 1:
        raise AuthError(FAILED)
    _prune(sessions, now)
    return actor


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def active_actor(session: Session, user_id: int) -> Actor | None:
    """The account as it is now (role changes apply at once); None when it is gone or inactive."""
    user = session.get(User, user_id)
    return _actor(user) if user is not None and user.active else None


def sso_actor(sessions: sessionmaker[Session], username: str, *, client: str | None = None) -> Actor:
    """The actor for a user that single sign-on (``st.login``) vouched for. The account must
    exist, be active and be a single-sign-on account (no password): sign-on proves who someone
    is, the desk decides what they may do, and an identity never takes over a password account."""
    name = normalise_username(username)[:255]
    client = client_address(client)
    with writing(sessions) as session:
        user = session.scalars(select(User).where(User.username == name)).first()
        if user is not None and user.active and user.password_hash is None:
            actor = _actor(user)
            audit.record(session, actor, Action.SIGNIN, name, client=client, method="single sign-on")
            return actor
        audit.record(session, None, Action.SIGNIN_FAILED, name, client=client, reason="no single-sign-on account")
    raise AuthError(
        f"{username!r} signed in, but has no active single-sign-on account here: ask an admin to add it "
        "(python -m review user add NAME --sso-only)"
    )


def _account(session: Session, username: str) -> User:
    """The stored account named ``username``, its row locked for the change (Postgres)."""
    query = select(User).where(User.username == username)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    user = session.scalars(query.execution_options(populate_existing=True)).first()
    if user is None:
        raise ReviewError(f"there is no user {username!r}")
    return user


def _clear_throttle(session: Session, user_id: int) -> int:
    """Delete every throttle key of an account (from everywhere and per client); how many were locked."""
    now = datetime.now(UTC)
    query = (
        select(LoginThrottle.key, LoginThrottle.locked_until)
        .where(_keys_of_account(user_id))
        .order_by(LoginThrottle.key)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()  # in key order, as sign-ins lock them: no deadlock with one
    rows = session.execute(query).all()
    session.execute(delete(LoginThrottle).where(LoginThrottle.key.in_([r.key for r in rows])))
    return sum(1 for r in rows if r.locked_until is not None and r.locked_until > now)


def set_password(
    sessions: sessionmaker[Session], username: str, password: str, *, by: Actor, client: str | None = None
) -> None:
    """A new password: by its owner, or by an admin. Unlocks the account (every throttle key)."""
    name = normalise_username(username)
    if by.username != name:
        require(by, Permission.MANAGE_USERS)
    check_password(password, name)
    hashed = _hasher.hash(password)
    with writing(sessions) as session:
        if by.username != name:
            by = require_live(session, by, Permission.MANAGE_USERS)
        user = _account(session, name)
        if by.username == name and by != OPERATOR and (by.id != user.id or not user.active):
            raise PermissionDenied("this account is no longer active: sign in again")
        user.password_hash = hashed
        unlocked = _clear_throttle(session, user.id)
        websession.end_all(session, user.id, SessionEnd.PASSWORD)
        audit.record(session, by, Action.USER_PASSWORD, name, client=client, own=by.id == user.id,
                     unlocked_keys=unlocked)  # fmt: skip


def set_role(
    sessions: sessionmaker[Session], username: str, role: str, *, by: Actor, client: str | None = None
) -> None:
    require(by, Permission.MANAGE_USERS)
    check_role(role)
    name = normalise_username(username)
    if name == by.username and role != Role.ADMIN:
        raise ReviewError("an admin cannot take away their own admin role")
    with writing(sessions) as session:
        by = require_live(session, by, Permission.MANAGE_USERS)
        user = _account(session, name)
        before = user.role
        user.role = role
        if before != role:
            websession.end_all(session, user.id, SessionEnd.ROLE)
            audit.record(session, by, Action.USER_ROLE, name, client=client, before=before, after=role)


def set_active(
    sessions: sessionmaker[Session], username: str, active: bool, *, by: Actor, client: str | None = None
) -> int:
    """Activate or deactivate an account. Deactivation also releases the live claims the
    account holds (its posts go back to the queue at once, not when their leases end), in the
    same transaction; the number released."""
    require(by, Permission.MANAGE_USERS)
    name = normalise_username(username)
    if name == by.username and not active:
        raise ReviewError("an admin cannot deactivate their own account")
    with writing(sessions) as session:
        by = require_live(session, by, Permission.MANAGE_USERS)
        user = _account(session, name)
        before = user.active
        user.active = active
        if before != active:
            audit.record(session, by, Action.USER_ACTIVATE if active else Action.USER_DEACTIVATE, name, client=client)
        if not active:
            websession.end_all(session, user.id, SessionEnd.DEACTIVATED)
        released = 0 if active else release_claims_of(session, user.id, by=by)
        if released:
            audit.record(session, by, Action.CLAIMS_RELEASED, name, client=client, count=released,
                         why="account deactivated")  # fmt: skip
        return released


def unlock(sessions: sessionmaker[Session], username: str, *, by: Actor, client: str | None = None) -> int:
    """Clear every sign-in throttle key of an account (from every client, and account-wide):
    the admin's way back in for someone locked out. The number of keys that were locked."""
    require(by, Permission.MANAGE_USERS)
    name = normalise_username(username)
    with writing(sessions) as session:
        by = require_live(session, by, Permission.MANAGE_USERS)
        user = _account(session, name)
        unlocked = _clear_throttle(session, user.id)
        audit.record(session, by, Action.USER_UNLOCK, name, client=client, locked_keys=unlocked)
        return unlocked


def lock_state(session: Session, user_id: int, now: datetime | None = None) -> tuple[str, datetime | None]:
    """Whether an account is locked now: ``("", None)``; ``("everywhere", until)`` when its
    account-wide key is; ``("from N clients", until)`` when only some clients are (the pairs)."""
    now = now or datetime.now(UTC)
    rows = session.execute(
        select(LoginThrottle.key, LoginThrottle.locked_until).where(
            _keys_of_account(user_id), LoginThrottle.locked_until > now
        )
    ).all()
    if not rows:
        return "", None
    until = max(r.locked_until for r in rows)
    if any(r.key == _account_key(user_id) for r in rows):
        return "everywhere", until
    return f"from {len(rows)} client{'s' if len(rows) != 1 else ''}", until


def list_users(session: Session, *, by: Actor) -> list[dict[str, object]]:
    require_live(session, by, Permission.MANAGE_USERS)
    users = session.scalars(select(User).order_by(User.username)).all()
    now = datetime.now(UTC)
    out = []
    for u in users:
        locked, until = lock_state(session, u.id, now)
        out.append(
            {
                "username": u.username,
                "role": u.role,
                "active": u.active,
                "last_login_at": u.last_login_at,
                "locked": locked,
                "locked_until": until,
                "single_sign_on_only": u.password_hash is None,
            }
        )
    return out


@dataclass(frozen=True)
class Preferences:
    """How the review pages show images to one user (ROOST Coop's per-user media settings)."""

    blur_flagged: bool = True  # images the NSFW score or the category flags stay blurred until revealed
    greyscale: bool = False  # every image in greyscale (less distressing, colour still one click away)


def preferences(session: Session, actor: Actor) -> Preferences:
    stored = session.scalar(select(User.preferences).where(User.id == actor.id)) or {}
    known = {k: bool(v) for k, v in stored.items() if k in Preferences.__dataclass_fields__}
    return Preferences(**known)


def set_preferences(sessions: sessionmaker[Session], actor: Actor, prefs: Preferences) -> None:
    """Store ``actor``'s own preferences (nobody sets another user's)."""
    with writing(sessions) as session:
        session.execute(
            update(User)
            .where(User.id == actor.id)
            .values(preferences={"blur_flagged": prefs.blur_flagged, "greyscale": prefs.greyscale})
        )


def release_claims_of(session: Session, user_id: int, *, by: Actor, now: datetime | None = None) -> int:
    """In the caller's transaction (an account's deactivation): end every live claim of
    ``user_id``, each with a ``release`` event by ``by`` (none for the command line) whose note
    says whose claim it was. The number of posts released."""
    now = now or datetime.now(UTC)
    holder = session.scalar(select(User.username).where(User.id == user_id)) or f"user {user_id}"
    query = select(Post.id).where(Post.claimed_by_id == user_id, Post.lease_expires_at > now).order_by(Post.id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    released = 0
    note = f"released {holder}'s claim: the account was deactivated"
    for post_id in session.scalars(query).all():
        released += events.end_claim(session, post_id, user_id, by=account_id(by), now=now, note=note)
    return released

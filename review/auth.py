"""Users, roles, password hashing, login throttling and permission checks.

Passwords are hashed with argon2id (``argon2-cffi``, its default parameters); a hash made with
older parameters is upgraded at the next successful login. Logins fail with one message whether
the user is unknown, inactive, locked or the password wrong (and each costs one hash check), so
the form does not tell which usernames exist. After ``MAX_FAILURES`` failures in a row
an account is locked for ``LOCK_SECONDS``, doubling with each further failure up to
``MAX_LOCK_SECONDS``; a successful login resets the count.

Permissions are checked here, in the core, by the functions that act (``require(actor, …)``),
not only by hiding pages. Roles, from least to most: moderator (review posts), lead (also
escalated posts, bulk decisions, metrics, exports, ingest and scoring, everyone's notes), admin
(also users).
"""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.models import Role, User
from db.session import writing
from review.errors import ReviewError

MAX_FAILURES = 5
LOCK_SECONDS = 60
MAX_LOCK_SECONDS = 15 * 60
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


GRANTS: dict[str, frozenset[Permission]] = {
    Role.MODERATOR: frozenset({Permission.REVIEW}),
    Role.LEAD: frozenset(Permission) - {Permission.MANAGE_USERS, Permission.AUDIT, Permission.PURGE},
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
    sessions: sessionmaker[Session], username: str, password: str | None, role: str, *, by: Actor | None
) -> Actor:
    """A new account. ``by`` must be an admin, except for the very first account of a desk,
    which is created by whoever runs the desk (``by=None``) and must be an admin.
    ``password=None`` makes a single-sign-on-only account."""
    username = check_username(username)
    check_role(role)
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
                require(by, Permission.MANAGE_USERS)
            user = User(username=username, password_hash=hashed, role=role, active=True)
            session.add(user)
            session.flush()
            return _actor(user)
    except IntegrityError:
        raise ReviewError(f"a user named {username!r} already exists") from None


def add_user_as_operator(sessions: sessionmaker[Session], username: str, password: str | None, role: str) -> Actor:
    """``python -m review user add``: whoever can run the CLI on the desk's database already
    holds every right over it, so the command acts as the desk itself (``OPERATOR``)."""
    with sessions() as session:
        first = user_count(session) == 0
    return create_user(sessions, username, password, role, by=None if first else OPERATOR)


FAILED = "wrong username or password, or too many failed attempts (then wait a few minutes)"


def authenticate(sessions: sessionmaker[Session], username: str, password: str, now: datetime | None = None) -> Actor:
    """The actor for a correct username and password; AuthError otherwise. Every failure has
    the same message and the same hashing cost: unknown user, inactive account, wrong password,
    or an account locked after repeated failures. The password is checked outside any write
    transaction (argon2 takes a fraction of a second; the desk's writes must not wait for it);
    the failure count then changes in one atomic update."""
    now = now or datetime.now(UTC)
    name = normalise_username(username)
    if len(password) > MAX_PASSWORD:
        raise AuthError(FAILED)
    with sessions() as session:
        user = session.scalars(select(User).where(User.username == name)).first()
        found = None if user is None else (user.id, user.password_hash, user.active, user.locked_until)
    if found is None or found[1] is None or not found[2]:
        _verify(_DUMMY_HASH, password)  # the same cost as a real check
        raise AuthError(FAILED)
    user_id, hashed, _, locked_until = found
    right = _verify(hashed, password)  # also when locked: the answer takes the same time
    if locked_until is not None and locked_until > now:
        raise AuthError(FAILED)
    with writing(sessions) as session:
        if not right:
            failures = session.execute(
                update(User).where(User.id == user_id).values(failed_logins=User.failed_logins + 1)
                .returning(User.failed_logins)
            ).scalar_one()  # fmt: skip
            if failures >= MAX_FAILURES:
                wait = timedelta(seconds=min(MAX_LOCK_SECONDS, LOCK_SECONDS * 2 ** (failures - MAX_FAILURES)))
                session.execute(update(User).where(User.id == user_id).values(locked_until=now + wait))
        else:
            values: dict[str, object] = {"failed_logins": 0, "locked_until": None, "last_login_at": now}
            if _hasher.check_needs_rehash(hashed):
                values["password_hash"] = _hasher.hash(password)
            session.execute(update(User).where(User.id == user_id).values(**values))
            user = session.get(User, user_id)
            assert user is not None
            return _actor(user)
    raise AuthError(FAILED)  # after the transaction: the failure count is stored


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def active_actor(session: Session, user_id: int) -> Actor | None:
    """The account as it is now (role changes apply at once); None when it is gone or inactive."""
    user = session.get(User, user_id)
    return _actor(user) if user is not None and user.active else None


def sso_actor(sessions: sessionmaker[Session], username: str) -> Actor:
    """The actor for a user that single sign-on (``st.login``) vouched for. The account must
    exist, be active and be a single-sign-on account (no password): sign-on proves who someone
    is, the desk decides what they may do, and an identity never takes over a password account."""
    with sessions() as session:
        user = session.scalars(select(User).where(User.username == normalise_username(username))).first()
        if user is None or not user.active or user.password_hash is not None:
            raise AuthError(
                f"{username!r} signed in, but has no active single-sign-on account here: ask an admin to add it "
                "(python -m review user add NAME --sso-only)"
            )
        return _actor(user)


def set_password(sessions: sessionmaker[Session], username: str, password: str, *, by: Actor) -> None:
    """A new password: by its owner, or by an admin. Unlocks the account."""
    name = normalise_username(username)
    if by.username != name:
        require(by, Permission.MANAGE_USERS)
    check_password(password, name)
    _update(sessions, name, password_hash=_hasher.hash(password), failed_logins=0, locked_until=None)


def set_role(sessions: sessionmaker[Session], username: str, role: str, *, by: Actor) -> None:
    require(by, Permission.MANAGE_USERS)
    check_role(role)
    name = normalise_username(username)
    if name == by.username and role != Role.ADMIN:
        raise ReviewError("an admin cannot take away their own admin role")
    _update(sessions, name, role=role)


def set_active(sessions: sessionmaker[Session], username: str, active: bool, *, by: Actor) -> None:
    require(by, Permission.MANAGE_USERS)
    name = normalise_username(username)
    if name == by.username and not active:
        raise ReviewError("an admin cannot deactivate their own account")
    _update(sessions, name, active=active)


def _update(sessions: sessionmaker[Session], username: str, **values: object) -> None:
    with writing(sessions) as session:
        done = session.execute(update(User).where(User.username == username).values(**values))
        if done.rowcount != 1:
            raise ReviewError(f"there is no user {username!r}")


def list_users(session: Session, *, by: Actor) -> list[dict[str, object]]:
    require(by, Permission.MANAGE_USERS)
    users = session.scalars(select(User).order_by(User.username))
    return [
        {
            "username": u.username,
            "role": u.role,
            "active": u.active,
            "last_login_at": u.last_login_at,
            "locked_until": u.locked_until,
            "single_sign_on_only": u.password_hash is None,
        }  # fmt: skip
        for u in users
    ]


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

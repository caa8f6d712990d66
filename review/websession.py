"""Sign-in sessions of the app: what keeps a moderator signed in across a reload or a new tab,
and what ends it.

A sign-in (pages/login.py, after review.auth has checked the password) starts a session row
(``web_session``) with a one-time hand-over code. The page hands that code to the browser, which
trades it at ``POST /auth/session`` (app.py) for the session cookie: a random token, ``HttpOnly``
and ``SameSite=Strict``, of which only the sha256 is stored. Page scripts never see the token,
and a code is worth nothing once traded or after ``HANDOFF_SECONDS``.

On every run the app checks its session row (:func:`check`): a reload or a new tab finds it by
the cookie (:func:`resume`). A session ends, and every tab of it is signed out at its next click
with the reason (:data:`END_MESSAGES`), on sign-out, after ``session_idle_minutes`` without a
click, ``session_max_hours`` after its sign-in, and, for every session of the account at once
(:func:`end_all`, in the caller's transaction), when an admin deactivates the account or its
password or role changes.

This module does not import streamlit: the pages call it, app.py's routes call it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from db.models import SessionEnd, WebSession
from db.session import rows_changed, writing
from review import auth  # as a module: review.auth calls end_all, and this reads accounts
from review.config import Settings

COOKIE = "review_session"
TRADE_PATH = "/auth/session"  # app.py's routes, and the scripts of pages/_common.py that call them
SIGN_OUT_PATH = "/auth/sign-out"
LEAVE_PATH = "/auth/leave"
HANDOFF_SECONDS = 60  # a sign-in's hand-over code must be traded for the cookie within this
KEEP_ENDED = timedelta(days=30)  # an ended or expired session's row is deleted this long after, at a sign-in
TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often per session
TOKEN_BYTES = 32
MAX_TOKEN = 128  # a cookie or code longer than this is not ours: not even hashed

END_MESSAGES = {  # a sign-out needs no explanation: it has none
    SessionEnd.IDLE: "You were signed out after {idle} minutes without activity.",
    SessionEnd.EXPIRED: "You were signed out: a sign-in lasts at most {hours} hours.",
    SessionEnd.DEACTIVATED: (
        "You were signed out: an admin deactivated your account (your posts went back to the queue)."
    ),
    SessionEnd.PASSWORD: "You were signed out: your password was changed. Sign in with the new one.",
    SessionEnd.ROLE: "You were signed out: an admin changed your role. Sign in again to work in your new role.",
}


@dataclass(frozen=True)
class Started:
    """A new session and the code the browser trades for its cookie (shown to no one)."""

    session_id: int
    handoff: str


@dataclass(frozen=True)
class Live:
    session_id: int
    actor: auth.Actor


@dataclass(frozen=True)
class Gone:
    """No live session: ``reason`` says why it ended (None: there was none, or the token is not one)."""

    reason: SessionEnd | None = None

    def message(self, settings: Settings) -> str | None:
        """What to tell the user, or None when there is nothing to tell (no session, or their own sign-out)."""
        if self.reason is None or self.reason is SessionEnd.SIGNED_OUT:
            return None
        return END_MESSAGES[self.reason].format(idle=settings.session_idle_minutes, hours=settings.session_max_hours)


def _digest(secret: object) -> str | None:
    """The sha256 a code or token is stored as; None for what cannot be one (not a string, empty, too long)."""
    if not isinstance(secret, str) or not secret or len(secret) > MAX_TOKEN:
        return None
    return hashlib.sha256(secret.encode()).hexdigest()


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def start(
    sessions: sessionmaker[Session],
    actor: auth.Actor,
    settings: Settings,
    *,
    client: str = "",
    now: datetime | None = None,
) -> Started:
    """A session for ``actor``, just signed in, with its one-time hand-over code."""
    now = _now(now)
    handoff = secrets.token_urlsafe(TOKEN_BYTES)
    with writing(sessions) as session:
        gone = now - KEEP_ENDED  # ended sessions (with their client addresses) are not kept for ever
        session.execute(delete(WebSession).where(or_(WebSession.ended_at < gone, WebSession.expires_at < gone)))
        row = WebSession(
            user_id=actor.id,
            handoff_hash=_digest(handoff),
            handoff_expires_at=now + timedelta(seconds=HANDOFF_SECONDS),
            client=client[:64],
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(hours=settings.session_max_hours),
        )
        session.add(row)
        session.flush()
        return Started(row.id, handoff)


def trade(sessions: sessionmaker[Session], handoff: str, *, now: datetime | None = None) -> tuple[str, datetime] | None:
    """The cookie's token and its expiry for a live session's hand-over code, once; None for a
    code that is unknown, used, expired, or whose session has ended."""
    now = _now(now)
    digest = _digest(handoff)
    if digest is None:
        return None
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with writing(sessions) as session:
        row = session.scalar(select(WebSession).where(WebSession.handoff_hash == digest).with_for_update())
        if row is None:
            return None
        live = row.ended_at is None and row.handoff_expires_at is not None and row.handoff_expires_at > now
        row.handoff_hash = row.handoff_expires_at = None  # one use, traded or not
        if not live or row.expires_at <= now:
            return None
        row.token_hash = _digest(token)
        return token, row.expires_at


def _examined(
    session: Session, row: WebSession | None, settings: Settings, now: datetime, touch: bool
) -> tuple[Live | Gone, dict[str, object]]:
    """What ``row`` is now (read only), and what must be written to it: the end of a session
    that timed out or whose account is no longer active, or a click's ``last_seen_at``."""
    if row is None:
        return Gone(), {}
    if row.ended_at is not None:
        return Gone(SessionEnd(row.end_reason) if row.end_reason else None), {}
    reason = None
    if row.expires_at <= now:
        reason = SessionEnd.EXPIRED
    elif row.last_seen_at + timedelta(minutes=settings.session_idle_minutes) <= now:
        reason = SessionEnd.IDLE
    actor = None if reason is not None else auth.active_actor(session, row.user_id)
    if actor is None:  # (an account deactivated without end_all, by hand in the database: ended all the same)
        reason = reason or SessionEnd.DEACTIVATED
        return Gone(reason), {"ended_at": now, "end_reason": reason}
    seen: dict[str, object] = {"last_seen_at": now} if touch and now - row.last_seen_at >= TOUCH_EVERY else {}
    return Live(row.id, actor), seen


def _looked_up(
    sessions: sessionmaker[Session], which: ColumnElement[bool], settings: Settings, now: datetime, touch: bool
) -> Live | Gone:
    """The session ``which`` picks, examined in a read; the write lock is taken only when
    something changes (once a minute per clicking user, or at a session's end), so the check
    that every run of every page makes does not queue behind the desk's writers on SQLite."""
    with sessions() as session:
        row = session.scalar(select(WebSession).where(which))
        found, changes = _examined(session, row, settings, now, touch)
    if changes and row is not None:
        with writing(sessions) as session:
            session.execute(update(WebSession).where(WebSession.id == row.id, WebSession.ended_at.is_(None))
                            .values(**changes))  # fmt: skip
    return found


def check(
    sessions: sessionmaker[Session], session_id: int, settings: Settings, *, touch: bool = True,
    now: datetime | None = None,
) -> Live | Gone:  # fmt: skip
    """The session of a signed-in tab, on each run: its user as the database has them now (a
    deactivated account, an ended or timed-out session: Gone with the reason). ``touch``: this
    run is the user's activity (a click), which keeps the session from idling; a background
    refresh of the page passes False."""
    return _looked_up(sessions, WebSession.id == session_id, settings, _now(now), touch)


def resume(
    sessions: sessionmaker[Session], token: str | None, settings: Settings, *, touch: bool = True,
    now: datetime | None = None,
) -> Live | Gone:  # fmt: skip
    """The session whose cookie a reloaded page or a new tab brought (None or a stranger's
    string: Gone without a reason); ``touch`` as for :func:`check`."""
    digest = _digest(token)
    if digest is None:
        return Gone()
    return _looked_up(sessions, WebSession.token_hash == digest, settings, _now(now), touch)


def end(sessions: sessionmaker[Session], session_id: int, *, now: datetime | None = None) -> None:
    """Sign-out: the session ends, in every tab that shares it."""
    with writing(sessions) as session:
        _end(session, WebSession.id == session_id, SessionEnd.SIGNED_OUT, _now(now))


def end_by_token(sessions: sessionmaker[Session], token: str | None, *, now: datetime | None = None) -> None:
    """Sign-out by the cookie (app.py's ``/auth/sign-out``); an unknown token changes nothing."""
    digest = _digest(token)
    if digest is not None:
        with writing(sessions) as session:
            _end(session, WebSession.token_hash == digest, SessionEnd.SIGNED_OUT, _now(now))


def end_all(session: Session, user_id: int, reason: SessionEnd, *, now: datetime | None = None) -> int:
    """In the caller's transaction (review.auth: deactivation, a new password or role): every
    live session of ``user_id`` ends with ``reason``. The number ended."""
    return _end(session, WebSession.user_id == user_id, reason, _now(now))


def _end(session: Session, which: ColumnElement[bool], reason: SessionEnd, now: datetime) -> int:
    return rows_changed(
        session,
        update(WebSession)
        .where(which, WebSession.ended_at.is_(None))
        .values(ended_at=now, end_reason=reason, handoff_hash=None, handoff_expires_at=None),
    )


def user_of(
    sessions: sessionmaker[Session], token: str | None, settings: Settings, *, now: datetime | None = None
) -> int | None:
    """The account a cookie signs in (for app.py's routes), without counting as activity."""
    found = resume(sessions, token, settings, touch=False, now=now)
    return found.actor.id if isinstance(found, Live) else None

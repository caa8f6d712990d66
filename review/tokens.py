"""API tokens: a platform's credential for the HTTP API (review/api/).

A token is ``rd_`` + 43 characters of base64url randomness (256 bits) + a 6-character checksum
(CRC32 of the rest, base 36), so a token pasted with a character missing is told from an unknown
one without a database read, and secret scanners can recognise the prefix. Only its sha256 is
stored (a token is random, so a slow password hash would add nothing); it is shown once, when
it is made. A token carries scopes (:class:`Scope`), can be revoked, and remembers when it was
last used (written at most once a minute, so that busy integrations do not write on every call).

Tokens are made and revoked by admins (``Permission.INTEGRATIONS``), on the Integrations page or
with ``python -m review token``; each is an audit row.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import secrets
import string
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.models import ApiToken
from db.session import writing
from review import audit
from review.auth import Actor, Permission, account_id, require_live
from review.errors import ReviewError

PREFIX = "rd_"
_BODY_CHARS = 43  # base64url of 32 random bytes, unpadded
_CHECK_CHARS = 6
TOKEN_LENGTH = len(PREFIX) + _BODY_CHARS + _CHECK_CHARS
HINT_CHARS = 8  # "rd_" and the first 5 random characters: shown in lists, never enough to use
LAST_USED_EVERY = timedelta(minutes=1)
NAME_CHARS = set(string.ascii_letters + string.digits + "-_.")


class Scope(enum.StrEnum):
    INGEST = "ingest"  # push posts and reports
    READ = "read"  # read posts, their verdicts and decisions
    DECISIONS = "decisions"  # the decision feed


class TokenError(ReviewError):
    """A token request that cannot be done (a bad name or scope, a name in use, no such token)."""


@dataclass(frozen=True)
class TokenInfo:
    """A stored token as lists show it (never the token itself)."""

    id: int
    name: str
    hint: str
    scopes: tuple[Scope, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _checksum(body: str) -> str:
    value = zlib.crc32(body.encode("ascii"))
    digits = string.digits + string.ascii_lowercase
    out = ""
    for _ in range(_CHECK_CHARS):
        value, digit = divmod(value, 36)
        out = digits[digit] + out
    return out


def _new_token() -> str:
    body = PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
    return body + _checksum(body)


def well_formed(token: str) -> bool:
    """Whether ``token`` has the shape and checksum of a token this desk makes."""
    if len(token) != TOKEN_LENGTH or not token.startswith(PREFIX) or not token.isascii():
        return False
    body, check = token[:-_CHECK_CHARS], token[-_CHECK_CHARS:]
    return secrets.compare_digest(_checksum(body), check)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def parse_scopes(text: str | list[str] | tuple[str, ...]) -> tuple[Scope, ...]:
    """``"ingest,read"`` (or a list) as scopes, in :class:`Scope` order; TokenError names an unknown one."""
    names = text.split(",") if isinstance(text, str) else list(text)
    wanted = {n.strip().lower() for n in names if n.strip()}
    unknown = sorted(wanted - {s.value for s in Scope})
    if unknown:
        raise TokenError(f"unknown scope {', '.join(unknown)}; the scopes are {', '.join(s.value for s in Scope)}")
    if not wanted:
        raise TokenError(f"name at least one scope: {', '.join(s.value for s in Scope)}")
    return tuple(s for s in Scope if s.value in wanted)


def _info(row: ApiToken) -> TokenInfo:
    scopes = tuple(Scope(s) for s in row.scopes.split(",") if s)
    return TokenInfo(row.id, row.name, row.hint, scopes, row.created_at, row.last_used_at, row.revoked_at)


def create_token(
    sessions: sessionmaker[Session], actor: Actor, name: str, scopes: str | list[str] | tuple[str, ...]
) -> tuple[TokenInfo, str]:
    """Make a token named ``name`` with ``scopes``: its stored description and the token itself,
    which is not stored and cannot be shown again."""
    name = name.strip()
    if not 1 <= len(name) <= 64 or not set(name) <= NAME_CHARS:
        raise TokenError("a token's name is 1 to 64 letters, digits, '-', '_' or '.'")
    chosen = parse_scopes(scopes)
    token = _new_token()
    try:
        with writing(sessions) as session:
            actor = require_live(session, actor, Permission.INTEGRATIONS)
            row = ApiToken(
                name=name,
                token_hash=token_hash(token),
                hint=token[:HINT_CHARS],
                scopes=",".join(s.value for s in chosen),
                created_by_id=account_id(actor),
                created_at=datetime.now(UTC),
            )
            session.add(row)
            session.flush()
            audit.record(session, actor, audit.Action.TOKEN_CREATE, name, scopes=[s.value for s in chosen])
            info = _info(row)
    except IntegrityError:
        raise TokenError(f"there is already a token named {name!r}; revoke it or choose another name") from None
    return info, token


def revoke_token(sessions: sessionmaker[Session], actor: Actor, name: str) -> TokenInfo:
    """Revoke the token ``name``: the next request with it is refused (401)."""
    with writing(sessions) as session:
        actor = require_live(session, actor, Permission.INTEGRATIONS)
        row = session.scalar(select(ApiToken).where(ApiToken.name == name.strip()))
        if row is None:
            raise TokenError(f"there is no token named {name!r}")
        if row.revoked_at is None:
            row.revoked_at = datetime.now(UTC)
            audit.record(session, actor, audit.Action.TOKEN_REVOKE, row.name)
        return _info(row)


def list_tokens(sessions: sessionmaker[Session]) -> list[TokenInfo]:
    """Every token, newest first (revoked ones too: they explain old reports)."""
    with sessions() as session:
        return [_info(row) for row in session.scalars(select(ApiToken).order_by(ApiToken.id.desc()))]


def authenticate(sessions: sessionmaker[Session], token: str, now: datetime | None = None) -> TokenInfo | None:
    """The live token ``token`` is, or None (malformed, unknown or revoked: the caller answers
    401 without saying which). Notes the time of use, at most once a minute."""
    if not well_formed(token):
        return None
    now = now or datetime.now(UTC)
    with sessions() as session:
        row = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(token)))
        if row is None or row.revoked_at is not None:
            return None
        info = _info(row)
    if info.last_used_at is None or now - info.last_used_at >= LAST_USED_EVERY:
        stale = ApiToken.last_used_at.is_(None) | (ApiToken.last_used_at <= now - LAST_USED_EVERY)
        with writing(sessions) as session:
            session.execute(
                update(ApiToken)
                .where(ApiToken.id == info.id, stale)
                .values(last_used_at=now)
                .execution_options(synchronize_session=False)
            )
    return info

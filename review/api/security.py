"""Bearer tokens on every route but the health check: 401 without a live token (missing,
malformed, unknown or revoked: the answer does not say which), 403 when it lacks the route's scope.

The token travels only in the ``Authorization`` header: a token in the URL would land in access
logs and proxies, so a ``?token=`` style parameter is refused. Neither the token nor the header
is ever echoed in an answer or a log line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from review.desk import Desk
from review.tokens import PREFIX, Scope, TokenInfo, authenticate

bearer = HTTPBearer(
    auto_error=False,
    description="An API token (python -m review token add NAME --scopes ...), sent as `Authorization: Bearer <token>`",
)
URL_TOKEN_NAMES = frozenset({"token", "access_token", "api_key", "apikey"})
CHALLENGE = {"WWW-Authenticate": "Bearer"}
TOKEN_LIKE = re.compile(re.escape(PREFIX) + r"[A-Za-z0-9_-]{8,}")


class TokensOutOfLogs(logging.Filter):
    """Blanks anything shaped like a token in a log line's arguments: the access log prints each
    request's path and query, where a client may have put its token against the rules."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                TOKEN_LIKE.sub(PREFIX + "[hidden]", a) if isinstance(a, str) else a for a in record.args
            )
        return True


def keep_tokens_out_of_logs() -> None:
    """Put :class:`TokensOutOfLogs` on uvicorn's access log (once per process)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, TokensOutOfLogs) for f in access.filters):
        access.addFilter(TokensOutOfLogs())


def desk_of(request: Request) -> Desk:
    """The desk this process opened at startup (see review/api/app.py)."""
    desk: Desk = request.app.state.desk
    return desk


def _refused(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers=CHALLENGE)


def require(scope: Scope) -> Callable[..., TokenInfo]:
    """A dependency that lets a request through with a live token holding ``scope``; the token's
    description (never the token) for the route."""

    def token_with_scope(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> TokenInfo:
        if URL_TOKEN_NAMES & {name.lower() for name in request.query_params}:
            raise _refused("tokens are accepted only in the Authorization header, never in the URL; revoke this one")
        if credentials is None:
            raise _refused("send an API token as 'Authorization: Bearer <token>'")
        info = authenticate(desk_of(request).sessions, credentials.credentials)
        if info is None:
            raise _refused("the token is not valid: unknown, revoked or mistyped")
        if scope not in info.scopes:
            raise HTTPException(403, f"this token lacks the {scope.value!r} scope this route needs")
        return info

    return token_with_scope

"""The desk's web server: ``streamlit run app.py`` (scripts/start.sh) serves the app
(dashboard.py) and the three small HTTP routes of its sign-in session (review/websession.py),
which a page script cannot answer itself because only an HTTP response sets an HttpOnly cookie:

- ``POST /auth/session`` trades a sign-in's one-time hand-over code for the session cookie;
- ``POST /auth/sign-out`` ends the cookie's session and deletes the cookie;
- ``POST /auth/leave`` (a beacon sent as a Review tab closes or reloads) shortens the lease on
  the post that tab showed to ``review.decisions.LEAVE_GRACE``, so a closed tab's post is back
  in the queue soon.

Each answers only same-origin requests (the browser's Origin header, when sent, names this
server) and tells nothing beyond its status code. ``streamlit run dashboard.py`` still runs the
app, without these routes: then a reload asks for the password again.
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime
from urllib.parse import urlsplit

import streamlit as st
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from db.models import as_id
from review import websession
from review.decisions import leave
from review.desk import Desk, open_desk

MAX_BODY = 256  # a hand-over code or a post id: anything longer is not ours

log = logging.getLogger("review.app")


@functools.cache
def _desk() -> Desk:
    return open_desk(check_schema=False)


def _same_origin(request: Request) -> bool:
    """A browser names the page's origin on a POST; a request from another site is refused
    (the cookie is SameSite=Strict as well: this refuses the sign-in code and the beacon too).
    Behind a reverse proxy, the proxy must pass the browser's Host header on (docs/OPERATIONS.md):
    a refusal is logged, or every sign-in would quietly last only until the next reload."""
    origin = request.headers.get("origin")
    if origin is None or urlsplit(origin).netloc == request.headers.get("host"):
        return True
    log.warning("refused %s from origin %r for host %r (a proxy must pass the Host header on)",
                request.url.path, origin[:100], (request.headers.get("host") or "")[:100])  # fmt: skip
    return False


async def _body(request: Request) -> str | None:
    """The request's short text body (a code, a post id), or None when it is longer than
    ``MAX_BODY``: read no further than that, whatever the client declares or sends."""
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > MAX_BODY:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return body.decode("ascii", "replace").strip()


async def trade_code(request: Request) -> Response:
    if not _same_origin(request):
        return Response(status_code=403)
    code = await _body(request)
    if not code:
        return Response(status_code=400)
    desk = _desk()
    traded = await run_in_threadpool(websession.trade, desk.sessions, code)
    if traded is None:
        return Response(status_code=403)
    token, expires = traded
    response = Response(status_code=204)
    response.set_cookie(
        websession.COOKIE,
        token,
        max_age=max(1, int((expires - datetime.now(UTC)).total_seconds())),
        path="/",
        secure=desk.settings.session_cookie_secure,
        httponly=True,
        samesite="strict",
    )
    return response


async def sign_out(request: Request) -> Response:
    if not _same_origin(request):
        return Response(status_code=403)
    await run_in_threadpool(websession.end_by_token, _desk().sessions, request.cookies.get(websession.COOKIE))
    response = Response(status_code=204)
    response.delete_cookie(websession.COOKIE, path="/", httponly=True, samesite="strict")
    return response


async def leave_post(request: Request) -> Response:
    if not _same_origin(request):
        return Response(status_code=403)
    text = await _body(request)
    post_id = as_id(text) if text else None
    if post_id is None:
        return Response(status_code=400)
    desk = _desk()
    user_id = await run_in_threadpool(websession.user_of, desk.sessions, request.cookies.get(websession.COOKIE),
                                      desk.settings)  # fmt: skip
    if user_id is None:
        return Response(status_code=403)
    await run_in_threadpool(leave, desk.sessions, user_id, post_id)
    return Response(status_code=204)


app = st.App(
    "dashboard.py",
    routes=[
        Route(websession.TRADE_PATH, trade_code, methods=["POST"]),
        Route(websession.SIGN_OUT_PATH, sign_out, methods=["POST"]),
        Route(websession.LEAVE_PATH, leave_post, methods=["POST"]),
    ],
)

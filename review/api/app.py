"""The desk's HTTP API (FastAPI): posts and reports in, verdicts and decisions out.

``create_app(settings)`` builds the app; ``python -m review api`` serves it with uvicorn (as the
import string ``review.api.app:create_app`` with ``factory=True``, so that each worker process
builds its own). The desk (engine, sessions) is opened once per process at startup, never at
import. Routes that touch the database are plain functions, run in FastAPI's thread pool
(``POST /v1/posts`` reads its body in the event loop, then ingests in the pool).

Every route is under ``/v1`` and answers errors as ``{"detail": ...}``; every status a route can
give is in its ``responses`` (and so in ``/openapi.json``). A 422 lists the fields at fault
without echoing the values sent. Limits: :data:`review.api.schemas.MAX_BODY_BYTES` per request
body (413 beyond), :data:`review.api.schemas.MAX_BATCH` records per batch (422 beyond), and the
desk's own limits per image (``MAX_IMAGE_BYTES``, ``MAX_IMAGE_PIXELS``) per record.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from sqlalchemy import text
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from review.api import reads
from review.api.batch import ingest_batch
from review.api.schemas import (
    DEFAULT_FEED_LIMIT,
    MAX_BODY_BYTES,
    MAX_FEED_LIMIT,
    MAX_FILE_PARTS,
    MAX_FLAG_BYTES,
    MAX_POSTS_PART_BYTES,
    RECORD_FORMAT,
    BatchResult,
    Feed,
    FlagIn,
    FlagResult,
    Health,
    PostBatch,
    PostOut,
    Problem,
    ReportIn,
)
from review.api.security import desk_of, keep_tokens_out_of_logs, require
from review.config import Settings
from review.desk import Desk, open_desk
from review.errors import ReviewError
from review.tokens import Scope as TokenScope
from review.tokens import TokenInfo

API_VERSION = "1"
CURSOR_PATTERN = r"^[0-9]{1,18}$"
DeskHere = Annotated[Desk, Depends(desk_of)]


Responses = dict[int | str, dict[str, Any]]  # a route's documented answers beside its 200


def _problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


AUTH: Responses = {
    401: _problem("no valid token (missing, unknown, revoked)"),
    403: _problem("the token lacks the scope"),
}
BODY: Responses = {
    400: _problem("the body cannot be parsed (not UTF-8, a broken multipart body)"),
    413: _problem(f"the body is larger than {MAX_BODY_BYTES // 2**20} MiB"),
    415: _problem("the body is neither application/json nor multipart/form-data"),
    422: _problem("the request breaks the format (the fields at fault are listed)"),
}
FLAG_BODY: Responses = {
    400: BODY[400],
    413: _problem(f"the body is larger than {MAX_FLAG_BYTES // 1024} KiB"),
    422: BODY[422],
}
NOT_FOUND: Responses = {404: _problem("no post with that source and external id")}
INVALID: Responses = {422: _problem("a parameter breaks the format (the fields at fault are listed)")}
UNAVAILABLE: Responses = {503: _problem("the database is unavailable; try again")}

MULTIPART_SCHEMA = {
    "type": "object",
    "required": ["posts"],
    "properties": {"posts": PostBatch.model_json_schema()},
    "additionalProperties": {
        "type": "string",
        "format": "binary",
        "description": "an image, as a file part (with a filename) named as the records name it",
    },
}
POSTS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": PostBatch.model_json_schema()},
            "multipart/form-data": {
                "schema": MULTIPART_SCHEMA,
                "encoding": {"posts": {"contentType": "application/json"}},
            },
        },
    }
}


class ContentLengthLimit:
    """Refuse a body whose declared length is over the limit before reading it, with a JSON 413
    that names the limit. The routes' own limits (``max_body_size``) also count streamed bodies."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = dict(scope["headers"]).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.max_bytes:
                detail = (
                    f"the body is {int(declared):,} bytes; the limit is {self.max_bytes:,} bytes: send smaller batches"
                )
                await JSONResponse({"detail": detail}, 413)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise HTTPException(400, "the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise HTTPException(
            422, f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise HTTPException(422, "the JSON is nested too deeply") from None


def _batch(document: Any) -> list[dict[str, Any]]:
    try:
        return PostBatch.model_validate(document).posts
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_input=False, include_context=False)) from None


async def _read_batch(request: Request) -> tuple[list[dict[str, Any]], dict[str, bytes | None]]:
    """The records and the file parts of a JSON or multipart request (None: a part that came
    without a filename, as text)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        body = await request.body()
        return await run_in_threadpool(lambda: _batch(_json(body))), {}  # up to 64 MiB: not on the event loop
    if kind != "multipart/form-data":
        raise HTTPException(415, "send application/json, or multipart/form-data with a 'posts' part")
    files: dict[str, bytes | None] = {}
    posts: str | None = None
    async with request.form(
        max_files=MAX_FILE_PARTS, max_fields=MAX_FILE_PARTS + 1, max_part_size=MAX_POSTS_PART_BYTES
    ) as form:
        for name, value in form.multi_items():
            if name == "posts" and isinstance(value, str):
                if posts is not None:
                    raise HTTPException(422, "the multipart body has two 'posts' fields")
                posts = value
            elif name in files:
                raise HTTPException(422, f"two parts named {name!r}")
            else:  # an image; a part without a filename came as text, its bytes lost: a record naming it is refused
                files[name] = await value.read() if isinstance(value, UploadFile) else None
    if posts is None:
        raise HTTPException(422, "the multipart body has no 'posts' field (the batch as JSON)")
    text = posts
    return await run_in_threadpool(lambda: _batch(_json(text.encode("utf-8", "surrogatepass")))), files


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API on the desk of ``settings`` (default: the settings from the environment),
    opened when the app starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keep_tokens_out_of_logs()
        desk = await run_in_threadpool(open_desk, settings)
        app.state.desk = desk
        try:
            yield
        finally:
            desk.engine.dispose()

    app = FastAPI(
        title="Review desk API",
        version=API_VERSION,
        description="Push flagged posts and reports, read posts and their decisions, poll the decision feed. "
        "Every route but /v1/health needs `Authorization: Bearer <token>`.",
        lifespan=lifespan,
    )
    app.add_middleware(ContentLengthLimit, max_bytes=MAX_BODY_BYTES)
    _handle_errors(app)
    app.include_router(_routes())
    return app


def _methods(app: FastAPI, scope: Scope) -> list[str]:
    """The methods the routes of the request's path take."""
    methods: set[str] = set()
    for route in app.routes:
        if isinstance(route, APIRoute) and route.matches(scope)[0] != Match.NONE:
            methods |= route.methods or set()
    return sorted(methods)


def _handle_errors(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path (Starlette names only the first route's)
            headers["Allow"] = ", ".join(_methods(app, request.scope))
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """The fields at fault and why, never the values sent (they may be long, or secret)."""
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, 422)

    @app.exception_handler(ReviewError)
    async def refused(request: Request, exc: ReviewError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 422)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        from db.session import outage_reason

        if outage_reason(exc) is not None:
            return JSONResponse({"detail": "the database is unavailable; try again"}, 503)
        return JSONResponse({"detail": "internal error"}, 500)  # the server's log keeps the traceback


def _routes() -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.get("/health", responses=UNAVAILABLE, tags=["service"])
    def health(desk: DeskHere) -> Health:
        """Whether the service and its database answer (no token needed)."""
        try:
            with desk.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            raise HTTPException(503, "the database is unavailable") from None
        return Health(ok=True, database="ok")

    @router.post(
        "/posts",
        responses=AUTH | BODY | UNAVAILABLE,
        openapi_extra=POSTS_BODY,
        max_body_size=MAX_BODY_BYTES,
        tags=["posts"],
        description=RECORD_FORMAT,
    )
    async def post_posts(
        request: Request, token: Annotated[TokenInfo, Depends(require(TokenScope.INGEST))]
    ) -> BatchResult:
        """Add a batch of posts (idempotent by source and external id)."""
        records, files = await _read_batch(request)
        return await run_in_threadpool(ingest_batch, desk_of(request), records, files, token)

    @router.post(
        "/posts/{source}/{external_id}/flags",
        responses=AUTH | NOT_FOUND | FLAG_BODY | UNAVAILABLE,
        tags=["flags"],
        max_body_size=MAX_FLAG_BYTES,
    )
    def flag_post(
        source: str,
        external_id: str,
        report: ReportIn,
        desk: DeskHere,
        token: Annotated[TokenInfo, Depends(require(TokenScope.INGEST))],
    ) -> FlagResult:
        """Add a report to a known post."""
        return reads.flag(desk, source, external_id, report, token)

    @router.post(
        "/flags", responses=AUTH | NOT_FOUND | FLAG_BODY | UNAVAILABLE, tags=["flags"], max_body_size=MAX_FLAG_BYTES
    )
    def flag(
        body: FlagIn, desk: DeskHere, token: Annotated[TokenInfo, Depends(require(TokenScope.INGEST))]
    ) -> FlagResult:
        """Add a report to a known post named in the body (for external ids that hold '/')."""
        return reads.flag(desk, body.source, body.external_id, body, token)

    @router.get(
        "/posts/{source}/{external_id}",
        responses=AUTH | NOT_FOUND | INVALID | UNAVAILABLE,
        tags=["posts"],
        dependencies=[Depends(require(TokenScope.READ))],
    )
    def get_post(source: str, external_id: str, desk: DeskHere) -> PostOut:
        """A post: status, reports, the model's current verdict, its decisions."""
        return reads.post(desk, source, external_id)

    @router.get(
        "/posts",
        responses=AUTH | NOT_FOUND | INVALID | UNAVAILABLE,
        tags=["posts"],
        dependencies=[Depends(require(TokenScope.READ))],
    )
    def find_post(
        desk: DeskHere,
        source: Annotated[str, Query(min_length=1, max_length=64)],
        external_id: Annotated[str, Query(min_length=1, max_length=255)],
    ) -> PostOut:
        """A post named in the query (for external ids that hold '/')."""
        return reads.post(desk, source, external_id)

    @router.get(
        "/decisions",
        responses=AUTH | INVALID | UNAVAILABLE,
        tags=["decisions"],
        dependencies=[Depends(require(TokenScope.DECISIONS))],
    )
    def decisions(
        desk: DeskHere,
        after: Annotated[
            str | None,
            Query(pattern=CURSOR_PATTERN, description="the `next` of the previous page; none: from the start"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_FEED_LIMIT)] = DEFAULT_FEED_LIMIT,
    ) -> Feed:
        """The decision events after the cursor, oldest first (a keyset feed)."""
        return reads.feed(desk, int(after or 0), limit)

    return router

"""Schema-driven fuzzing of the whole HTTP API (schemathesis, from the app's own OpenAPI) against a
real uvicorn on a SQLite desk: valid and invalid requests on every route; no 5xx, no traceback
in an answer, every status and body as documented, invalid requests refused, valid ones taken,
and no route that answers without its token."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Config

from db import schema as db_schema
from db.session import make_engine
from review.api.app import create_app
from review.config import Settings
from review.desk import open_desk
from tests.live_api import LiveApi, token


def _desk() -> tuple[Settings, str]:
    """A migrated SQLite desk in a folder of its own, and a token with every scope. Made when the
    module is collected: schemathesis builds some requests then, with the token in them."""
    folder = Path(tempfile.mkdtemp(prefix="review-fuzz-"))
    made = Settings(database_url=f"sqlite:///{folder / 'review.db'}", media_dir=folder / "media")
    engine = make_engine(made.database_url)
    db_schema.upgrade(engine)
    engine.dispose()
    desk = open_desk(made)
    try:
        return made, token(desk, "fuzz")
    finally:
        desk.engine.dispose()


DESK_SETTINGS, TOKEN = _desk()


@schemathesis.check
def no_traceback(ctx: Any, response: Any, case: Any) -> None:
    text = response.text or ""
    if "Traceback (most recent call last)" in text or 'File "' in text:
        raise AssertionError("a traceback in the answer")


config = Config.from_dict(
    {
        # sent as the security scheme says, so that schemathesis can also leave it out and expect a 401
        "auth": {"openapi": {"HTTPBearer": {"bearer": TOKEN}}},
        # a token that is refused must fail the run, not pass as "a documented 401"
        "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "404"]}},
    }
)
api_schema = schemathesis.openapi.from_dict(create_app(DESK_SETTINGS).openapi(), config=config)


@pytest.fixture(scope="module")
def live() -> Iterator[str]:
    try:
        with LiveApi(DESK_SETTINGS) as served:
            yield served.url
    finally:
        shutil.rmtree(DESK_SETTINGS.media_dir.parent, ignore_errors=True)


@api_schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_holds_to_its_schema(case: Any, live: str) -> None:
    case.call_and_validate(base_url=live)

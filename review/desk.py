"""One handle on what every entry point needs: settings, engine, session factory.

The CLI and the Streamlit app both open the desk through :func:`open_desk`, which refuses an
out-of-date schema (see :func:`db.schema.require_current`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from db.schema import require_current
from db.session import make_engine, make_session_factory
from review.config import Settings, load_settings


@dataclass(frozen=True)
class Desk:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]


def open_desk(settings: Settings | None = None, *, check_schema: bool = True) -> Desk:
    settings = settings or load_settings()
    engine = make_engine(settings.database_url)
    if check_schema:
        try:
            require_current(engine)
        except Exception:
            engine.dispose()
            raise
    return Desk(settings=settings, engine=engine, sessions=make_session_factory(engine))

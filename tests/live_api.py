"""A real uvicorn serving the desk's API on 127.0.0.1, in a thread of the test process, on a
socket bound before it starts (no race for a free port), and tokens for it."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from review.auth import OPERATOR
from review.config import Settings
from review.desk import Desk
from review.tokens import create_token


class LiveApi:
    """``with LiveApi(settings) as api:`` serves ``create_app(settings)`` at ``api.url``."""

    def __init__(self, settings: Settings) -> None:
        from review.api.app import create_app

        self.app = create_app(settings)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_level="info", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveApi:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def token(desk: Desk, name: str, scopes: str = "ingest,read,decisions") -> str:
    """A new token on ``desk`` (made as the command line makes it)."""
    return create_token(desk.sessions, OPERATOR, name, scopes)[1]


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}

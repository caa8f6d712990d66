"""``python -m review api``: serve the HTTP API (review/api/) with uvicorn.

Each worker process builds the app itself (``review.api.app:create_app``, a factory) and opens the
desk from the environment (``DATABASE_URL``, ``MEDIA_DIR``, ...), as the other commands do.
``--deliver`` also runs one webhook delivery worker (review/delivery.py) in a thread of this
process (the uvicorn supervisor when there are several workers), stopped with the API: on SIGTERM
or Ctrl-C its requests in flight end and are recorded, and the rest of its leases are released.
"""

from __future__ import annotations

import argparse
import signal
from types import FrameType

APP = "review.api.app:create_app"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    api = sub.add_parser(
        "api",
        help="serve the HTTP API (OpenAPI at /docs)",
        description="Serve the HTTP API with uvicorn on the desk of DATABASE_URL. Several API processes and "
        "the app may run at once against one Postgres.",
    )
    api.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    api.add_argument("--port", type=int, default=8000, help="default 8000")
    api.add_argument("--workers", type=_workers, default=1, help="worker processes (default 1)")
    api.add_argument(
        "--deliver", action="store_true", help="also run a webhook delivery worker (as python -m review deliver)"
    )
    api.set_defaults(handler=cmd_api)


def _workers(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= 64:
        raise argparse.ArgumentTypeError(f"not a number of workers from 1 to 64: {value!r}")
    return count


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from review import delivery
    from review.desk import open_desk

    desk = open_desk()  # a missing or out-of-date database fails here, in one line, not in each worker
    delivering = delivery.start_in_thread(desk.sessions, desk.settings) if args.deliver else None
    # uvicorn shuts down on SIGTERM/SIGINT, then raises the signal again against the handlers it
    # found: these ones, which end uvicorn.run so that the shutdown below runs (the default ones
    # would end the process at once, leaving the delivery worker's leases to run out).
    previous = {sig: signal.signal(sig, _shut_down) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        uvicorn.run(APP, factory=True, host=args.host, port=args.port, workers=args.workers)
    finally:
        if delivering is not None:
            delivering.stop()
        desk.engine.dispose()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _shut_down(_signum: int, _frame: FrameType | None) -> None:
    """SIGTERM or SIGINT (after uvicorn has stopped serving, or before it started): end cleanly."""
    raise SystemExit(0)

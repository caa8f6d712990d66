"""``python -m review deliver``: the webhook delivery worker (review/delivery.py), until Ctrl-C or
SIGTERM (each ends it once the requests in flight are answered and recorded; the rest of the round
is released untried), or with ``--once`` until nothing is due."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    deliver = sub.add_parser(
        "deliver",
        help="send decisions to the webhook endpoints (runs until Ctrl-C)",
        description="Send pending webhook deliveries, signed, with retries; several workers may run at once.",
    )
    deliver.add_argument("--once", action="store_true", help="deliver what is due now, then stop")
    deliver.add_argument("--batch", type=int, default=200, help="deliveries leased per round (default 200)")
    deliver.add_argument(
        "--lease-seconds",
        type=float,
        default=60.0,
        help="how long a leased delivery is this worker's before another may send it (default 60)",
    )
    deliver.add_argument("--poll-seconds", type=float, default=0.2, help="pause when nothing is due (default 0.2)")
    deliver.set_defaults(handler=cmd_deliver)


def cmd_deliver(args: argparse.Namespace) -> int:
    from review import delivery
    from review.desk import open_desk

    desk = open_desk()
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        print(f"{signal.Signals(signum).name}: stopping after the requests in flight", file=sys.stderr)
        stop.set()

    def on_round(stats: delivery.DeliveryStats) -> None:
        if stats.delivered or stats.retrying or stats.dead or stats.lost_leases:
            print(stats.summary(), flush=True)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        total = delivery.run(
            desk.sessions,
            desk.settings,
            batch=args.batch,
            lease_seconds=args.lease_seconds,
            poll_seconds=args.poll_seconds,
            once=args.once,
            stop=stop,
            on_round=on_round,
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"in all: {total.summary()}")
    return 0

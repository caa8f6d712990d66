"""``python -m review webhook``: webhook endpoints and their deliveries (add, list, disable,
enable, rotate, deliveries, redeliver), as the command line's operator (review/webhooks.py)."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

STATUSES = ["pending", "delivered", "dead"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    webhook = sub.add_parser(
        "webhook",
        help="webhook endpoints that receive decisions: add, list, disable, enable, rotate, deliveries, redeliver",
    )
    webhook_sub = webhook.add_subparsers(dest="webhook_command", required=True)
    add = webhook_sub.add_parser(
        "add",
        help="register an endpoint (prints its signing secret, once)",
        description="Register a URL that receives the desk's decisions, signed per Standard Webhooks. Its "
        "signing secret is printed once: store it where the receiver can read it.",
    )
    add.add_argument("url")
    add.add_argument(
        "--events",
        default="*",
        help="comma-separated event types, e.g. decision.confirmed,decision.overturned (default: all)",
    )
    add.add_argument("--description", default="", help="one line: whose endpoint, what it does")
    webhook_sub.add_parser("list", help="list the endpoints and their delivery counts")
    for verb in ("disable", "enable"):
        webhook_sub.add_parser(verb, help=f"{verb} an endpoint").add_argument("id", type=int)
    webhook_sub.add_parser(
        "rotate", help="give an endpoint a new signing secret (prints it, once); the old one stops working at once"
    ).add_argument("id", type=int)
    listing = webhook_sub.add_parser("deliveries", help="list deliveries, newest first")
    listing.add_argument("--endpoint", type=int, help="only this endpoint's")
    listing.add_argument("--status", choices=STATUSES, help="only deliveries in this status")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    again = webhook_sub.add_parser(
        "redeliver",
        help="send deliveries again (the same webhook-id, a fresh retry schedule)",
        description="Send chosen deliveries again, or every dead (or delivered) delivery of an endpoint.",
    )
    which = again.add_mutually_exclusive_group(required=True)
    which.add_argument("--delivery", type=int, nargs="+", metavar="ID", help="these deliveries")
    which.add_argument("--endpoint", type=int, help="this endpoint's deliveries in --status")
    again.add_argument("--status", choices=["dead", "delivered"], default="dead", help="with --endpoint (default dead)")
    webhook.set_defaults(handler=cmd_webhook)


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC" if value is not None else "-"


def cmd_webhook(args: argparse.Namespace) -> int:
    from review import webhooks
    from review.auth import OPERATOR
    from review.desk import open_desk
    from review.text import one_line

    desk = open_desk()
    command = args.webhook_command
    if command == "add":
        info, secret = webhooks.add_endpoint(
            desk.sessions,
            OPERATOR,
            args.url,
            desk.settings,
            event_types=args.events.split(","),
            description=args.description,
        )
        print(f"added webhook endpoint {info.id}: {webhooks.shown_url(info.url)} ({','.join(info.event_types)})")
        print(f"signing secret (shown once): {secret}")
        if not info.encrypted:
            print("warning: an http:// URL is not encrypted: the payloads can be read on the way", file=sys.stderr)
    elif command == "list":
        endpoints = webhooks.list_endpoints(desk.sessions)
        for e in endpoints:
            state = "active" if e.active else f"disabled ({one_line(e.disabled_reason, 80)})"
            print(
                f"{e.id}\t{webhooks.shown_url(e.url)}\t{','.join(e.event_types)}\t{state}\t"
                f"pending {e.pending}, delivered {e.delivered}, dead {e.dead}\t{one_line(e.description, 80)}"
            )
        if not endpoints:
            print("no webhook endpoints yet: python -m review webhook add URL", file=sys.stderr)
    elif command in ("disable", "enable"):
        info = webhooks.set_active(desk.sessions, OPERATOR, args.id, command == "enable")
        print(f"webhook endpoint {info.id} {'enabled' if info.active else 'disabled'} ({info.pending} pending)")
    elif command == "rotate":
        info, secret = webhooks.rotate_secret(desk.sessions, OPERATOR, args.id)
        print(f"webhook endpoint {info.id}: new signing secret (shown once): {secret}")
    elif command == "deliveries":
        found = webhooks.deliveries(desk.sessions, endpoint_id=args.endpoint, status=args.status, limit=args.limit)
        for d in found:
            code = d.last_status_code if d.last_status_code is not None else "-"
            done = {"delivered": d.delivered_at, "dead": d.dead_at}.get(d.status, d.next_attempt_at)
            print(
                f"{d.id}\tendpoint {d.endpoint_id}\t{d.event_uid}\t{d.type}\t"
                f"{one_line(d.source, 40)}/{one_line(d.external_id, 80)}\t{d.status} {_when(done)}\t"
                f"{d.attempts} attempt{'s' if d.attempts != 1 else ''}\tlast {code} {one_line(d.last_error, 120)}"
            )
        if not found:
            print("no deliveries", file=sys.stderr)
    else:
        count = webhooks.redeliver(
            desk.sessions, OPERATOR, delivery_ids=args.delivery, endpoint_id=args.endpoint, status=args.status
        )
        print(f"{count} deliver{'ies' if count != 1 else 'y'} to send again")
    return 0

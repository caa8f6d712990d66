"""``python -m review audit``: the audit log, listed or exported (admins)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from review.cli.common import day, through


def positive(value: str) -> int:
    """``--limit N``: a whole number, 1 or more."""
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {value!r}")
    return int(value)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    aud = sub.add_parser("audit", help="the audit log (admins): list or export")
    aud_sub = aud.add_subparsers(dest="audit_command", required=True)
    listing = aud_sub.add_parser("list", help="the latest events as a table, newest first")
    export = aud_sub.add_parser(
        "export", help="every matching event, oldest first, to a new CSV or JSON-lines file (streamed)"
    )
    export.add_argument("--out", type=Path, required=True, metavar="FILE", help="a new file (never overwritten)")
    export.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    for p in (listing, export):
        p.add_argument("--since", type=day, metavar="YYYY-MM-DD", help="from the start of this UTC day")
        p.add_argument("--until", type=day, metavar="YYYY-MM-DD", help="through the end of this UTC day")
        p.add_argument("--action", help="one action (user.role) or a family (user.)")
        p.add_argument("--actor", metavar="NAME", help="who acted, as stored ('(command line)' for the CLI)")
    listing.add_argument("--limit", type=positive, default=50, metavar="N", help="at most N events (default 50)")
    export.add_argument("--limit", type=positive, metavar="N", help="the newest N events, as list (default: all)")
    aud.set_defaults(handler=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    from review import audit
    from review.auth import OPERATOR
    from review.desk import open_desk

    desk = open_desk()
    flt = audit.AuditFilter(since=args.since, until=through(args.until), action=audit.check_action(args.action),
                            actor=args.actor, limit=args.limit)  # fmt: skip
    if args.audit_command == "list":
        with desk.sessions() as session:
            rows = audit.events(session, flt, by=OPERATOR)
        if rows.empty:
            print("no audit events match", file=sys.stderr)
            return 0
        print("\n".join(audit.text_table(rows)))
        return 0
    with desk.sessions() as session:
        n = audit.export_events(session, flt, args.out, by=OPERATOR, fmt=args.format)
    filters = {k: v for k, v in {"since": args.since, "until": args.until, "action": flt.action,
                                 "actor": args.actor, "limit": args.limit}.items() if v is not None}  # fmt: skip
    audit.log(desk.sessions, OPERATOR, audit.Action.EXPORT, str(args.out), what="audit log", format=args.format,
              rows=n, filters={k: str(v) for k, v in filters.items()})  # fmt: skip
    print(f"wrote {n} audit events to {args.out}")
    return 0

"""``python -m review <command>``: the operator's entry point.

Each command group is one module of this package that declares its arguments and holds its
handler (``add_parser`` sets ``handler``); :func:`build_parser` only assembles them. The modules
import the desk's heavy parts inside their handlers, so that ``--help`` stays quick.

Errors meant for people (:class:`review.errors.ReviewError`) are printed as one line on stderr
without a traceback, and the command exits with status 2. ``ingest`` exits with status 1 when
any record was rejected (the good ones are stored all the same).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from review.cli import (
    api,
    ask,
    audit,
    backup,
    db,
    deliver,
    demo,
    erasure,
    evaluate,
    export,
    finetune,
    ingest,
    media,
    report,
    score,
    signals,
    token,
    user,
    webhook,
)
from review.cli.common import EXIT_ERROR, EXIT_INTERNAL, EXIT_REJECTED
from review.errors import ReviewError

__all__ = ["EXIT_ERROR", "EXIT_INTERNAL", "EXIT_REJECTED", "GROUPS", "build_parser", "main"]

GROUPS = (
    db,
    ingest,
    media,
    score,
    ask,
    user,
    signals,
    demo,
    report,
    export,
    finetune,
    evaluate,
    erasure,
    audit,
    backup,
    token,
    api,
    webhook,
    deliver,
)
"""The command groups, in the order ``python -m review --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m review", description="Review desk command line")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status: the handler's, 2 for an error meant for people, 3 for a bug."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ReviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from db.session import outage_message, outage_reason
        from review.config import configured_url

        reason = outage_reason(exc)
        if reason is not None:  # the database went away: one line, not the chain of tracebacks
            print(f"error: {outage_message(reason, configured_url())}", file=sys.stderr)
            return EXIT_ERROR
        # a bug: keep the traceback for the report, with its own exit status
        traceback.print_exc()
        print("error: internal error (the traceback above is worth a bug report)", file=sys.stderr)
        return EXIT_INTERNAL

"""``python -m review media gc``: files in the media store that nothing refers to."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from review.cli.common import EXIT_ERROR


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    media = sub.add_parser("media", help="the media store: gc (files left by crashes)")
    media_sub = media.add_subparsers(dest="media_command", required=True)
    gc = media_sub.add_parser(
        "gc",
        help="list (or --delete) temporary files and files no media row refers to",
        description="Temporary .tmp-* files and store files that no media row refers to, older than --min-age "
        "(so that nothing a running ingest writes is touched). A dry run unless --delete; a deletion is audited.",
    )
    gc.add_argument("--delete", action="store_true", help="remove them (default: only list them with their sizes)")
    gc.add_argument("--min-age", type=float, default=60, metavar="MINUTES", help="only files older than this (60)")
    media.set_defaults(handler=cmd_media)


def cmd_media(args: argparse.Namespace) -> int:
    from review.auth import OPERATOR
    from review.desk import open_desk
    from review.errors import ReviewError
    from review.media import collect_garbage
    from review.text import shown

    desk = open_desk()
    if args.min_age < 0:
        raise ReviewError("--min-age is a number of minutes, 0 or more")
    found = collect_garbage(
        desk.sessions, desk.settings.media_dir, OPERATOR, delete=args.delete, min_age=timedelta(minutes=args.min_age)
    )
    verb = "removed" if found.deleted else "would remove"
    for rel, size in found.files:
        print(f"{verb} {size:>12,}  {shown(rel)}")
    for rel, why in found.failed:
        print(f"could not remove {shown(rel)}: {why}", file=sys.stderr)
    print(found.summary())
    if not found.deleted and found.files:
        print("dry run: nothing was removed (python -m review media gc --delete removes them)")
    return EXIT_ERROR if found.failed else 0

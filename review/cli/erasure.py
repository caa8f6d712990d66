"""``python -m review purge`` and ``retention``: erasing posts' content, by request or by the retention settings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from review.cli.common import EXIT_REJECTED

if TYPE_CHECKING:
    from review.purge import Erasure


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pg = sub.add_parser(
        "purge",
        help="erase posts' content (text, images, signals, verdict texts, notes) and keep a tombstone",
        description="Erase the content of posts: text, author, metadata, images and thumbnails no other post shows, "
        "OCR and other signals, the verdicts' texts and raw output, review notes, and image copies in known export "
        "folders (folders whose data files still hold the posts are listed). The post row stays as a tombstone, "
        "with an audit event: who, when, why, what. Decisions and metrics stay countable.",
    )
    pg.add_argument("--post", type=int, action="append", metavar="ID", help="a post id (repeatable)")
    pg.add_argument(
        "--posts-file", type=Path, metavar="FILE", help="post ids: one a line or separated by commas, # comments"
    )
    pg.add_argument("--external", action="append", metavar="SOURCE:ID", help="a post by source and external id")
    pg.add_argument("--author", metavar="NAME", help="every post of this author (exact match)")
    pg.add_argument("--source", help="with --author: only posts of this source")
    pg.add_argument("--reason", required=True, help="why (a request's reference, a legal ground): required")
    pg.add_argument("--dry-run", action="store_true", help="show what would be erased, change nothing")
    pg.set_defaults(handler=cmd_purge)

    ret = sub.add_parser(
        "retention",
        help="erase what the retention settings no longer keep (for cron: a one-line summary, exit 0 when all went)",
        description="Apply RETAIN_MEDIA_DAYS, RETAIN_TEXT_DAYS and RETAIN_RAW_OUTPUT_DAYS (days after a post's "
        "decision; 0: for ever) to decided posts, by the purge's mechanism, with one audit event per run. Prints "
        "one summary line; export folders that still hold erased posts and files that could not be deleted are "
        "listed on stderr, and a failed file deletion makes the exit status 1 (python -m review media gc removes "
        "such files later).",
    )
    ret.add_argument("--dry-run", action="store_true", help="show what would be erased, change nothing")
    ret.set_defaults(handler=cmd_retention)


def _print_erasure(result: Erasure, label: str) -> None:
    """The one-line summary, then what needs a person: export folders, failed file deletions."""
    print(f"{label}{' (dry run, nothing changed)' if result.dry_run else ''}: {result.summary()}")
    for post_id, when in sorted(result.already.items()):
        since = f" on {when:%Y-%m-%d %H:%M} UTC" if when else ""
        print(f"post {post_id}: already erased{since}, nothing left to erase", file=sys.stderr)
    for missing in result.not_found:
        print(f"not found: {missing}", file=sys.stderr)
    for folder in result.export_folders:
        print(f"export folder still holds erased posts (delete it or export again): {folder}", file=sys.stderr)
    for folder in result.unchecked_exports:
        print(f"export folder could not be checked (no readable manifest.json): {folder}", file=sys.stderr)
    for failure in result.file_errors:
        print(f"could not delete {failure} (python -m review media gc removes it later)", file=sys.stderr)


def cmd_purge(args: argparse.Namespace) -> int:
    from review import purge
    from review.auth import OPERATOR
    from review.desk import open_desk
    from review.errors import ConfigError

    reason = purge.check_reason(args.reason)  # before anything else: no reason, nothing done
    desk = open_desk()
    ids = list(args.post or [])
    if args.posts_file is not None:
        ids += purge.read_ids_file(args.posts_file)
    external = [purge.parse_external(v) for v in args.external or []]
    if args.source and args.author is None:
        raise ConfigError("--source narrows --author: give --author NAME too")
    if not ids and not external and args.author is None:
        raise ConfigError("name the posts: --post ID, --posts-file FILE, --external SOURCE:ID or --author NAME")
    with desk.sessions() as session:
        found, missing = purge.resolve_posts(session, post_ids=ids, external=external, author=args.author,
                                             source=args.source)  # fmt: skip
    if args.author is not None and not found and not missing:
        where = f" in {args.source}" if args.source else ""
        print(f"purge: no post by {args.author!r}{where}: nothing to erase (a purge erases the author, so posts "
              "purged before no longer match)")  # fmt: skip
        return 0
    result = purge.purge(desk.sessions, OPERATOR, desk.settings, found, reason=reason, dry_run=args.dry_run,
                         not_found=missing, author=args.author)  # fmt: skip
    _print_erasure(result, "purge")
    return EXIT_REJECTED if result.not_found or result.file_errors else 0


def cmd_retention(args: argparse.Namespace) -> int:
    from review import purge
    from review.auth import OPERATOR
    from review.desk import open_desk

    desk = open_desk()
    days = purge.retention_days(desk.settings)
    if not any(days.values()):
        print("retention: nothing to do, every kind is kept for ever (RETAIN_MEDIA_DAYS, RETAIN_TEXT_DAYS, "
              "RETAIN_RAW_OUTPUT_DAYS)")  # fmt: skip
        return 0
    result = purge.apply_retention(desk.sessions, OPERATOR, desk.settings, dry_run=args.dry_run)
    kept = ", ".join(f"{kind} {d} day{'' if d == 1 else 's'}" if d else f"{kind} for ever" for kind, d in days.items())
    _print_erasure(result, f"retention ({kept})")
    return EXIT_REJECTED if result.file_errors else 0

"""``python -m review ingest``: load posts from files and folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from review.cli.common import EXIT_REJECTED, file_progress, print_ingest_report


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ingest = sub.add_parser(
        "ingest",
        help="load posts from JSONL/CSV files or folders of images",
        description="Load posts. Each record: external_id, source, text, author, created_at, images, metadata.",
    )
    ingest.add_argument("paths", nargs="+", metavar="PATH", help=".jsonl, .csv, .tsv file or a folder of images")
    ingest.add_argument("--source", help="source for records that name none (default: local)")
    ingest.add_argument(
        "--encoding",
        help="text encoding of the inputs, e.g. gb18030, big5, shift_jis (default: UTF-8, or UTF-16 with a BOM; "
        "other text is refused, never guessed)",
    )
    ingest.add_argument(
        "--allow-absolute-paths",
        action="store_true",
        help="accept absolute image paths inside the inputs (relative paths never leave the input's folder)",
    )
    ingest.add_argument("--workers", type=int, default=2, help="threads decoding images (default 2, at most 16)")
    ingest.add_argument("--quiet", action="store_true", help="no progress bar")
    ingest.set_defaults(handler=cmd_ingest)


def cmd_ingest(args: argparse.Namespace) -> int:
    from review.desk import open_desk
    from review.ingest import ingest_paths

    desk = open_desk()
    report = ingest_paths(
        desk.sessions,
        [Path(p) for p in args.paths],
        desk.settings,
        source=args.source,
        encoding=args.encoding,
        allow_absolute_paths=args.allow_absolute_paths,
        workers=args.workers,
        progress=None if args.quiet else file_progress,
    )
    print_ingest_report(report)
    return EXIT_REJECTED if report.rejected else 0

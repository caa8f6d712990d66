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
    ingest.add_argument(
        "--format", choices=["csv", "tsv", "jsonl"], help="read the data files as this, whatever their extension"
    )
    ingest.add_argument(
        "--map",
        metavar="FIELD=COLUMN,…|FILE.toml",
        help="the columns (CSV) or keys (JSONL) holding the record's fields, e.g. "
        "external_id=tweetId,text=tweetText,images=imageId(s); or a TOML file with a [map] table of the same. "
        "A mapped images column may list names separated by commas",
    )
    ingest.add_argument(
        "--image-path",
        metavar="TEMPLATE",
        help="the file each image name stands for, {} being the name, relative to the data file: e.g. "
        "images/{}.jpg, or images/{}.* for the one file of that name whatever its extension",
    )
    ingest.add_argument(
        "--date-format",
        metavar="STRPTIME",
        help="the format of created_at, e.g. '%%d.%%m.%%Y %%H:%%M' (default: ISO 8601, RFC 2822/Twitter, "
        "Unix seconds or milliseconds, YYYY/MM/DD HH:MM)",
    )
    ingest.add_argument(
        "--no-quoting",
        action="store_true",
        help="CSV/TSV fields are never quoted: a '\"' is an ordinary character (exports that do not quote)",
    )
    ingest.add_argument(
        "--missing-images",
        choices=["reject", "skip"],
        default="reject",
        help="a record naming an image file that is not there: reject it (default), or skip: store the post "
        "with the images there are and the missing names, which its moderator is shown",
    )
    ingest.add_argument(
        "--update",
        action="store_true",
        help="a post stored before whose record now has other text, author, created_at or images takes the new "
        "content if nobody has decided it (an 'update' event in its history; it is scored again); a decided post "
        "keeps what its moderator saw. Without --update such differences are only reported",
    )
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
    from review.ingest import ReadOptions, StorePolicy, ingest_paths, parse_mapping

    options = ReadOptions(
        format=args.format,
        mapping=parse_mapping(args.map) if args.map else {},
        quoting=not args.no_quoting,
        image_path=args.image_path,
    )
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
        options=options,
        date_format=args.date_format,
        policy=StorePolicy(missing_images=args.missing_images, update=args.update),
    )
    print_ingest_report(report)
    return EXIT_REJECTED if report.rejected else 0

"""``python -m review backup``: back up the database and the media store, verify a backup, restore one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from review.cli.common import EXIT_REJECTED


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bak = sub.add_parser("backup", help="back up the database and the media store, verify a backup, restore one")
    bak_sub = bak.add_subparsers(dest="backup_command", required=True)
    create = bak_sub.add_parser(
        "create",
        help="an online, consistent copy of the database, then the media files, and a manifest",
        description="SQLite through its online backup API, Postgres through pg_dump --format=custom; safe while the "
        "app and workers write.",
    )
    create.add_argument("--out", type=Path, required=True, metavar="DIR", help="a new or empty folder")
    verify = bak_sub.add_parser("verify", help="check a backup folder: manifest, checksums, media files")
    verify.add_argument("--from", dest="source", type=Path, required=True, metavar="DIR")
    restore = bak_sub.add_parser(
        "restore",
        help="restore a backup into DATABASE_URL (an empty database) and MEDIA_DIR",
        description="Refuses a database that holds any table (a restore never overwrites a desk) and a backup made "
        "by a newer version; an older backup is upgraded to this version's schema after the restore.",
    )
    restore.add_argument("--from", dest="source", type=Path, required=True, metavar="DIR")
    restore.add_argument(
        "--force", action="store_true", help="restore into a MEDIA_DIR that already holds files (they are kept)"
    )
    for p in (create, verify, restore):
        p.add_argument("--quiet", action="store_true", help="no progress")
    bak.set_defaults(handler=cmd_backup)


def cmd_backup(args: argparse.Namespace) -> int:
    from db.session import safe_url
    from review import backup
    from review.config import load_settings
    from review.desk import open_desk

    def progress(stage: str, done: int) -> None:
        if not args.quiet and stage == "media" and done:
            print(f"\r{stage}: {done} files", end="", file=sys.stderr, flush=True)

    if args.backup_command == "create":
        made = backup.create(open_desk(check_schema=False), args.out, progress=progress)  # also before an upgrade
        m = made.manifest
        if not args.quiet:
            print(file=sys.stderr)
        counts = backup.describe(m["counts"])
        print(f"backup of {m['source']} (schema {m['schema_revision']}) in {made.folder}: {counts}; "
              f"{m['media']['files']} media files ({m['media']['bytes']} bytes)")  # fmt: skip
        if made.missing:
            shown = ", ".join(m["media"]["missing_shown"])
            print(f"warning: {made.missing} files named by media rows were not in MEDIA_DIR: {shown}", file=sys.stderr)
            return EXIT_REJECTED
        return 0
    if args.backup_command == "verify":
        m = backup.verify(args.source)
        print(f"{args.source}: a complete {m['backend']} backup of {m['created_at']} (schema {m['schema_revision']})")
        return 0
    settings = load_settings()
    done = backup.restore(settings, args.source, force=args.force, progress=progress)
    if not args.quiet:
        print(file=sys.stderr)
    counts = backup.describe(done.manifest["counts"])
    upgraded = f", upgraded from schema {done.upgraded_from}" if done.upgraded_from else ""
    print(f"restored {args.source} into {safe_url(settings.database_url)} and {settings.media_dir}: {counts}; "
          f"{done.media_files} media files copied (schema {done.revision}{upgraded})")  # fmt: skip
    if done.missing:
        print(f"warning: {done.missing} files named by media rows are not in MEDIA_DIR: "
              f"{', '.join(done.missing_shown)}", file=sys.stderr)  # fmt: skip
        return EXIT_REJECTED
    return 0

"""``python -m review db``: the schema (upgrade, downgrade, current) and the rebuild of post_label."""

from __future__ import annotations

import argparse

from review.cli.common import EXIT_REJECTED


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="database schema: upgrade, downgrade, current")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="bring the schema to the latest revision (or REVISION)")
    up.add_argument("revision", nargs="?", default="head")
    down = db_sub.add_parser("downgrade", help="step the schema back to REVISION (base = empty)")
    down.add_argument("revision")
    db_sub.add_parser("current", help="show the schema revision; exit 1 when out of date")
    db_sub.add_parser(
        "rebuild-labels",
        help="rebuild the metrics' post_label table from the review events (after loading rows by hand)",
    )
    db.set_defaults(handler=cmd_db)


def cmd_db(args: argparse.Namespace) -> int:
    from db import schema
    from db.session import safe_url
    from review.config import load_settings
    from review.desk import open_desk
    from review.errors import SchemaOutOfDate

    settings = load_settings()
    desk = open_desk(settings, check_schema=False)
    where = safe_url(settings.database_url)
    if args.db_command == "upgrade":
        schema.upgrade(desk.engine, args.revision)
        print(f"{where}: schema at {schema.current_revision(desk.engine)} (head {schema.head_revision()})")
    elif args.db_command == "downgrade":
        schema.downgrade(desk.engine, args.revision)
        print(f"{where}: schema at {schema.current_revision(desk.engine) or 'base (empty)'}")
    elif args.db_command == "rebuild-labels":
        from db.session import writing
        from review import labels

        schema.require_current(desk.engine)
        with writing(desk.sessions) as session:
            rows = labels.rebuild(session)
        print(f"{where}: post_label rebuilt, {rows} settled posts")
    else:
        try:
            schema.require_current(desk.engine)
        except SchemaOutOfDate as exc:
            print(f"out of date: {exc}")
            return EXIT_REJECTED
        print(f"{where}: schema at {schema.head_revision()} (up to date)")
    return 0

"""``python -m review report``: the lead pages' tables (accuracy, agreement, activity) as text, JSON or CSV."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from review.cli.common import day, through

if TYPE_CHECKING:
    import pandas as pd

    from review.metrics.filters import MetricFilter


def share(value: str) -> float:
    """``--target``: a number in (0, 1]."""
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError(f"not a share between 0 and 1: {value!r}")
    return number


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser(
        "report",
        help="the lead pages' numbers: accuracy, agreement and activity tables",
        description="Model-vs-human accuracy, moderator agreement and activity, from the decided posts. "
        "Dates are UTC days: --since from the start of the day, --until through its end.",
    )
    report.add_argument("--format", choices=["text", "json", "csv"], default="text")
    report.add_argument("--out", type=Path, metavar="DIR", help="write the tables to DIR (csv: one file per table)")
    report.add_argument(
        "--force", action="store_true", help="with --out: replace files of the same names that DIR already holds"
    )
    report.add_argument("--table", help="only this table (needed for --format csv without --out)")
    report.add_argument(
        "--section",
        action="append",
        choices=["accuracy", "agreement", "activity", "operations"],  # operations: the activity section's first name
        help="only these sections (repeatable; default: all)",
    )
    report.add_argument("--since", type=day, metavar="YYYY-MM-DD")
    report.add_argument("--until", type=day, metavar="YYYY-MM-DD")
    report.add_argument("--source")
    report.add_argument("--category", help="the human label's category")
    report.add_argument("--model", help="the model id of the verdict on screen")
    report.add_argument("--prompt-version")
    report.add_argument("--period", choices=["day", "week"], default="week", help="trend buckets (default week)")
    report.add_argument("--target", type=share, default=0.95, help="precision target for the threshold advice")
    report.set_defaults(handler=cmd_report)


def text_table(df: pd.DataFrame) -> str:
    """``df`` as aligned text: numbers to three places, a value that is not defined as "n/a"."""

    def cell(value: object) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    return df.map(cell).to_string(index=False)


def metric_filter(args: argparse.Namespace) -> MetricFilter:
    """--since DAY (from its start) and --until DAY (through its end), UTC; the rest as given."""
    from review.metrics.filters import MetricFilter

    return MetricFilter(
        since=args.since,
        until=through(args.until),
        source=args.source,
        category=args.category,
        model_id=args.model,
        prompt_version=args.prompt_version,
    )


def cmd_report(args: argparse.Namespace) -> int:
    from review import report
    from review.auth import OPERATOR
    from review.desk import open_desk
    from review.errors import ReviewError

    if args.format == "csv" and args.out is None and args.table is None:
        raise ReviewError("--format csv writes one table: name it with --table, or give --out DIR for all of them")
    desk = open_desk()
    flt = metric_filter(args)
    sections = tuple(args.section or report.SECTIONS)
    with desk.sessions() as session:
        tables = report.build(session, OPERATOR, flt, sections=sections, period=args.period, target=args.target)
    if args.table is not None:
        if args.table not in tables:
            raise ReviewError(f"no table {args.table!r} in this report; there are: {', '.join(tables)}")
        tables = {args.table: tables[args.table]}
    if args.out is not None:  # json: one report.json; text and csv: a CSV file per table
        if args.format == "json":
            files = {"report.json": report.to_json(tables, flt)}
        else:
            files = {f"{name}.csv": report.to_csv(df) for name, df in tables.items()}
        written = report.write_files(args.out, files, force=args.force)
        print(f"wrote {len(written)} file(s) to {args.out}")
    elif args.format == "json":
        print(report.to_json(tables, flt))
    elif args.format == "csv":
        sys.stdout.write(report.to_csv(next(iter(tables.values()))))
    else:
        for name, df in tables.items():
            print(f"== {name}")
            print(text_table(df) if len(df) else "(no rows)")
            print()
    return 0

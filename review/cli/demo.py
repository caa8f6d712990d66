"""``python -m review demo``: the demo posts loaded, given signals and scored; or a simulated review history."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from review.cli.common import EXIT_REJECTED, file_progress, make_provider, model_arguments, print_ingest_report

if TYPE_CHECKING:
    from review.desk import Desk


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser(
        "demo",
        help="load the synthetic demo posts into an empty database, then compute signals and score them",
        description="Load the demo posts, compute their signals and score them with the configured model; when "
        "that model cannot be loaded (no weights, no network), the baseline provider scores them instead.",
    )
    demo.add_argument("--force", action="store_true", help="add the demo posts even if the database has posts")
    demo.add_argument("--no-score", action="store_true", help="only load the posts")
    demo.add_argument(
        "--history",
        action="store_true",
        help="instead: simulate ten days of moderation on the loaded demo posts, for the lead pages "
        "(after the first admin exists)",
    )
    model_arguments(demo)
    demo.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from review.browse import PostFilter, count_posts
    from review.cli.score import score_unscored, unscored_posts
    from review.cli.signals import compute_missing_signals
    from review.demo import load_demo
    from review.desk import open_desk
    from review.inference.base import ModelUnavailable

    desk = open_desk()
    if args.history:
        return _demo_history(desk)
    with desk.sessions() as session:
        existing = count_posts(session, PostFilter())
    if existing and not args.force:
        print(f"the database already holds {existing} posts; the demo loads only into an empty one (--force adds it)")
        unscored = unscored_posts(desk)
        if unscored:
            print(f"{unscored} posts have no verdict yet: python -m review score", file=sys.stderr)
        return 0
    report = load_demo(desk.sessions, desk.settings, progress=file_progress)
    print_ingest_report(report, verbose_warnings=False)
    if args.no_score:
        return EXIT_REJECTED if report.rejected else 0
    try:
        provider = make_provider(desk.settings, args)
    except ModelUnavailable as exc:  # a fresh machine: no weights, no network
        from review.inference.baseline import BaselineProvider

        print(f"note: {exc}. Scoring with the baseline rules instead.", file=sys.stderr)
        provider = BaselineProvider()
    compute_missing_signals(desk)
    score_unscored(desk, provider)
    return EXIT_REJECTED if report.rejected else 0


def _demo_history(desk: Desk) -> int:
    from review.auth import OPERATOR, user_count
    from review.demo import simulate_history
    from review.errors import ReviewError

    with desk.sessions() as session:
        if not user_count(session):  # the demo moderators would take the first admin's place
            raise ReviewError("create the first admin first: python -m review user add NAME --role admin")
    done = simulate_history(desk.sessions, OPERATOR, raters=min(desk.settings.qa_raters, 3))
    print(f"simulated {done.decisions} decisions, {done.second_reviews} second reviews and {done.escalations} "
          f"escalations over ten days; {done.left_waiting} demo posts left in the queue")  # fmt: skip
    return 0

"""``python -m review score``: the scoring worker, started from the command line.

The one CLI module that imports the worker (:mod:`review.scoring`); ``demo`` scores through
:func:`score_unscored`.
"""

from __future__ import annotations

import argparse
import signal
import sys
from datetime import timedelta
from typing import TYPE_CHECKING

from review.cli.common import EXIT_REJECTED, make_provider, model_arguments
from review.cli.signals import compute_missing_signals

if TYPE_CHECKING:
    from review.desk import Desk
    from review.inference.base import Provider
    from review.scoring import Scorer


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    score = sub.add_parser("score", help="give every unscored post a model verdict")
    model_arguments(score)
    score.add_argument("--batch-size", type=int, default=4, help="posts per model call (default 4)")
    score.add_argument("--limit", type=int, help="score at most this many posts")
    score.add_argument("--max-new-tokens", type=int, default=768, help="answer length limit (default 768)")
    score.add_argument("--near-duplicates", action="store_true", help="reuse verdicts of near-duplicate images")
    score.add_argument(
        "--ocr-hints", action="store_true", help="give the model the OCR text of the images (a new prompt version)"
    )
    score.add_argument("--skip-signals", action="store_true", help="do not compute missing signals first")
    score.add_argument(
        "--lease-seconds", type=int, default=600, help="how long a claimed post stays with this worker (default 600)"
    )
    score.add_argument(
        "--retry-seconds",
        type=float,
        default=120.0,
        help="how long in all to wait for an unreachable database before giving up (default 120)",
    )
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    score.set_defaults(handler=cmd_score)


def cmd_score(args: argparse.Namespace) -> int:
    from review.desk import open_desk
    from review.errors import ConfigError
    from review.scoring import Scorer
    from review.verdicts import unscored_query

    desk = open_desk()
    if args.skip_signals and (args.provider or desk.settings.provider) == "baseline":
        raise ConfigError("the baseline provider decides from the signals: drop --skip-signals")
    scorer = Scorer(
        desk.sessions,
        desk.settings,
        make_provider(desk.settings, args),
        batch_size=args.batch_size,
        lease=timedelta(seconds=args.lease_seconds),
        near_duplicates=args.near_duplicates,
        max_new_tokens=args.max_new_tokens,
        ocr_hints=args.ocr_hints,
        retry_wait=args.retry_seconds,
    )
    if not args.skip_signals:  # the images of the posts this run will score
        compute_missing_signals(desk, quiet=args.quiet, posts=unscored_query(args.limit))
    return _run(desk, scorer, args.limit, args.quiet)


def score_unscored(desk: Desk, provider: Provider) -> int:
    """Score every unscored post with ``provider`` and the settings' defaults (``demo``'s last step)."""
    from review.scoring import Scorer

    return _run(desk, Scorer(desk.sessions, desk.settings, provider))


def unscored_posts(desk: Desk) -> int:
    """How many posts wait for a verdict."""
    from review.verdicts import unscored_count

    with desk.sessions() as session:
        return unscored_count(session)


def _run(desk: Desk, scorer: Scorer, limit: int | None = None, quiet: bool = False) -> int:
    """Score unscored posts with a progress bar; Ctrl-C finishes the current batch and stops."""
    from tqdm import tqdm

    if scorer.provider.name == "baseline":
        print("scoring with the baseline provider (rules over text, OCR and NSFW signals)", file=sys.stderr)
    total = unscored_posts(desk)
    if limit is not None:
        total = min(total, limit)
    stopping = {"requested": False}

    def on_sigint(_signum: int, _frame: object) -> None:
        if stopping["requested"]:
            raise KeyboardInterrupt
        stopping["requested"] = True
        print("\nfinishing the current batch, then stopping (Ctrl-C again to abort)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_sigint)
    bar = tqdm(total=total, desc="scoring", unit="post", disable=quiet)

    def advance(scored: int) -> None:
        bar.update(scored)

    try:
        stats = scorer.run(limit=limit, should_stop=lambda: stopping["requested"], on_batch=advance)
    finally:
        bar.close()
        signal.signal(signal.SIGINT, previous)
    print(f"{scorer.provider.name} {scorer.provider.model_id}: {stats.summary()}")
    if stats.leased_elsewhere:  # exit 1: posts are left unscored, as an ingest with rejections
        until = f"{stats.leases_end:%Y-%m-%d %H:%M:%S} UTC" if stats.leases_end else "later"
        print(f"error: {stats.leased_elsewhere} posts are still leased by another scoring worker (perhaps one "
              f"that died) and were not scored; the leases end by {until}: run score again then",
              file=sys.stderr)  # fmt: skip
        return EXIT_REJECTED
    return 0

"""``python -m review signals``: OCR, NSFW scores and near-duplicate clusters of the images that lack them.

:func:`compute_missing_signals` is also the first step of ``score`` and ``demo``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Select

    from review.desk import Desk


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    signals = sub.add_parser("signals", help="compute missing image signals: OCR, NSFW score, near-duplicate clusters")
    signals.add_argument("--limit", type=int, help="at most this many images")
    signals.add_argument("--quiet", action="store_true", help="no progress bar")
    signals.set_defaults(handler=cmd_signals)


def compute_missing_signals(
    desk: Desk,
    limit: int | None = None,
    quiet: bool = False,
    posts: Select[int] | None = None,
) -> None:
    """Signals for the images without them (of ``posts`` only, when given), with a progress bar."""
    from tqdm import tqdm

    from review.signals.runner import compute_signals, pending_count

    with desk.sessions() as session:
        total = pending_count(session, posts)
    if limit is not None:
        total = min(total, limit)
    if not total:
        return
    bar = tqdm(total=total, desc="signals (OCR, NSFW, near-duplicates)", unit="image", disable=quiet)

    def advance(done: int) -> None:
        bar.update(done - bar.n)

    try:
        stats = compute_signals(desk.sessions, desk.settings, limit=limit, posts=posts, progress=advance)
    finally:
        bar.close()
    print(stats.summary())


def cmd_signals(args: argparse.Namespace) -> int:
    from review.desk import open_desk
    from review.errors import ConfigError
    from review.signals.runner import pending_count

    desk = open_desk()
    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    compute_missing_signals(desk, args.limit, args.quiet)
    with desk.sessions() as session:
        left = pending_count(session)
    print(f"{left} images still without signals" if left else "every image has its signals")
    return 0

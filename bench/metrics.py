"""Lead analytics speed: every number of the Accuracy page, and the Agreement and Activity
pages, at about 100,000 and 1,000,000 human decisions.

    python bench/metrics.py [--posts 106000 1060000] [--runs 7] [--folder /tmp/review-bench] [--also URL]
                            [--exact-confidence]

Each size is a SQLite database made by `bench/seed_db.py` (about 0.95 confirm/overturn events
per post: 89 % of posts decided, 5 % of those given a second review), created on first use in
--folder. Each measurement is one warm-up then --runs timed runs; the median in seconds is
reported. "accuracy page" is what the page computes on first view: the headline numbers,
categories, confusion and calibration (review.metrics.accuracy), the weekly trend, the slices by model /
prompt / provider / source, and the posts of the largest wrong confusion cell. It is timed
unfiltered, over one month, and for one source. Prints one JSON object with the ratios from the
smaller to the larger database; docs/BENCHMARKS.md records a run. --exact-confidence seeds (and
reads) databases whose confidences are saturated and nearly all distinct, so that ROC-AUC and the
thresholds rank one group per post: the worst case for the accuracy page.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select  # noqa: E402

from db.models import ReviewEvent  # noqa: E402
from db.session import make_engine, make_session_factory, normalise_url, safe_url  # noqa: E402
from review.auth import OPERATOR  # noqa: E402
from review.metrics.accuracy import accuracy, breakdown, cell_posts, slices, threshold_for  # noqa: E402
from review.metrics.activity import activity  # noqa: E402
from review.metrics.agreement import agreement  # noqa: E402
from review.metrics.filters import MetricFilter  # noqa: E402

FILTERS = {
    "all": MetricFilter(),
    "one month": MetricFilter(since=datetime(2026, 9, 1, tzinfo=UTC), until=datetime(2026, 10, 1, tzinfo=UTC)),
    "one source": MetricFilter(source="weibo"),
}


def _median(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up: the page cache, as on a server that has answered before
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def accuracy_page(session, flt: MetricFilter) -> None:  # type: ignore[no-untyped-def]
    acc = accuracy(session, OPERATOR, flt)
    breakdown(session, OPERATOR, flt, "week")
    slices(session, OPERATOR, flt)
    for violation in (True, False):  # the threshold advice, at the page's default target
        threshold_for(acc, 0.95, violation=violation)
    wrong = [(n, cell) for cell, n in acc.confusion.items() if cell[0] != cell[1]]
    if wrong:
        human, model = max(wrong)[1]
        cell_posts(session, OPERATOR, flt, human, model)


def measure(url: str, runs: int) -> dict[str, object]:
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    out: dict[str, object] = {}
    with sessions() as session:
        out["decision_events"] = session.scalar(
            select(func.count()).select_from(ReviewEvent).where(ReviewEvent.action.in_(["confirm", "overturn"]))
        )
        for name, flt in FILTERS.items():
            out[f"accuracy page, {name}"] = _median(lambda flt=flt: accuracy_page(session, flt), runs)
        flt = FILTERS["all"]
        recent = MetricFilter(since=datetime(2026, 10, 1, tzinfo=UTC))  # the seed's last 30 days
        parts = {
            "metrics.accuracy": lambda: accuracy(session, OPERATOR, flt),
            "trend by week": lambda: breakdown(session, OPERATOR, flt, "week"),
            "trend by day": lambda: breakdown(session, OPERATOR, flt, "day"),
            "slices": lambda: slices(session, OPERATOR, flt),
            "agreement page": lambda: agreement(session, OPERATOR, flt),
            "activity page, all 90 days": lambda: activity(session, OPERATOR, flt),
            "activity page, last 30 days (its default)": lambda: activity(session, OPERATOR, recent),
        }
        for name, fn in parts.items():
            out[name] = _median(fn, runs)
    engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, nargs="+", default=[106_000, 1_060_000])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/review-bench"))
    parser.add_argument(
        "--also", metavar="URL", action="append", default=[], help="measure this seeded database too (e.g. Postgres)"
    )
    parser.add_argument("--exact-confidence", action="store_true", help="seed unrounded, saturated confidences")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    results = {}
    for n in args.posts:
        path = args.folder / f"metrics-{n}{'-exact' if args.exact_confidence else ''}.db"
        url = f"sqlite:///{path}"
        if not path.exists():
            print(f"seeding {n:,} posts into {path}", file=sys.stderr)
            seed_db = str(Path(__file__).with_name("seed_db.py"))
            extra = ["--exact-confidence"] if args.exact_confidence else []
            subprocess.run([sys.executable, seed_db, "--posts", str(n), "--database-url", url, *extra], check=True)
        results[n] = measure(url, args.runs)
        print(json.dumps({n: results[n]}), file=sys.stderr)
    others = {}
    for url in args.also:
        others[safe_url(url)] = measure(normalise_url(url), args.runs)
        print(json.dumps({safe_url(url): others[safe_url(url)]}), file=sys.stderr)
    small, large = min(results), max(results)
    growth = {
        k: round(results[large][k] / results[small][k], 2)  # type: ignore[operator]
        for k in results[large]
        if k != "decision_events" and results[small][k]
    }
    report = {str(n): {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for n, r in results.items()}
    ratio = results[large]["decision_events"] / results[small]["decision_events"]  # type: ignore[operator]
    report.update(
        {url: {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for url, r in others.items()}
    )
    print(json.dumps({"seconds (median)": report, f"growth {large:,} / {small:,} posts": growth,
                      "decision ratio": round(ratio, 2)}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()

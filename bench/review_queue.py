"""Queue speed: the queue query and claim + decision writes, at 10,000 and 1,000,000 posts.

    python bench/review_queue.py [--sizes 10000 1000000] [--runs 40] [--folder /tmp/review-bench]

(Not named queue.py: a script in bench/ would shadow the standard library's queue module for the
other bench scripts.)

Each size is a SQLite database made by `bench/seed_db.py` (8 % of posts queued, 2 % escalated,
1 % waiting for second review, one verdict each, priorities as scoring sets them), created on
first use in --folder. For each
query: one warm-up, then --runs timed runs; p50 and p95 in ms. The queue queries run as a
moderator (escalations excluded) and as a lead. Then 200 × (claim the next post + confirm it)
by one moderator, timed together, on the same database (it changes the database: run it on a
bench copy, never on a real one).

Prints one JSON object; docs/BENCHMARKS.md records a run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from db import schema  # noqa: E402
from db.session import make_engine, make_session_factory  # noqa: E402
from review.auth import Actor, add_user_as_operator  # noqa: E402
from review.browse import get_posts  # noqa: E402
from review.decisions import claim, decide, held_claim  # noqa: E402
from review.queue import QueueFilter, category_counts, queue_count, queue_page  # noqa: E402
from review.visibility import COMMAND_LINE, Viewer  # noqa: E402

QUERIES = {
    "first page (moderator)": ("moderator", QueueFilter(), False),
    "first page (lead, escalations first)": ("lead", QueueFilter(), False),
    "category fraud_spam": ("moderator", QueueFilter(category="fraud_spam"), False),
    "category minors_safety (rare)": ("moderator", QueueFilter(category="minors_safety"), False),
    "no violation, confidence 0.5-0.7": (
        "moderator",
        QueueFilter(violation=False, min_confidence=0.5, max_confidence=0.7),
        False,
    ),  # fmt: skip
    "source douyin": ("moderator", QueueFilter(source="douyin"), False),
    "page 20 (keyset)": ("moderator", QueueFilter(), True),
    "second reviews only": ("moderator", QueueFilter(second_review=True), False),
}


def _database(folder: Path, posts: int) -> str:
    path = folder / f"queue-{posts}.db"
    url = f"sqlite:///{path}"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        seed = Path(__file__).with_name("seed_db.py")
        subprocess.run(
            [sys.executable, str(seed), "--posts", str(posts), "--database-url", url], check=True, stdout=sys.stderr
        )
    engine = make_engine(url)
    schema.upgrade(engine)
    engine.dispose()
    return url


def _times(fn, runs: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(statistics.median(times), 2), "p95_ms": round(float(np.percentile(times, 95)), 2)}


def bench_size(url: str, runs: int) -> dict:
    sessions = make_session_factory(make_engine(url))
    people = {}
    for role in ("moderator", "lead"):
        name = f"bench-{role}"
        try:
            people[role] = add_user_as_operator(sessions, name, "bench password 123", role)
        except Exception:  # made by an earlier run
            from sqlalchemy import select

            from db.models import User

            with sessions() as s:
                user = s.scalars(select(User).where(User.username == name)).one()
            people[role] = Actor(user.id, user.username, user.role)
    out: dict = {}
    with sessions() as session:
        for name, (role, flt, deep) in QUERIES.items():
            actor = people[role]
            cursor = None
            if deep:
                for _ in range(19):
                    cursor = queue_page(session, Viewer(actor), flt, after=cursor).next_cursor
            out[name] = _times(lambda a=actor, f=flt, c=cursor: queue_page(session, Viewer(a), f, after=c), runs)
        out["count (moderator)"] = _times(lambda: queue_count(session, people["moderator"]), max(5, runs // 4))
        out["count, confidence >= 0.5 (joins verdicts)"] = _times(
            lambda: queue_count(session, people["moderator"], QueueFilter(min_confidence=0.5)), max(5, runs // 8)
        )
        out["counts per category (moderator)"] = _times(
            lambda: category_counts(session, people["moderator"]), max(5, runs // 4)
        )

        def page_with_posts() -> None:  # what the Queue page loads: the page, then its posts' media and verdicts
            page = queue_page(session, Viewer(people["moderator"]), QueueFilter())
            get_posts(session, COMMAND_LINE, [r.post_id for r in page.rows])

        out["queue page with thumbnails and badges"] = _times(page_with_posts, max(5, runs // 4))
        out["held claim (after a reload)"] = _times(lambda: held_claim(session, people["moderator"]), runs)
    writes = []
    mod = people["moderator"]
    for _ in range(200):
        started = time.perf_counter()
        got = claim(sessions, mod, lease=timedelta(minutes=10))
        if got is None:
            break
        decide(sessions, mod, got.post_id, "confirm", share=0.1)  # as the review page decides
        writes.append((time.perf_counter() - started) * 1000)
    out["claim + confirm"] = {"p50_ms": round(statistics.median(writes), 2),
                              "p95_ms": round(float(np.percentile(writes, 95)), 2), "n": len(writes)}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/review-bench"))
    args = parser.parse_args()
    results = {size: bench_size(_database(args.folder, size), args.runs) for size in args.sizes}
    if len(args.sizes) == 2:
        small, big = (results[s] for s in args.sizes)
        results["ratio_p95_big_over_small"] = {
            q: round(big[q]["p95_ms"] / max(small[q]["p95_ms"], 1e-6), 2) for q in big if q in small
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""Bulk-create a large review database for scale tests and the metrics benchmarks.

    python bench/seed_db.py --posts 1000000 [--database-url URL] [--seed 7] [--exact-confidence]

Writes N posts, one model verdict per scored post, and review events (claim + confirm/overturn
or escalate, plus a blind second review on a share of posts) from 20 moderators, spread over 90
days, with realistic disagreement rates per category; then rebuilds the metrics' post_label
projection from them (review/labels.py), as the desk's own decisions keep it. The database is migrated first and must
hold no posts. SQLite goes through executemany in big transactions; Postgres through COPY.
Prints the time taken and rows written. Confidences are rounded to 0.001 unless
--exact-confidence, which draws them as a softmax would give them: saturated (1e-9 … 1-1e-9),
nearly all distinct, the worst case for ranking them exactly.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select  # noqa: E402

from db import schema  # noqa: E402
from db.models import Post  # noqa: E402
from db.session import make_engine, make_session_factory, normalise_url, writing  # noqa: E402
from review import labels  # noqa: E402
from review.policy import load_policy  # noqa: E402

# How often each category is the truth, and how often the model gets a post of it right.
BASE_RATES = {
    "none": (55, 0.93),
    "sexual": (3, 0.85),
    "violence_gore": (3, 0.8),
    "hate_harassment": (5, 0.7),
    "self_harm": (1, 0.75),
    "illegal_goods": (3, 0.8),
    "fraud_spam": (12, 0.86),
    "false_advertising": (9, 0.78),
    "misinformation": (4, 0.6),
    "minors_safety": (1, 0.7),
    "privacy_pii": (2, 0.75),
    "ip_infringement": (1, 0.65),
}
CATEGORIES = load_policy().ids  # categories missing above get a small default rate
WEIGHTS = [BASE_RATES.get(c, (1, 0.5))[0] for c in CATEGORIES]
MODEL_ACCURACY = [BASE_RATES.get(c, (1, 0.5))[1] for c in CATEGORIES]
NONE = CATEGORIES.index("none")
MODERATORS = 20
START = datetime(2026, 8, 1, tzinfo=UTC)
BATCH = 50_000

POST_COLS = ("id", "source", "external_id", "text", "author", "created_at", "ingested_at", "metadata",
             "status", "priority", "updated_at", "verdict_id", "verdict_category", "verdict_violation",
             "first_decider_id")  # fmt: skip
VERDICT_COLS = ("id", "post_id", "created_at", "provider", "model_id", "model_revision", "prompt_version",
                "input_hash", "cache_hit", "violation", "category", "severity", "confidence",
                "image_text_consistency", "sentiment", "tags", "rationale", "parse_status", "latency_ms",
                "prompt_tokens", "completion_tokens")  # fmt: skip
EVENT_COLS = ("id", "post_id", "user_id", "action", "created_at", "verdict_id", "label_violation",
              "label_category", "label_severity", "time_spent_ms", "lease_expires_at", "second_review")  # fmt: skip
USER_COLS = ("id", "username", "password_hash", "role", "active", "created_at")


def _ts(dt: datetime, sqlite: bool) -> str | datetime:
    # SQLite stores DateTime as naive ISO text in UTC (what db.models.UTCDateTime writes).
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else dt


def _confidence(rng: random.Random, right: bool, exact: bool) -> float:
    if exact:  # a sigmoid of a wide logit: most values within 1e-3 of 1, all distinct
        return 1 / (1 + math.exp(-rng.gauss(6.0 if right else 2.0, 4.0)))
    return round(min(0.99, max(0.05, rng.gauss(0.85 if right else 0.6, 0.12))), 3)


def generate(n_posts: int, rng: random.Random, sqlite: bool, exact: bool = False):  # type: ignore[no-untyped-def]
    """Yield (posts, verdicts, events) batches as tuples in the column orders above."""
    verdict_id = event_id = 0
    models = [("Qwen/Qwen3-VL-2B-Instruct", "a1b2c3d4"), ("Qwen/Qwen3-VL-8B-Instruct", "e5f6a7b8")]
    sources = ["weibo", "douyin", "xiaohongshu", "x", "instagram"]
    for start in range(1, n_posts + 1, BATCH):
        posts, verdicts, events = [], [], []
        for pid in range(start, min(start + BATCH, n_posts + 1)):
            created = START + timedelta(seconds=int(pid / n_posts * 90 * 86400) + rng.randint(0, 3600))
            truth = rng.choices(range(len(CATEGORIES)), WEIGHTS)[0]
            r = rng.random()
            status = "queued" if r < 0.08 else "escalated" if r < 0.1 else "decided"
            model_id, prompt = models[0] if created < START + timedelta(days=45) else models[1]
            right = rng.random() < MODEL_ACCURACY[truth]
            predicted = truth if right else rng.choices(range(len(CATEGORIES)), WEIGHTS)[0]
            confidence = _confidence(rng, right, exact)
            severity = 0 if predicted == NONE else rng.randint(1, 3)
            # the queue's priority, as scoring and escalation set it
            priority = 200.0 if status == "escalated" else round(severity * confidence, 4)
            verdict_id += 1
            posts.append((pid, sources[pid % 5], f"seed-{pid}", f"seeded post {pid}", f"user{pid % 50_000}",
                          _ts(created, sqlite), _ts(created, sqlite), "{}", status, priority,
                          _ts(created, sqlite), verdict_id, CATEGORIES[predicted], predicted != NONE,
                          None))  # fmt: skip
            scored = created + timedelta(seconds=rng.randint(5, 600))
            verdicts.append((verdict_id, pid, _ts(scored, sqlite), "transformers", model_id, None, prompt,
                             f"{pid:064x}", False, predicted != NONE, CATEGORIES[predicted],
                             severity, confidence, "consistent", "neutral",
                             "[]", "seeded", "ok", rng.gauss(1800, 400), 900, 120))  # fmt: skip
            if status == "queued":
                continue
            mod = rng.randint(1, MODERATORS)
            claim_at = scored + timedelta(minutes=rng.randint(1, 2000))
            event_id += 1
            events.append((event_id, pid, mod, "claim", _ts(claim_at, sqlite), verdict_id, None, None, None, None,
                           _ts(claim_at + timedelta(minutes=10), sqlite), False))  # fmt: skip
            spent = int(rng.lognormvariate(9.6, 0.6))  # ~15 s median
            decided_at = claim_at + timedelta(milliseconds=spent)
            event_id += 1
            if status == "escalated":
                events.append((event_id, pid, mod, "escalate", _ts(decided_at, sqlite), verdict_id, None, None,
                               None, spent, None, False))  # fmt: skip
                continue
            human = truth if rng.random() < 0.95 else rng.choices(range(len(CATEGORIES)), WEIGHTS)[0]
            action = "confirm" if human == predicted else "overturn"
            severity = 0 if human == NONE else rng.randint(1, 3)
            events.append((event_id, pid, mod, action, _ts(decided_at, sqlite), verdict_id, human != NONE,
                           CATEGORIES[human], severity, spent, None, False))  # fmt: skip
            if r < 0.11:  # 1 % of posts: decided, and waiting for their blind second review
                posts[-1] = (*posts[-1][:8], "second_review", *posts[-1][9:-1], mod)
                continue
            if rng.random() < 0.05:  # blind second review by another moderator
                second = mod % MODERATORS + 1
                again = human if rng.random() < 0.85 else rng.choices(range(len(CATEGORIES)), WEIGHTS)[0]
                at = decided_at + timedelta(hours=rng.randint(1, 48))
                event_id += 1
                events.append((event_id, pid, second, "confirm" if again == predicted else "overturn",
                               _ts(at, sqlite), verdict_id, again != NONE, CATEGORIES[again],
                               0 if again == NONE else rng.randint(1, 3), spent, None, True))  # fmt: skip
        yield posts, verdicts, events


def _users(sqlite: bool) -> list[tuple]:  # type: ignore[type-arg]
    now = _ts(START, sqlite)
    rows = [(i, f"mod{i:02d}", None, "moderator", True, now) for i in range(1, MODERATORS + 1)]
    rows.append((MODERATORS + 1, "lead", None, "lead", True, now))
    return rows


def _insert_sql(table: str, cols: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"


def seed(url: str, n_posts: int, seed_value: int, exact: bool = False) -> dict[str, int]:
    engine = make_engine(url)
    schema.upgrade(engine)
    with engine.connect() as conn:
        if conn.execute(select(func.count(Post.id))).scalar():
            raise SystemExit("the database already holds posts; seed an empty one")
    rng = random.Random(seed_value)
    sqlite = engine.dialect.name == "sqlite"
    counts = {"post": 0, "verdict": 0, "review_event": 0}
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if sqlite:
            cur.execute("PRAGMA synchronous=OFF")
            cur.execute("PRAGMA cache_size=-1000000")  # 1 GB page cache: index inserts stay in memory
            cur.execute("BEGIN")
            cur.executemany(_insert_sql("app_user", USER_COLS), _users(sqlite))
            raw.commit()
        else:
            with cur.copy(f"COPY app_user ({', '.join(USER_COLS)}) FROM STDIN") as copy:
                for row in _users(sqlite):
                    copy.write_row(row)
        for posts, verdicts, events in generate(n_posts, rng, sqlite, exact):
            if sqlite:  # the engine leaves transactions to us (db/session.py): one per batch
                cur.execute("BEGIN")
            for table, cols, rows in (("post", POST_COLS, posts), ("verdict", VERDICT_COLS, verdicts),
                                      ("review_event", EVENT_COLS, events)):  # fmt: skip
                if sqlite:
                    cur.executemany(_insert_sql(table, cols), rows)
                else:
                    with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                counts[table] += len(rows)
            raw.commit()
            print(f"\r{counts['post']:,} posts", end="", file=sys.stderr, flush=True)
        if not sqlite:  # COPY with explicit ids leaves the sequences behind
            for table in ("app_user", "post", "verdict", "review_event"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            raw.commit()
    finally:
        raw.close()
    started = time.perf_counter()
    with writing(make_session_factory(engine)) as session:  # the metrics' projection, as decisions.py keeps it
        counts["post_label"] = labels.rebuild(session)
    print(f"\npost_label rebuilt in {time.perf_counter() - started:.1f} s", end="", file=sys.stderr)
    with engine.connect() as conn:  # planner statistics for the new tables
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    engine.dispose()
    print(file=sys.stderr)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--database-url", default="sqlite:///data/bench.db")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--exact-confidence", action="store_true", help="saturated, unrounded confidences")
    args = parser.parse_args()
    started = time.perf_counter()
    counts = seed(normalise_url(args.database_url), args.posts, args.seed, args.exact_confidence)
    elapsed = time.perf_counter() - started
    print(json.dumps({"database": args.database_url, "seconds": round(elapsed, 1), **counts}))


if __name__ == "__main__":
    main()

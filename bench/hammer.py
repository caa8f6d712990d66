"""The decision hammer: N moderator processes × M claims on one queue, on SQLite and Postgres, then
every invariant of the review flow checked against the events.

    python bench/hammer.py [--processes 4] [--claims 150] [--full] [--postgres-url ADMIN_URL] [--no-sqlite]

Each process (``python bench/hammer.py worker …``, a real separate process on
``review.decisions``) loops: claim the next post (now and then with a lease that runs out before
it decides), then confirm, overturn (category and severity), escalate (with a reason), skip or
release it; some decisions are sent twice with one idempotency key (a double click), some are
undone and decided again, and some are attempted on a post never claimed (must be refused). A
quarter of the processes are leads, who also take the escalated posts. Every call and its
answer is written down by the worker. Then, from the database:

- every decision a worker was told was saved has its event (post, user, action), and no event
  exists that no worker was told about; the same for claims and undos; releases are counted;
- a repeated call with one idempotency key returned the first event, and wrote one event;
- replaying each post's events in order: nobody claims a post under someone else's live lease,
  every decision lies inside its moderator's live lease, every undo takes back that moderator's
  latest decision, and no post holds two standing decisions;
- no half-written row: decision events carry their status before and a complete label,
  escalations a reason, undos the event they take back; a post's claim columns are both set or
  both empty;
- each post's status, holder and lease equal the replay's, and ``post_label`` equals what
  ``review.labels.label_rows`` computes from the events;
- the counts agree (posts per status, settled posts, label rows).

Postgres runs in a new database created on the server given by ``--postgres-url`` and dropped
afterwards. ``--full`` is the issue's size: 8 processes × 500 claims.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, insert, select, text, update  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from db import schema  # noqa: E402
from db.models import Post, PostLabel, ReviewEvent, User, Verdict  # noqa: E402
from db.session import make_engine, make_session_factory, writing  # noqa: E402
from review import labels  # noqa: E402
from review.auth import Actor, active_actor  # noqa: E402
from review.decisions import ClaimLost, Label, claim, decide, new_idempotency_key, release, undo  # noqa: E402
from review.errors import ReviewError  # noqa: E402
from review.policy import load_policy  # noqa: E402

DECISIONS = ("confirm", "overturn", "escalate", "skip")
LABELLING = ("confirm", "overturn")
SHORT_LEASE = timedelta(milliseconds=40)
FAILED_SHARE = 0.05  # posts whose verdict is a model failure: confirm is refused, overturn needed


# --------------------------------------------------------------------------------------------
# The worker process


def worker(url: str, user_id: int, role: str, claims: int, seed: int) -> dict[str, Any]:
    """Claim and decide ``claims`` times; return every call that wrote something, as told."""
    rng = random.Random(seed)
    sessions = make_session_factory(make_engine(url))
    with sessions() as session:
        me = active_actor(session, user_id)  # the account as stored: the core checks it is the same
    assert me is not None and me.role == role
    categories = [c for c in load_policy().ids if c != "none"]
    log: dict[str, Any] = {"claims": [], "decisions": [], "undos": [], "releases": 0, "repeats": [],
                           "refused_unclaimed": 0, "refused_expired": 0, "refused_other": 0, "empty": 0,
                           "unexpected": [], "unclaimed_accepted": [], "latency_ms": []}  # fmt: skip

    def decide_logged(post_id: int, action: str, *, double: bool = False) -> int | None:
        label = None
        note = None
        if action == "overturn":
            violation = rng.random() < 0.7
            label = Label(
                violation, rng.choice(categories) if violation else "none", rng.randint(1, 3) if violation else 0
            )
        if action == "escalate":
            note = f"needs a lead: hammer reason {rng.randrange(10**6)}"
        key = new_idempotency_key()
        started = time.perf_counter()
        event = decide(sessions, me, post_id, action, label=label, note=note, idempotency_key=key)
        log["latency_ms"].append(round((time.perf_counter() - started) * 1000, 2))
        log["decisions"].append([post_id, event.id, event.action, key])
        if double:  # the same call again (a double click): the first event, nothing new
            again = decide(sessions, me, post_id, action, label=label, note=note, idempotency_key=key)
            log["repeats"].append([key, event.id, again.id])
        return event.id

    for _ in range(claims):
        try:
            if rng.random() < 0.05:  # a decision on a post never claimed: must be refused
                target = rng.randrange(1, 10_000)
                try:
                    event = decide(sessions, me, target, "confirm")
                    log["unclaimed_accepted"].append([target, event.id])
                except ClaimLost:
                    log["refused_unclaimed"] += 1
                except ReviewError:
                    log["refused_unclaimed"] += 1
                continue
            short = rng.random() < 0.05
            got = claim(sessions, me, lease=SHORT_LEASE if short else timedelta(minutes=10))
            if got is None:
                log["empty"] += 1
                continue
            log["claims"].append([got.post_id, got.event_id])
            if short:
                time.sleep(0.08)  # the lease runs out; another process may take the post meanwhile
            roll = rng.random()
            if roll < 0.10:
                release(sessions, me, got.post_id)
                log["releases"] += 1  # (a no-op when the lease ran out: counted from the events)
                continue
            action = "confirm" if roll < 0.45 else "overturn" if roll < 0.75 else "escalate" if roll < 0.85 else "skip"
            try:
                event_id = decide_logged(got.post_id, action, double=rng.random() < 0.1)
            except ClaimLost:
                log["refused_expired"] += 1
                continue
            except ReviewError:  # confirm of a failed verdict: overturn it instead
                log["refused_other"] += 1
                event_id = decide_logged(got.post_id, "overturn")
            if event_id is not None and rng.random() < 0.12:  # undo, then decide again or give it back
                reopened = undo(sessions, me, event_id)
                log["undos"].append([got.post_id, event_id, reopened.event_id])
                if rng.random() < 0.5:
                    decide_logged(got.post_id, "overturn")
                else:
                    release(sessions, me, got.post_id)
                    log["releases"] += 1
        except ClaimLost:
            log["refused_expired"] += 1
        except ReviewError as exc:
            log["refused_other"] += 1
            log.setdefault("refusals", Counter())[str(exc)[:80]] += 1
        except Exception as exc:  # a database error, a bug: the hammer reports it
            log["unexpected"].append(f"{type(exc).__name__}: {exc}"[:300] + " | " + traceback.format_exc()[-300:])
    return log


# --------------------------------------------------------------------------------------------
# Seeding


def seed(url: str, processes: int, posts: int) -> list[Actor]:
    """A migrated database with ``posts`` queued posts, each with a verdict, and the workers' accounts."""
    engine = make_engine(url)
    schema.upgrade(engine)
    sessions = make_session_factory(engine)
    rng = random.Random(7)
    leads = max(1, processes // 4)
    with writing(sessions) as session:
        users = session.scalars(
            insert(User).returning(User.id, sort_by_parameter_order=True),
            [
                {
                    "username": f"hammer{i}",
                    "password_hash": None,
                    "role": "lead" if i < leads else "moderator",
                    "active": True,
                    "preferences": {},
                }
                for i in range(processes)
            ],  # fmt: skip
        ).all()
        failed = [rng.random() < FAILED_SHARE for _ in range(posts)]
        severities = [rng.randrange(4) for _ in range(posts)]
        post_ids = session.scalars(
            insert(Post).returning(Post.id, sort_by_parameter_order=True),
            [
                {
                    "source": "hammer",
                    "external_id": f"h{i}",
                    "text": f"post {i}",
                    "status": "queued",
                    "meta": {},
                    "priority": 100.0 if failed[i] else severities[i] * 0.9,
                }
                for i in range(posts)
            ],  # fmt: skip
        ).all()
        verdicts = session.scalars(
            insert(Verdict).returning(Verdict.id, sort_by_parameter_order=True),
            [
                {
                    "post_id": pid,
                    "provider": "baseline",
                    "model_id": "hammer",
                    "prompt_version": "v1",
                    "input_hash": f"i{i}",
                    "text_hash": f"t{i}",
                    "parse_status": "failed" if failed[i] else "ok",
                    "violation": None if failed[i] else severities[i] > 0,
                    "category": None if failed[i] else ("fraud_spam" if severities[i] else "none"),
                    "severity": None if failed[i] else severities[i],
                    "confidence": None if failed[i] else 0.9,
                    "tags": [],
                    "parse_notes": [],
                }
                for i, pid in enumerate(post_ids)
            ],  # fmt: skip
        ).all()
        session.execute(
            update(Post),
            [
                {
                    "id": pid,
                    "verdict_id": vid,
                    "verdict_category": None if failed[i] else ("fraud_spam" if severities[i] else "none"),
                    "verdict_violation": None if failed[i] else severities[i] > 0,
                }
                for i, (pid, vid) in enumerate(zip(post_ids, verdicts, strict=True))
            ],  # fmt: skip
        )
    engine.dispose()
    return [Actor(uid, f"hammer{i}", "lead" if i < leads else "moderator") for i, uid in enumerate(users)]


# --------------------------------------------------------------------------------------------
# Checks


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Replay:
    """A post's state as its events say it must be."""

    status: str = "queued"
    holder: int | None = None
    expires: datetime | None = None
    standing: list[int] = field(default_factory=list)  # decision events not undone
    latest_decision: dict[int, int] = field(default_factory=dict)  # user → their latest decision event


def check(url: str, logs: list[dict[str, Any]]) -> list[Check]:
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    out: list[Check] = []

    def add(name: str, problems: list[str], total: int | None = None) -> None:
        counted = f" ({total} checked)" if total is not None else ""
        out.append(Check(name + counted, not problems, "; ".join(problems[:5]) + (" …" if len(problems) > 5 else "")))

    unexpected = [u for log in logs for u in log["unexpected"]]
    add("no worker met an unexpected error", unexpected)
    accepted = [a for log in logs for a in log["unclaimed_accepted"]]
    add("every decision without a claim was refused", [f"post {p}: event {e}" for p, e in accepted],
        sum(log["refused_unclaimed"] for log in logs) + len(accepted))  # fmt: skip

    with sessions() as session:
        events = session.execute(select(ReviewEvent).order_by(ReviewEvent.id)).scalars().all()
        posts = {p.id: p for p in session.scalars(select(Post))}
        failed = set(session.scalars(select(Verdict.post_id).where(Verdict.parse_status == "failed")))
        dialect = session.get_bind().dialect.name
        label_table = {r.post_id: r for r in session.scalars(select(PostLabel))}
        label_rule = {r[0]: r for r in session.execute(labels.label_rows(dialect))}
    by_id = {e.id: e for e in events}

    # every call a worker was told succeeded has its event, and no other event exists
    told = {d[1]: d for log in logs for d in log["decisions"]}
    stored = {e.id: e for e in events if e.action in DECISIONS}
    problems = [f"event {i} told but not stored" for i in told if i not in stored]
    problems += [f"event {i} ({e.action} of post {e.post_id}) stored but never told" for i, e in stored.items()
                 if i not in told]  # fmt: skip
    for i, d in told.items():
        if i in stored and (stored[i].post_id, stored[i].action) != (d[0], d[2]):
            problems.append(f"event {i}: told {d[2]} of post {d[0]}, stored {stored[i].action} of {stored[i].post_id}")
    add("no lost or phantom decision", problems, len(told))
    told_claims = {c[1]: c for log in logs for c in log["claims"]}
    stored_claims = {e.id: e for e in events if e.action == "claim"}
    problems = [f"claim event {i} lost" for i in told_claims if i not in stored_claims]
    problems += [f"claim event {i} never told" for i in stored_claims if i not in told_claims]
    add("no lost or phantom claim", problems, len(told_claims))
    told_undos = {u[2]: u for log in logs for u in log["undos"]}
    stored_reopens = {e.id: e for e in events if e.action == "reopen"}
    problems = [f"reopen {i} lost" for i in told_undos if i not in stored_reopens]
    problems += [f"reopen {i} never told" for i in stored_reopens if i not in told_undos]
    problems += [f"reopen {i} takes back {by_id[i].undoes_id}, the worker undid {u[1]}"
                 for i, u in told_undos.items() if i in by_id and by_id[i].undoes_id != u[1]]  # fmt: skip
    add("no lost or phantom undo", problems, len(told_undos))
    releases = sum(e.action == "release" for e in events)
    asked = sum(log["releases"] for log in logs)
    add("release events ≤ releases asked", [] if releases <= asked else [f"{releases} events, {asked} asked"])

    repeats = [r for log in logs for r in log["repeats"]]
    keys = Counter(e.idempotency_key for e in events if e.idempotency_key)
    problems = [f"key {k[:8]}: first {a}, repeat {b}" for k, a, b in repeats if a != b]
    problems += [f"key {k[:8]} on {n} events" for k, n in keys.items() if n > 1]
    add("a repeated idempotency key returns the first event", problems, len(repeats))

    # replay every post's events
    replays: dict[int, Replay] = defaultdict(Replay)
    lease_problems: list[str] = []
    double_claims: list[str] = []
    undo_problems: list[str] = []
    for e in events:
        r = replays[e.post_id]
        live = r.holder is not None and r.expires is not None and e.created_at < r.expires
        if e.action == "claim":
            if live and r.holder != e.user_id:
                double_claims.append(f"post {e.post_id}: event {e.id} by {e.user_id} under {r.holder}'s lease")
            r.holder, r.expires = e.user_id, e.lease_expires_at
        elif e.action == "release":
            r.holder = r.expires = None
        elif e.action in DECISIONS:
            if not live or r.holder != e.user_id:
                lease_problems.append(f"post {e.post_id}: {e.action} {e.id} by {e.user_id} without a live lease")
            if e.status_before != r.status:
                lease_problems.append(
                    f"post {e.post_id}: event {e.id} says it waited {e.status_before}, was {r.status}"
                )
            if e.action in LABELLING:
                r.status = "decided"
                r.standing.append(e.id)
            elif e.action == "escalate":
                r.status = "escalated"
            r.latest_decision[e.user_id] = e.id
            r.holder = r.expires = None
        elif e.action == "reopen":
            undone = by_id.get(e.undoes_id) if e.undoes_id else None
            if undone is None or undone.user_id != e.user_id or r.latest_decision.get(e.user_id) != undone.id:
                undo_problems.append(f"post {e.post_id}: reopen {e.id} takes back {e.undoes_id}")
            else:
                r.status = undone.status_before or "queued"
                if undone.id in r.standing:
                    r.standing.remove(undone.id)
            r.holder, r.expires = e.user_id, e.lease_expires_at
    decisions = [e for e in events if e.action in DECISIONS]
    add("nobody claims a post under another's live lease", double_claims, sum(e.action == "claim" for e in events))
    add("every decision inside its moderator's live lease", lease_problems, len(decisions))
    add("every undo takes back that moderator's latest decision", undo_problems, len(stored_reopens))
    twice = [f"post {p}: standing decisions {r.standing}" for p, r in replays.items() if len(r.standing) > 1]
    add("no post decided twice without an undo", twice, len(replays))

    half: list[str] = []
    for e in decisions:
        if e.status_before is None:
            half.append(f"event {e.id}: no status_before")
        if e.action in LABELLING and None in (e.label_violation, e.label_category, e.label_severity):
            half.append(f"event {e.id}: {e.action} without a complete label")
        if e.action == "confirm" and e.post_id in failed:
            half.append(f"event {e.id}: confirm of a failed verdict")
        if e.action == "escalate" and not (e.note or "").strip():
            half.append(f"event {e.id}: escalation without a reason")
    for e in events:
        if e.action == "claim" and e.lease_expires_at is None:
            half.append(f"claim {e.id}: no lease")
        if e.action == "reopen" and e.undoes_id is None:
            half.append(f"reopen {e.id}: no undoes_id")
    for p in posts.values():
        if (p.claimed_by_id is None) != (p.lease_expires_at is None):
            half.append(f"post {p.id}: claimed_by {p.claimed_by_id}, lease {p.lease_expires_at}")
        if p.status == "escalated" and p.priority != 200.0:
            half.append(f"post {p.id}: escalated at priority {p.priority}")
    add("no half-written row", half, len(events) + len(posts))

    mismatch = []
    for pid, p in posts.items():
        r = replays.get(pid, Replay())
        if p.status != r.status:
            mismatch.append(f"post {pid}: status {p.status}, events say {r.status}")
        if (p.claimed_by_id, p.lease_expires_at) != (r.holder, r.expires):
            mismatch.append(f"post {pid}: held by {p.claimed_by_id} until {p.lease_expires_at}, events say "
                            f"{r.holder} until {r.expires}")  # fmt: skip
    add("every post's status and claim match its events", mismatch, len(posts))

    cols = ("event_id", "decided_by_id", "raters", "human_violation", "human_category", "verdict_id", "usable",
            "model_violation", "model_category")  # fmt: skip
    index = [labels.COLUMNS.index(c) for c in cols]
    problems = [f"post {p} has a label row but the rule gives none" for p in label_table if p not in label_rule]
    problems += [f"post {p} has no label row" for p in label_rule if p not in label_table]
    for pid in label_table.keys() & label_rule.keys():
        have = tuple(getattr(label_table[pid], c) for c in cols)
        want = tuple(label_rule[pid][i] for i in index)
        if have != want:
            problems.append(f"post {pid}: table {have}, rule {want}")
    add("post_label equals label_rows", problems, len(label_rule))

    statuses = Counter(p.status for p in posts.values())
    settled = sum(1 for r in replays.values() if r.standing and r.status == "decided")
    problems = []
    if sum(statuses.values()) != len(posts):
        problems.append("statuses do not add up")
    if statuses.get("decided", 0) != settled:
        problems.append(f"{statuses.get('decided', 0)} posts decided, {settled} with a standing decision")
    if len(label_table) != statuses.get("decided", 0) + statuses.get("second_review", 0):
        problems.append(f"{len(label_table)} label rows for {statuses.get('decided', 0)} decided posts")
    add(f"counts agree ({dict(statuses)})", problems)
    engine.dispose()
    return out


# --------------------------------------------------------------------------------------------
# One backend


@dataclass
class Outcome:
    backend: str
    checks: list[Check]
    seconds: float
    claims: int
    decisions: int
    latency_ms: list[float]


def hammer(backend: str, url: str, processes: int, claims: int) -> Outcome:
    actors = seed(url, processes, posts=processes * claims)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "worker", url, str(a.id), a.role, str(claims), str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i, a in enumerate(actors)
    ]
    logs: list[dict[str, Any]] = []
    crashed: list[str] = []
    for p in procs:
        out, err = p.communicate(timeout=3600)
        if p.returncode != 0:
            crashed.append(f"worker exit {p.returncode}: {err.strip()[-300:]}")
            continue
        logs.append(json.loads(out))
    seconds = time.perf_counter() - started
    checks = [Check("every worker process finished", not crashed, "; ".join(crashed))]
    checks += check(url, logs)
    return Outcome(
        backend,
        checks,
        seconds,
        sum(len(log["claims"]) for log in logs),
        sum(len(log["decisions"]) for log in logs),
        sorted(x for log in logs for x in log["latency_ms"]),
    )


def fresh_postgres(admin_url: str) -> tuple[str, str]:
    name = f"hammer_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return name, make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_postgres(admin_url: str, name: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def print_outcome(o: Outcome, processes: int, claims: int) -> None:
    failed = [c for c in o.checks if not c.ok]
    lat = o.latency_ms
    p50 = lat[len(lat) // 2] if lat else 0.0
    p95 = lat[int(len(lat) * 0.95)] if lat else 0.0
    rate = o.decisions / o.seconds if o.seconds else 0.0
    print(f"\n{o.backend}: {processes} processes × {claims} claims in {o.seconds:.1f} s: {o.claims} claims, "
          f"{o.decisions} decisions ({rate:.0f}/s); decide p50 {p50:.0f} ms, p95 {p95:.0f} ms")  # fmt: skip
    for c in o.checks:
        print(f"  {'ok  ' if c.ok else 'FAIL'} {c.name}" + (f": {c.detail}" if not c.ok else ""))
    print(f"  tried {len(o.checks)}, passed {len(o.checks) - len(failed)}, failed {len(failed)}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        url, user_id, role, claims, seed_ = (
            sys.argv[2],
            int(sys.argv[3]),
            sys.argv[4],
            int(sys.argv[5]),
            int(sys.argv[6]),
        )
        log = worker(url, user_id, role, claims, seed_)
        print(json.dumps(log, default=dict))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=4, help="moderator processes (default 4)")
    parser.add_argument("--claims", type=int, default=150, help="claims per process (default 150)")
    parser.add_argument("--full", action="store_true", help="the issue's size: 8 processes × 500 claims")
    parser.add_argument("--postgres-url", help="a Postgres server: a new database is created there and dropped")
    parser.add_argument("--no-sqlite", action="store_true", help="only Postgres")
    args = parser.parse_args()
    processes, claims = (8, 500) if args.full else (args.processes, args.claims)
    outcomes = []
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory(prefix="hammer-") as tmp:
            outcomes.append(hammer("sqlite", f"sqlite:///{Path(tmp) / 'review.db'}", processes, claims))
            print_outcome(outcomes[-1], processes, claims)
    if args.postgres_url:
        name, url = fresh_postgres(args.postgres_url)
        try:
            outcomes.append(hammer("postgres", url, processes, claims))
            print_outcome(outcomes[-1], processes, claims)
        finally:
            drop_postgres(args.postgres_url, name)
    tried = sum(len(o.checks) for o in outcomes)
    failed = sum(not c.ok for o in outcomes for c in o.checks)
    print(f"\nTOTAL tried {tried}, passed {tried - failed}, failed {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

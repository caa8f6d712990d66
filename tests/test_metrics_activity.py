"""review/metrics/activity.py, throughput, handling time, backlog, failures, cache and latency,
checked against a plain count over the raw rows, on SQLite and Postgres."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from db.models import Post, ReviewEvent, Verdict
from review import labels
from tests.conftest import account
from tests.factories import T0


def test_activity_matches_a_plain_count(desk) -> None:
    """Activity numbers against numpy / statistics over the raw rows: decisions and escalations
    per day and moderator, lower-median handling time in whole seconds, latency percentiles
    (nearest rank on 10 ms steps, cache hits excluded), cache hits, failures, and the backlog at
    the end of each day computed post by post."""
    from statistics import median_low

    from review.metrics.activity import LATENCY_STEP_MS, activity

    rng = random.Random(17)
    ann, bob = account(desk, "moderator", "ann"), account(desk, "moderator", "bob")
    now = T0 + timedelta(days=6, hours=5)
    posts = []  # (ingested, first decided or None)
    events = []  # (day, user, action, seconds)
    verdicts = []  # (model, failed, cache hit, latency ms)
    with desk.sessions() as session, session.begin():
        for i in range(120):
            ingested = T0 + timedelta(hours=rng.randint(0, 120), minutes=rng.randint(0, 59))
            post = Post(source="weibo", external_id=f"o{i}", text="t", status="queued", ingested_at=ingested)
            session.add(post)
            session.flush()
            model = "m-a" if i % 2 else "m-b"
            failed, hit = i % 11 == 0, i % 4 == 0
            latency = None if hit else rng.uniform(200, 3000)
            v = Verdict(
                post_id=post.id, provider="transformers", model_id=model, prompt_version="p", input_hash=f"o{i}",
                parse_status="failed" if failed else "ok", violation=None if failed else i % 3 == 0,
                category=None if failed else ("fraud_spam" if i % 3 == 0 else "none"), confidence=0.8,
                cache_hit=hit, latency_ms=latency, tags=[], parse_notes=[], created_at=ingested + timedelta(minutes=1),
            )  # fmt: skip
            session.add(v)
            session.flush()
            verdicts.append((model, failed, hit, latency))
            first = None
            if rng.random() < 0.75:  # decided (or escalated first) some time after it came in
                who = ann if i % 3 else bob
                at = ingested + timedelta(hours=rng.randint(0, 30), minutes=rng.randint(0, 59))
                spent = rng.randint(2_000, 90_000)
                if i % 9 == 0:
                    session.add(ReviewEvent(post_id=post.id, user_id=who.id, action="escalate", created_at=at,
                                            verdict_id=v.id, time_spent_ms=spent))  # fmt: skip
                    events.append((at.date().isoformat(), who.username, "escalate", spent // 1000))
                    at += timedelta(hours=3)
                label = "none" if failed else v.category
                action = "overturn" if failed else "confirm"
                session.add(
                    ReviewEvent(post_id=post.id, user_id=who.id, action=action, created_at=at, verdict_id=v.id,
                                label_violation=label != "none", label_category=label, time_spent_ms=spent)
                )  # fmt: skip
                events.append((at.date().isoformat(), who.username, action, spent // 1000))
                post.status = "decided"
                first = at
            posts.append((ingested, first))
        labels.rebuild(session)

    with desk.sessions() as session:
        act = activity(session, account(desk, "lead"), now=now)

    by_day = {d.day: d for d in act.days}
    for day in sorted({d for d, *_ in events}):
        todays = [e for e in events if e[0] == day]
        assert by_day[day].decisions == sum(1 for e in todays if e[2] != "escalate")
        assert by_day[day].escalations == sum(1 for e in todays if e[2] == "escalate")
        assert by_day[day].median_handling_s == median_low([e[3] for e in todays])
    for m in act.moderators:
        mine = [e for e in events if e[1] == m.username]
        assert m.decisions == sum(1 for e in mine if e[2] != "escalate")
        assert m.median_handling_s == median_low([e[3] for e in mine])
        assert m.days_active == len({e[0] for e in mine})
    for row in act.models:
        mine = [v for v in verdicts if v[0] == row.model_id]
        steps = np.array([round(v[3] / LATENCY_STEP_MS) * LATENCY_STEP_MS for v in mine if not v[2]])
        assert (row.verdicts, row.failures, row.cache_hits) == (
            len(mine),
            sum(v[1] for v in mine),
            sum(v[2] for v in mine),
        )
        assert row.latency_p50_ms == np.percentile(steps, 50, method="inverted_cdf")
        assert row.latency_p95_ms == np.percentile(steps, 95, method="inverted_cdf")

    day = T0.date()
    while day <= now.date():  # the backlog, post by post
        end = min(datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC), now)
        open_ = [ing for ing, first in posts if ing < end and (first is None or first >= end)]
        row = by_day[day.isoformat()]
        assert row.waiting == len(open_), day
        assert row.oldest_waiting_h == pytest.approx((end - min(open_)).total_seconds() / 3600), day
        day += timedelta(days=1)

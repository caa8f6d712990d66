"""review.metrics against independent references on the same labels: scikit-learn for
precision / recall / F1, the confusion matrix and ROC-AUC, numpy for calibration; on SQLite and
Postgres. Edge cases: a category nobody predicted, one class only, ties in confidence, posts with
three decisions (the latest label counts), a reopened post, a model failure, a later re-score."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from statistics import multimode

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score
from sqlalchemy import text

from db.models import Post, ReviewEvent, Verdict
from review import labels
from review.auth import PermissionDenied
from review.metrics import CALIBRATION_BINS, MetricFilter, accuracy, agreement, threshold_for
from review.policy import load_policy
from tests.conftest import account

CATEGORIES = ["none", "fraud_spam", "false_advertising", "hate_harassment", "violence_gore"]
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _verdict(session, post_id: int, category: str, confidence: float, *, failed: bool = False) -> Verdict:  # type: ignore[no-untyped-def]
    v = Verdict(
        post_id=post_id, provider="transformers", model_id="m", prompt_version="p@1", input_hash=f"h{post_id}",
        parse_status="failed" if failed else "ok", violation=None if failed else category != "none",
        category=None if failed else category, severity=0 if category == "none" else 2,
        confidence=None if failed else confidence, tags=[], parse_notes=[],
    )  # fmt: skip
    session.add(v)
    session.flush()
    return v


def _decision(session, post_id: int, user_id: int, verdict: Verdict, label: str, at: datetime) -> None:  # type: ignore[no-untyped-def]
    action = "confirm" if verdict.parse_status == "ok" and label == (verdict.category or "none") else "overturn"
    session.add(
        ReviewEvent(post_id=post_id, user_id=user_id, action=action, created_at=at, verdict_id=verdict.id,
                    label_violation=label != "none", label_category=label, label_severity=0 if label == "none" else 2)
    )  # fmt: skip


def _world(desk, n: int = 240, seed: int = 3):  # type: ignore[no-untyped-def]
    """n decided posts with known labels; returns the reference (human, model, p_violation) lists."""
    rng = random.Random(seed)
    mod = account(desk, "moderator")
    other = account(desk, "moderator", "other")
    third = account(desk, "lead", "third")
    humans, models, p_violation, confidences, correct = [], [], [], [], []
    with desk.sessions() as session, session.begin():
        for i in range(n):
            post = Post(source="weibo" if i % 3 else "douyin", external_id=f"m{i}", text="t", status="decided")
            session.add(post)
            session.flush()
            human = rng.choice(CATEGORIES[:-1])  # violence_gore: predicted sometimes, never the truth
            model = human if rng.random() < 0.7 else rng.choice(CATEGORIES)
            model = "fraud_spam" if model == "false_advertising" else model  # a true category never predicted
            confidence = rng.choice([0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 0.95])  # few values: many ties
            shown = _verdict(session, post.id, model, confidence)
            at = T0 + timedelta(hours=i)
            if i % 10 == 0:  # three decisions: an early wrong label, a second review, the final one
                _decision(session, post.id, mod.id, shown, "hate_harassment", at)
                _decision(session, post.id, other.id, shown, "fraud_spam", at + timedelta(minutes=1))
            if i % 20 == 0:  # a third person on some of them
                _decision(session, post.id, third.id, shown, rng.choice([human, "none"]), at + timedelta(minutes=1))
            _decision(session, post.id, mod.id, shown, human, at + timedelta(minutes=2))
            if i % 7 == 0:  # re-scored after the decision: the metric keeps the verdict that was shown
                _verdict(session, post.id, human, 0.99)
            humans.append(human)
            models.append(model)
            p_violation.append(confidence if model != "none" else 1 - confidence)
            confidences.append(confidence)
            correct.append(human == model)
        # not counted: a reopened post (back in the queue), and a decision on a failed verdict (apart)
        reopened = Post(source="weibo", external_id="reopened", text="t", status="queued")
        failed = Post(source="weibo", external_id="failed", text="t", status="decided")
        session.add_all([reopened, failed])
        session.flush()
        _decision(session, reopened.id, mod.id, _verdict(session, reopened.id, "none", 0.9), "fraud_spam", T0)
        _decision(session, failed.id, mod.id, _verdict(session, failed.id, "none", 0.0, failed=True), "none", T0)
        labels.rebuild(session)  # events written directly here; decisions.py keeps it as it goes
    return humans, models, p_violation, confidences, correct


def test_accuracy_matches_scikit_learn(desk) -> None:  # type: ignore[no-untyped-def]
    humans, models, p_violation, confidences, correct = _world(desk)
    lead = account(desk, "lead")
    with desk.sessions() as session:
        report = accuracy(session, lead)
    assert report.n == len(humans) and report.model_failures == 1

    # violation as a binary task
    y_true = [h != "none" for h in humans]
    y_pred = [m != "none" for m in models]
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="binary", zero_division=0)
    b = report.binary
    assert (b.precision, b.recall, b.f1) == pytest.approx((p, r, f))
    assert b.accuracy == pytest.approx(np.mean(np.array(y_true) == np.array(y_pred)))
    assert b.auc == pytest.approx(roc_auc_score(y_true, p_violation))

    # category as a multi-class task: a category predicted but never true is in the table
    labels = sorted(set(humans) | set(models))
    assert "violence_gore" in labels and "violence_gore" not in humans
    assert "false_advertising" in humans and "false_advertising" not in models
    p, r, f, support = precision_recall_fscore_support(humans, models, labels=labels, zero_division=0)
    by_name = {c.category: c for c in report.categories}
    for i, name in enumerate(labels):
        c = by_name[name]
        assert (c.precision, c.recall, c.f1, c.support) == pytest.approx((p[i], r[i], f[i], support[i])), name
    matrix = confusion_matrix(humans, models, labels=labels)
    ours = np.array([[report.confusion.get((h, m), 0) for m in labels] for h in labels])
    assert (ours == matrix).all()
    _, _, macro, _ = precision_recall_fscore_support(humans, models, labels=labels, average="macro", zero_division=0)
    _, _, micro, _ = precision_recall_fscore_support(humans, models, labels=labels, average="micro", zero_division=0)
    assert (report.macro_f1, report.micro_f1) == pytest.approx((macro, micro))

    # calibration: bins of confidence against the share of right categories
    conf = np.array(confidences)
    bins = np.minimum(np.floor(conf * CALIBRATION_BINS), CALIBRATION_BINS - 1).astype(int)
    right = np.array(correct, dtype=float)
    expected = [(b, int((bins == b).sum()), conf[bins == b].mean(), right[bins == b].mean()) for b in np.unique(bins)]
    assert [(b, n) for b, n, _, _ in report.calibration] == [(b, n) for b, n, _, _ in expected]
    for (_, _, c1, a1), (_, _, c2, a2) in zip(report.calibration, expected, strict=True):
        assert (c1, a1) == pytest.approx((c2, a2))
    ece = sum(n / len(conf) * abs(a - c) for _, n, c, a in expected)
    assert report.ece == pytest.approx(ece)


def test_thresholds_keep_the_target_precision(desk) -> None:  # type: ignore[no-untyped-def]
    humans, models, _, confidences, _ = _world(desk, n=200, seed=5)
    with desk.sessions() as session:
        report = accuracy(session, account(desk, "lead"))
    for violation in (True, False):
        found = threshold_for(report, 0.8, violation=violation)
        picked = [
            (c, (h != "none") == violation)
            for h, m, c in zip(humans, models, confidences, strict=True)
            if (m != "none") == violation
        ]
        if found is None:
            continue
        above = [ok for c, ok in picked if c >= found.confidence]
        assert found.posts == len(above) and found.precision == pytest.approx(np.mean(above))
        assert found.precision >= 0.8
        lower = sorted({c for c, _ in picked if c < found.confidence})
        for c in lower:  # every lower threshold misses the target
            assert np.mean([ok for cc, ok in picked if cc >= c]) < 0.8


def test_filters_and_edge_cases(desk) -> None:  # type: ignore[no-untyped-def]
    humans, models, *_ = _world(desk, n=60, seed=7)
    lead = account(desk, "lead")
    with desk.sessions() as session:
        weibo = accuracy(session, lead, MetricFilter(source="weibo"))
        assert weibo.n == sum(1 for i in range(60) if i % 3)
        fraud = accuracy(session, lead, MetricFilter(category="fraud_spam"))
        assert fraud.n == humans.count("fraud_spam")
        # one class only (every human label is fraud_spam): no ROC-AUC, still precision and recall
        assert fraud.binary.auc is None and fraud.binary.fn + fraud.binary.tp == fraud.n
        early = accuracy(session, lead, MetricFilter(until=T0 + timedelta(hours=10)))
        assert early.n == 10
        nothing = accuracy(session, lead, MetricFilter(model_id="no such model"))
        assert nothing.n == 0 and nothing.ece is None and nothing.categories == []
        with pytest.raises(PermissionDenied):
            accuracy(session, account(desk, "moderator"))
    assert set(load_policy().ids) >= set(CATEGORIES)


def test_agreement_matches_scikit_learn_statsmodels_and_krippendorff(desk) -> None:  # type: ignore[no-untyped-def]
    import krippendorff
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    humans, *_ = _world(desk, n=400, seed=11)
    with desk.sessions() as session:
        report = agreement(session, account(desk, "lead"))
        rows = session.execute(
            text(
                "SELECT e.post_id, u.username, e.label_category "
                "FROM review_event e JOIN app_user u ON u.id = e.user_id "
                "WHERE e.id IN (SELECT max(id) FROM review_event WHERE action IN ('confirm', 'overturn') "
                "GROUP BY post_id, user_id) AND e.post_id IN (SELECT id FROM post WHERE status = 'decided')"
            )
        ).all()
        final = session.execute(  # the final label of each decided post, beside the verdict shown
            text(
                "SELECT u.username, e.label_category, v.parse_status = 'ok', "
                "CASE WHEN v.violation THEN v.category ELSE 'none' END "
                "FROM review_event e JOIN app_user u ON u.id = e.user_id JOIN verdict v ON v.id = e.verdict_id "
                "WHERE e.id IN (SELECT max(id) FROM review_event WHERE action IN ('confirm', 'overturn') "
                "GROUP BY post_id) AND e.post_id IN (SELECT id FROM post WHERE status = 'decided')"
            )
        ).all()
    given: dict[int, dict[str, str]] = {}
    for post_id, user, category in rows:
        given.setdefault(post_id, {})[user] = category
    shared = {p: by for p, by in given.items() if len(by) > 1}
    assert report.posts == len(shared) == 40  # every tenth post; every twentieth has three raters

    for pair in report.pairs:
        both = [(by[pair.first], by[pair.second]) for by in shared.values() if pair.first in by and pair.second in by]
        assert pair.posts == len(both)
        expected = cohen_kappa_score([a for a, _ in both], [b for _, b in both])
        assert pair.kappa == pytest.approx(expected), (pair.first, pair.second)

    names = sorted({c for by in shared.values() for c in by.values()})
    two = [[by[u] for u in sorted(by)] for by in shared.values() if len(by) == report.fleiss_raters]
    table, _ = aggregate_raters(np.array([[names.index(c) for c in item] for item in two]), n_cat=len(names))
    assert report.fleiss_raters == 2 and report.fleiss_posts == len(two) == 20
    assert report.fleiss_kappa == pytest.approx(fleiss_kappa(table))

    people = sorted({u for by in shared.values() for u in by})
    matrix = [[names.index(by[u]) if u in by else np.nan for by in shared.values()] for u in people]
    expected_alpha = krippendorff.alpha(reliability_data=np.array(matrix, dtype=float), level_of_measurement="nominal")
    assert report.krippendorff_alpha == pytest.approx(expected_alpha)

    # each person's agreement with the majority, and the categories argued over most
    by_name = {r.username: r for r in report.raters}
    assert set(by_name) == {"moderator", "other", "third"}
    for name, rater in by_name.items():  # against the strict majority of the others on each post
        verdicts = [
            by[name] == modes[0]
            for by in shared.values()
            if name in by and len(modes := multimode([v for u, v in by.items() if u != name])) == 1
        ]
        assert rater.with_consensus == len(verdicts) and rater.agrees_with_consensus == pytest.approx(np.mean(verdicts))
        assert rater.decisions == sum(1 for user, *_ in final if user == name)  # failed verdicts too
        mine = [(human, model) for user, human, usable, model in final if user == name and usable]
        assert rater.overturn_rate == pytest.approx(np.mean([h != m for h, m in mine]) if mine else 0.0)
    disputed = dict((c, share) for c, _, share in report.disputed)
    assert disputed["hate_harassment"] == pytest.approx(
        np.mean([len(set(by.values())) > 1 for by in shared.values() if "hate_harassment" in by.values()])
    )


def test_breakdowns_match_scikit_learn_per_slice(desk) -> None:  # type: ignore[no-untyped-def]
    """Per source, per week and per day: the numbers of the slice's own posts, as scikit-learn
    computes them; weeks keyed by their Monday (UTC), days by the UTC date of the decision."""
    from review.metrics import breakdown, slices

    humans, models, *_ = _world(desk, n=150, seed=13)
    lead = account(desk, "lead")
    # _world: post i is decided at T0 + i hours + 2 minutes (its last decision), from weibo unless i % 3 == 0
    decided = [T0 + timedelta(hours=i, minutes=2) for i in range(150)]
    keys = {
        "source": ["douyin" if i % 3 == 0 else "weibo" for i in range(150)],
        "day": [d.date().isoformat() for d in decided],
        "week": [(d.date() - timedelta(days=d.weekday())).isoformat() for d in decided],
    }
    with desk.sessions() as session:
        got = {"source": slices(session, lead, MetricFilter())["source"]}
        got["day"] = breakdown(session, lead, MetricFilter(), "day")
        got["week"] = breakdown(session, lead, MetricFilter(), "week")
        assert [s.key for s in slices(session, lead, MetricFilter())["model_id"]] == ["m"]
    for by, rows in got.items():
        assert [s.key for s in rows] == sorted(set(keys[by])), by
        for s in rows:
            idx = [i for i, k in enumerate(keys[by]) if k == s.key]
            y_true = [humans[i] != "none" for i in idx]
            y_pred = [models[i] != "none" for i in idx]
            p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="binary", zero_division=0)
            assert s.binary.n == len(idx)
            assert (s.binary.precision, s.binary.recall, s.binary.f1) == pytest.approx((p, r, f)), (by, s.key)
            h, m = [humans[i] for i in idx], [models[i] for i in idx]
            labels_ = sorted(set(h) | set(m))
            _, _, macro, _ = precision_recall_fscore_support(h, m, labels=labels_, average="macro", zero_division=0)
            assert s.macro_f1 == pytest.approx(macro) and s.category_accuracy == pytest.approx(
                np.mean(np.array(h) == np.array(m))
            )


def test_operations_match_a_plain_count(desk) -> None:  # type: ignore[no-untyped-def]
    """Activity numbers against numpy / statistics over the raw rows: decisions and escalations
    per day and moderator, lower-median handling time in whole seconds, latency percentiles
    (nearest rank on 10 ms steps, cache hits excluded), cache hits, failures, and the backlog at
    the end of each day computed post by post."""
    from statistics import median_low

    from review.metrics import LATENCY_STEP_MS, operations

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
        ops = operations(session, account(desk, "lead"), now=now)

    by_day = {d.day: d for d in ops.days}
    for day in sorted({d for d, *_ in events}):
        todays = [e for e in events if e[0] == day]
        assert by_day[day].decisions == sum(1 for e in todays if e[2] != "escalate")
        assert by_day[day].escalations == sum(1 for e in todays if e[2] == "escalate")
        assert by_day[day].median_handling_s == median_low([e[3] for e in todays])
    for m in ops.moderators:
        mine = [e for e in events if e[1] == m.username]
        assert m.decisions == sum(1 for e in mine if e[2] != "escalate")
        assert m.median_handling_s == median_low([e[3] for e in mine])
        assert m.days_active == len({e[0] for e in mine})
    for row in ops.models:
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

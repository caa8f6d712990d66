"""review/metrics/accuracy.py, the model against the humans, checked against independent references
on the same labels: scikit-learn for precision / recall / F1, the confusion matrix and ROC-AUC,
numpy for calibration; on SQLite and Postgres. Edge cases: a category nobody predicted, one class
only, ties in confidence, posts with three decisions (the latest label counts), a reopened post, a
model failure, a later re-score.

ROC-AUC and threshold advice rank confidences exactly as stored, checked against scikit-learn on
the raw scores: saturated probabilities, scores 1e-12 apart, real ties, and one class only. A
confidence rounded before ranking (as the desk once did to 0.001) turns saturated scores into ties
and gives a different AUC, so each of those cases fails then."""

from __future__ import annotations

import random
from datetime import timedelta

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score

from db.models import Post, PostLabel
from review import labels
from review.auth import PermissionDenied
from review.metrics.accuracy import CALIBRATION_BINS, Accuracy, Scores, accuracy, accuracy_from, threshold_for
from review.metrics.filters import MetricFilter
from review.policy import load_policy
from tests.conftest import account
from tests.factories import CATEGORIES, T0, add_decision, add_verdict, metrics_world


def test_accuracy_matches_scikit_learn(desk) -> None:
    humans, models, p_violation, confidences, correct = metrics_world(desk)
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


def test_thresholds_keep_the_target_precision(desk) -> None:
    humans, models, _, confidences, _ = metrics_world(desk, n=200, seed=5)
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


def test_filters_and_edge_cases(desk) -> None:
    humans, models, *_ = metrics_world(desk, n=60, seed=7)
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


def test_breakdowns_match_scikit_learn_per_slice(desk) -> None:
    """Per source, per week and per day: the numbers of the slice's own posts, as scikit-learn
    computes them; weeks keyed by their Monday (UTC), days by the UTC date of the decision."""
    from review.metrics.accuracy import breakdown, slices

    humans, models, *_ = metrics_world(desk, n=150, seed=13)
    lead = account(desk, "lead")
    # metrics_world: post i is decided at T0 + i hours + 2 minutes (its last decision), from weibo unless i % 3 == 0
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


def _desk_with(desk, cases: list[tuple[float, bool, bool]]) -> None:
    """One decided post per (confidence, model says violation, human says violation)."""
    mod = account(desk, "moderator")
    with desk.sessions() as session, session.begin():
        for i, (confidence, model_v, human_v) in enumerate(cases):
            post = Post(source="weibo", external_id=f"x{i}", text="t", status="decided")
            session.add(post)
            session.flush()
            shown = add_verdict(session, post.id, "fraud_spam" if model_v else "none", confidence)
            label = "fraud_spam" if human_v else "none"
            add_decision(session, post.id, mod.id, shown, label, T0 + timedelta(seconds=i))
        labels.rebuild(session)


def _reference(cases: list[tuple[float, bool, bool]]) -> float:
    y = [h for _, _, h in cases]
    p = [c if m else 1.0 - c for c, m, _ in cases]
    return float(roc_auc_score(y, p))


def _saturated(rng: random.Random, n: int) -> list[tuple[float, bool, bool]]:
    """Softmax-like confidences: most within 1e-9 … 1e-3 of 0 or 1, right about 80 % of the time."""
    out = []
    for _ in range(n):
        human = rng.random() < 0.4
        model = human if rng.random() < 0.8 else not human
        confidence = 1.0 - 10 ** rng.uniform(-9, -3) if rng.random() < 0.7 else 10 ** rng.uniform(-9, -3)
        out.append((confidence, model, human))
    return out


def _auc(desk) -> float | None:
    with desk.sessions() as session:
        return accuracy(session, account(desk, "lead")).binary.auc


def test_saturated_probabilities(desk) -> None:
    cases = _saturated(random.Random(1), 300)
    cases += [(1e-9, False, True), (1 - 1e-9, True, True), (1e-9, True, False), (1 - 1e-9, False, False)]
    _desk_with(desk, cases)
    found = _auc(desk)
    assert found == pytest.approx(_reference(cases), abs=1e-12)
    # rounding to 0.001 would have made nearly all of them ties: a visibly different number
    rounded = [(round(c, 3), m, h) for c, m, h in cases]
    assert abs(_reference(rounded) - found) > 0.01


def test_scores_1e12_apart_and_real_ties(desk) -> None:
    base = 0.5
    cases = [(base + k * 1e-12, True, k % 3 != 0) for k in range(40)]  # distinct, 1e-12 apart
    cases += [(0.9, True, True)] * 5 + [(0.9, True, False)] * 3  # a real tie across the classes
    cases += [(0.1, False, False)] * 4 + [(0.9, False, True)] * 2  # P(violation) 0.9 and 0.1: ties again
    _desk_with(desk, cases)
    assert _auc(desk) == pytest.approx(_reference(cases), abs=1e-12)


def test_one_class_only_has_no_auc(desk) -> None:
    _desk_with(desk, [(1 - 1e-9, True, True), (1e-9, False, True), (0.7, True, True)])
    assert _auc(desk) is None


def test_exact_confidence_reaches_post_label(desk) -> None:
    """What the metrics rank is the stored double, not a rounded copy (both databases)."""
    values = [1e-9, 1 - 1e-9, 0.5 + 1e-12, 0.5 + 2e-12]
    _desk_with(desk, [(v, True, True) for v in values])
    with desk.sessions() as session:
        stored = sorted(session.scalars(PostLabel.__table__.select().with_only_columns(PostLabel.confidence)))
    assert stored == sorted(values)


def _report(cases: list[tuple[float, bool, bool]]) -> Accuracy:
    rows = [(True, h, m, "fraud_spam" if h else "none", "fraud_spam" if m else "none", c, 1) for c, m, h in cases]
    return accuracy_from(rows)


def _reference_threshold(cases, target: float, violation: bool):
    """Brute force: every distinct confidence of that side, lowest first that keeps the target."""
    side = [(c, h == violation) for c, m, h in cases if m == violation]
    for c in sorted({c for c, _ in side}):
        kept = [ok for cc, ok in side if cc >= c]
        if np.mean(kept) >= target:
            return c, float(np.mean(kept)), len(kept)
    return None


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_thresholds_on_saturated_confidences(seed: int) -> None:
    rng = random.Random(seed)
    cases = _saturated(rng, 400) + [(0.5 + k * 1e-12, True, k % 2 == 0) for k in range(20)]
    report = _report(cases)
    for violation in (True, False):
        for target in (0.5, 0.8, 0.9, 0.95, 0.99):
            found = threshold_for(report, target, violation=violation)
            expected = _reference_threshold(cases, target, violation)
            if expected is None:
                assert found is None
                continue
            assert found is not None
            assert (found.confidence, found.posts) == (expected[0], expected[2])
            assert found.precision == pytest.approx(expected[1])
            assert found.share == pytest.approx(expected[2] / len(cases))


def test_threshold_distinguishes_values_rounding_would_merge() -> None:
    # 0.9999 and 0.99995 both round to 1.000: only exact ranking finds that the higher one keeps 100 %
    cases = [(0.99995, True, True)] * 9 + [(0.9999, True, False)] * 3
    found = threshold_for(_report(cases), 0.95, violation=True)
    assert found is not None and found.confidence == 0.99995 and found.posts == 9 and found.precision == 1.0


def test_empty_report_has_no_threshold_and_no_auc() -> None:
    report = accuracy_from([])
    assert report.binary.auc is None and report.calibration == [] and report.ece is None
    assert threshold_for(report, 0.9, violation=True) is None
    assert len(Scores.of([]).confidence) == 0


def test_many_distinct_confidences() -> None:
    rng = np.random.default_rng(0)
    n = 200_000
    human = rng.random(n) < 0.3
    p = np.clip(np.where(human, rng.beta(5, 1, n), rng.beta(1, 5, n)), 1e-12, 1 - 1e-12)
    model = p >= 0.5
    confidence = np.where(model, p, 1 - p)
    rows = [(True, bool(h), bool(m), "fraud_spam" if h else "none", "fraud_spam" if m else "none", float(c), 1)
            for h, m, c in zip(human, model, confidence, strict=True)]  # fmt: skip
    report = accuracy_from(rows)
    assert report.binary.auc == pytest.approx(roc_auc_score(human, np.where(model, confidence, 1 - confidence)))

"""ROC-AUC and threshold advice rank confidences exactly as stored, checked against scikit-learn
on the raw scores, on SQLite and Postgres: saturated probabilities, scores 1e-12 apart, real
ties, and one class only. A confidence rounded before ranking (as the desk once did to 0.001)
turns saturated scores into ties and gives a different AUC, so each case below fails then."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from db.models import Post, PostLabel
from review import labels
from review.metrics import Accuracy, Scores, accuracy, accuracy_from, threshold_for
from tests.conftest import account
from tests.test_metrics import _decision, _verdict

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _desk_with(desk, cases: list[tuple[float, bool, bool]]) -> None:  # type: ignore[no-untyped-def]
    """One decided post per (confidence, model says violation, human says violation)."""
    mod = account(desk, "moderator")
    with desk.sessions() as session, session.begin():
        for i, (confidence, model_v, human_v) in enumerate(cases):
            post = Post(source="weibo", external_id=f"x{i}", text="t", status="decided")
            session.add(post)
            session.flush()
            shown = _verdict(session, post.id, "fraud_spam" if model_v else "none", confidence)
            _decision(session, post.id, mod.id, shown, "fraud_spam" if human_v else "none", T0 + timedelta(seconds=i))
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


def _auc(desk) -> float | None:  # type: ignore[no-untyped-def]
    with desk.sessions() as session:
        return accuracy(session, account(desk, "lead")).binary.auc


def test_saturated_probabilities(desk) -> None:  # type: ignore[no-untyped-def]
    cases = _saturated(random.Random(1), 300)
    cases += [(1e-9, False, True), (1 - 1e-9, True, True), (1e-9, True, False), (1 - 1e-9, False, False)]
    _desk_with(desk, cases)
    found = _auc(desk)
    assert found == pytest.approx(_reference(cases), abs=1e-12)
    # rounding to 0.001 would have made nearly all of them ties: a visibly different number
    rounded = [(round(c, 3), m, h) for c, m, h in cases]
    assert abs(_reference(rounded) - found) > 0.01


def test_scores_1e12_apart_and_real_ties(desk) -> None:  # type: ignore[no-untyped-def]
    base = 0.5
    cases = [(base + k * 1e-12, True, k % 3 != 0) for k in range(40)]  # distinct, 1e-12 apart
    cases += [(0.9, True, True)] * 5 + [(0.9, True, False)] * 3  # a real tie across the classes
    cases += [(0.1, False, False)] * 4 + [(0.9, False, True)] * 2  # P(violation) 0.9 and 0.1: ties again
    _desk_with(desk, cases)
    assert _auc(desk) == pytest.approx(_reference(cases), abs=1e-12)


def test_one_class_only_has_no_auc(desk) -> None:  # type: ignore[no-untyped-def]
    _desk_with(desk, [(1 - 1e-9, True, True), (1e-9, False, True), (0.7, True, True)])
    assert _auc(desk) is None


def test_exact_confidence_reaches_post_label(desk) -> None:  # type: ignore[no-untyped-def]
    """What the metrics rank is the stored double, not a rounded copy (both databases)."""
    values = [1e-9, 1 - 1e-9, 0.5 + 1e-12, 0.5 + 2e-12]
    _desk_with(desk, [(v, True, True) for v in values])
    with desk.sessions() as session:
        stored = sorted(session.scalars(PostLabel.__table__.select().with_only_columns(PostLabel.confidence)))
    assert stored == sorted(values)


def _report(cases: list[tuple[float, bool, bool]]) -> Accuracy:
    rows = [(True, h, m, "fraud_spam" if h else "none", "fraud_spam" if m else "none", c, 1) for c, m, h in cases]
    return accuracy_from(rows)


def _reference_threshold(cases, target: float, violation: bool):  # type: ignore[no-untyped-def]
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

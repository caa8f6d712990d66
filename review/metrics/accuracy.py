"""How good is the model: the Accuracy page's numbers (and ``python -m review report``'s
accuracy section), computed in SQL where they can be.

A settled post (status ``decided`` or ``second_review``: not reopened) counts once, with its
latest human label against the verdict that was on screen for that decision, never a later
re-score. Both come from ``post_label`` (review/labels.py), one narrow row per settled post, so
the accuracy numbers are GROUP BYs over one table, under review/metrics/filters.py's filter.
Verdicts the model failed to give (parse failures, errors) are counted apart: they have nothing
to compare.

The database returns grouped tables — confusion cells, counts per exact confidence value, per
period or slice — and the metrics are computed from those here. ROC-AUC and the threshold advice
rank the confidences exactly as stored: models emit saturated probabilities (1e-9, 0.999999) and
rounding them would turn most of them into ties. Only the calibration chart bins them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, cast

import numpy as np
from sqlalchemy import func
from sqlalchemy.orm import Session

from db.models import LABEL_CELLS, LABEL_SLICES, Post, PostLabel, ReviewEvent, User
from review.auth import Actor, Permission, require_live
from review.errors import ReviewError
from review.metrics import ratio
from review.metrics.filters import NO_FILTER, MetricFilter, labelled
from review.text import shown

CALIBRATION_BINS = 10


@dataclass(frozen=True)
class Binary:
    """Violation yes/no: the model's verdict against the human label."""

    tp: int
    fp: int
    fn: int
    tn: int
    auc: float | None  # ROC-AUC of the model's P(violation); None with one class only

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float:
        return ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        return _f1(self.precision, self.recall)

    @property
    def accuracy(self) -> float:
        return ratio(self.tp + self.tn, self.n)


@dataclass(frozen=True)
class CategoryScores:
    category: str
    precision: float
    recall: float
    f1: float
    support: int  # posts the humans put in this category
    predicted: int  # posts the model put in it


SCORE_FIELDS = [("confidence", "f8"), ("model_violation", "?"), ("human_violation", "?"), ("right", "?"),
                ("posts", "i8")]  # fmt: skip


@dataclass(frozen=True)
class Scores:
    """Posts per exact (confidence, model says violation, human says violation, category right),
    as parallel arrays: a million distinct confidences fit, and ranking them is a sort."""

    confidence: np.ndarray  # float64, as stored
    model_violation: np.ndarray  # bool
    human_violation: np.ndarray  # bool
    right: np.ndarray  # bool: the model's category is the human's
    posts: np.ndarray  # int64

    @classmethod
    def of(cls, rows: Iterable[tuple[float, bool, bool, bool, int]]) -> Scores:
        """From an iterable of (confidence, model violation, human violation, right, posts)."""
        table = np.fromiter(rows, dtype=SCORE_FIELDS)
        return cls(*(table[name] for name, _ in SCORE_FIELDS))

    def p_violation(self) -> np.ndarray:
        """The model's probability of a violation: its confidence when it said violation, one
        minus it when it said no."""
        return np.where(self.model_violation, self.confidence, 1.0 - self.confidence)


@dataclass
class Accuracy:
    binary: Binary
    confusion: dict[tuple[str, str], int]  # (human category, model category) → posts
    categories: list[CategoryScores]
    macro_f1: float
    micro_f1: float
    calibration: list[tuple[int, int, float, float]]  # (bin, posts, mean confidence, share correct)
    ece: float | None  # expected calibration error over the bins
    model_failures: int  # decided posts whose on-screen verdict was a failure
    scores: Scores = field(repr=False)  # the thresholds' input

    @property
    def n(self) -> int:
        return self.binary.n


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def _tally(rows: Iterable[Sequence[Any]]) -> tuple[Binary, dict[tuple[str, str], int]]:
    """Binary counts and the confusion matrix from grouped rows of
    (human says violation, model says violation, human category, model category, posts)."""
    counts = Counter[tuple[bool, bool]]()
    confusion: Counter[tuple[str, str]] = Counter()
    for human_v, model_v, human_c, model_c, n in rows:
        counts[(bool(human_v), bool(model_v))] += n
        confusion[(human_c, model_c)] += n
    binary = Binary(counts[(True, True)], counts[(False, True)], counts[(True, False)], counts[(False, False)], None)
    return binary, dict(confusion)


CELLS = tuple(getattr(PostLabel, c) for c in LABEL_CELLS)  # (usable, human and model violation and category)


def accuracy(session: Session, actor: Actor, flt: MetricFilter = NO_FILTER) -> Accuracy:
    """The accuracy page's headline numbers, categories, confusion matrix, calibration and
    threshold inputs for the settled posts under ``flt``: two GROUP BYs read in order from the
    ix_post_label_cells index, one per confusion cell, one per cell and exact confidence (close
    to a row per post when the confidences are all distinct, as saturated ones are)."""
    require_live(session, actor, Permission.METRICS)
    cells = session.execute(labelled(flt).add_columns(*CELLS, func.count()).group_by(*CELLS)).all()
    label = PostLabel
    scored = (
        labelled(flt)
        .add_columns(
            label.confidence,
            label.model_violation,
            label.human_violation,
            label.human_category == label.model_category,
            func.count(),
        )  # fmt: skip
        .where(label.usable.is_(True), label.confidence.is_not(None))
        .group_by(*CELLS, label.confidence)
    )
    # read straight off the DBAPI cursor: plain tuples, where a million Row objects would cost
    # more than the query itself
    cursor = cast(Iterable[tuple[float, bool, bool, bool, int]], session.connection().execute(scored).cursor)
    return _accuracy(cells, Scores.of(cursor))


def accuracy_from(rows: Sequence[Sequence[Any]]) -> Accuracy:
    """The accuracy numbers from rows of (usable, human violation, model violation, human
    category, model category, confidence, posts), one per example when a model is evaluated on
    an export (review/evaluate.py)."""
    cells = Counter[tuple]()
    for usable, hv, mv, hc, mc, _, n in rows:
        cells[(usable, hv, mv, hc, mc)] += n
    scores = Scores.of(
        (float(conf), bool(mv), bool(hv), hc == mc, n) for usable, hv, mv, hc, mc, conf, n in rows
        if usable and conf is not None
    )  # fmt: skip
    return _accuracy([(*cell, n) for cell, n in cells.items()], scores)


def _accuracy(cells: Sequence[Sequence[Any]], scores: Scores) -> Accuracy:
    """From rows of (usable, human violation, model violation, human category, model category,
    posts) and the usable verdicts' exact confidences."""
    failures = sum(n for usable, *_, n in cells if not usable)
    binary, confusion = _tally([cell[1:] for cell in cells if cell[0]])
    binary = replace(binary, auc=_auc(scores.p_violation(), scores.human_violation, scores.posts))
    calibration = _calibration(scores.confidence, scores.right, scores.posts)
    counted = sum(n for _, n, _, _ in calibration)
    ece = sum(n / counted * abs(acc - conf) for _, n, conf, acc in calibration) if counted else None
    categories = _category_scores(confusion)
    return Accuracy(
        binary=binary,
        confusion=confusion,
        categories=categories,
        macro_f1=_macro_f1(categories),
        micro_f1=_micro_f1(confusion),
        calibration=calibration,
        ece=ece,
        model_failures=failures,
        scores=scores,
    )


def _macro_f1(categories: list[CategoryScores]) -> float:
    present = [c for c in categories if c.support or c.predicted]
    return sum(c.f1 for c in present) / len(present) if present else 0.0


def _micro_f1(confusion: dict[tuple[str, str], int]) -> float:
    # with one label per post, micro-averaged F1 equals the share of posts in the right category
    return ratio(sum(n for (h, m), n in confusion.items() if h == m), sum(confusion.values()))


# ---------------------------------------------------------------------------------------------
# Slices and trends: the same numbers per model, prompt version, provider, the precision the
# model ran in, source or period

GROUPINGS = LABEL_SLICES  # in the order of the slices index, which the GROUP BY reads without a sort
PERIODS = ("day", "week")
# The slice of the rows without a value: the precision of the rules, of a server's model and of verdicts before 0011.
NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class Slice:
    key: str  # the model id, source… (or NOT_RECORDED) or the first day of the period (YYYY-MM-DD, UTC)
    binary: Binary  # without AUC
    macro_f1: float
    category_accuracy: float  # share of posts whose category the model got right (= micro F1)


def monday(day: str) -> str:
    """The Monday of a YYYY-MM-DD day's week (ISO weeks, as Postgres' date_trunc('week'))."""
    d = date.fromisoformat(day)
    return (d - timedelta(days=d.weekday())).isoformat()


def breakdown(session: Session, actor: Actor, flt: MetricFilter, by: str) -> list[Slice]:
    """The accuracy numbers per value of ``by``, in key order: a period of the decision time
    (day, week: UTC, a week keyed by its Monday) or a grouping (model_id, prompt_version,
    provider, model_precision, source). One GROUP BY, read in order from the days or the slices index."""
    if by in PERIODS:
        require_live(session, actor, Permission.METRICS)
        grouped = (PostLabel.decided_day, *CELLS)
        query = labelled(flt, by_day=True).add_columns(*grouped, func.count()).group_by(*grouped)
        rows = session.execute(query).all()
        to_key = monday if by == "week" else str
        return _slices([(to_key(day), cell) for day, usable, *cell in rows if usable])
    if by in GROUPINGS:
        return slices(session, actor, flt)[by]
    raise ReviewError(f"unknown breakdown {by!r}: use one of {', '.join(PERIODS + GROUPINGS)}")


def slices(session: Session, actor: Actor, flt: MetricFilter) -> dict[str, list[Slice]]:
    """The accuracy numbers per model id, prompt version, provider, model precision and source, from
    one GROUP BY; a value not recorded (a verdict's precision: None) is the slice NOT_RECORDED."""
    require_live(session, actor, Permission.METRICS)
    keys = tuple(getattr(PostLabel, g) for g in GROUPINGS)
    grouped = (*keys, *CELLS)
    rows = session.execute(labelled(flt).add_columns(*grouped, func.count()).group_by(*grouped)).all()
    out = {}
    for i, g in enumerate(GROUPINGS):
        out[g] = _slices([(_key(row[i]), row[len(keys) + 1 :]) for row in rows if row[len(keys)]])
    return out


def _key(value: object) -> str:
    return NOT_RECORDED if value is None else str(value)


def _slices(keyed: list[tuple[str, Sequence[Any]]]) -> list[Slice]:
    grouped: dict[str, list[Sequence[Any]]] = {}
    for key, cell in keyed:
        grouped.setdefault(key, []).append(cell)
    out = []
    for key in sorted(grouped):
        binary, confusion = _tally(grouped[key])
        out.append(Slice(key, binary, _macro_f1(_category_scores(confusion)), _micro_f1(confusion)))
    return out


def _category_scores(confusion: dict[tuple[str, str], int]) -> list[CategoryScores]:
    names = sorted({h for h, _ in confusion} | {m for _, m in confusion})
    out = []
    for name in names:
        tp = confusion.get((name, name), 0)
        support = sum(n for (h, _), n in confusion.items() if h == name)
        predicted = sum(n for (_, m), n in confusion.items() if m == name)
        p, r = ratio(tp, predicted), ratio(tp, support)
        out.append(CategoryScores(name, p, r, _f1(p, r), support, predicted))
    return out


def _calibration(confidence: np.ndarray, right: np.ndarray, posts: np.ndarray) -> list[tuple[int, int, float, float]]:
    """(bin, posts, mean confidence, share with the right category) per tenth of confidence
    that holds posts; a confidence of 1.0 goes to the last bin."""
    bins = np.minimum((confidence * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    n = np.bincount(bins, weights=posts, minlength=CALIBRATION_BINS)
    total = np.bincount(bins, weights=confidence * posts, minlength=CALIBRATION_BINS)
    hits = np.bincount(bins, weights=posts * right, minlength=CALIBRATION_BINS)
    return [(b, int(n[b]), total[b] / n[b], hits[b] / n[b]) for b in range(CALIBRATION_BINS) if n[b]]


def _auc(score: np.ndarray, positive: np.ndarray, posts: np.ndarray) -> float | None:
    """ROC-AUC of exact scores, each with its label and number of posts: the chance that a
    positive outscores a negative, equal scores counting half (the Mann-Whitney statistic, as
    roc_auc_score computes it). None with one class only."""
    pos = np.where(positive, posts, 0)
    neg = np.where(positive, 0, posts)
    positives, negatives = int(pos.sum()), int(neg.sum())
    if not positives or not negatives:
        return None
    order = np.argsort(score, kind="stable")
    starts, pos_at, neg_at = _runs(score[order], pos[order], neg[order])
    below = np.cumsum(neg_at) - neg_at  # negatives with a strictly lower score
    twice_wins = int((pos_at * (2 * below + neg_at)).sum())  # integers: exact at any size
    return twice_wins / (2 * positives * negatives)


def _runs(sorted_values: np.ndarray, *counts: np.ndarray) -> tuple[np.ndarray, ...]:
    """The first index of each run of equal values in ``sorted_values``, and each of ``counts``
    summed over the run."""
    if not len(sorted_values):
        return (np.zeros(0, dtype=np.int64), *(np.zeros(0, dtype=np.int64) for _ in counts))
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    return (starts, *(np.add.reduceat(c, starts) for c in counts))


@dataclass(frozen=True)
class Threshold:
    confidence: float  # act automatically on verdicts at or above this confidence
    precision: float  # share of those the humans agreed with
    posts: int  # how many of the decided posts it would have handled
    share: float  # of all decided posts with a verdict


def threshold_for(report: Accuracy, target: float, *, violation: bool) -> Threshold | None:
    """The lowest confidence from which acting on the model alone (auto-remove its violations
    when ``violation``, auto-approve its "no violation" otherwise) keeps the humans' agreement
    at ``target`` or more, counting every verdict at or above it; None if no confidence does.
    Confidences are compared exactly as stored."""
    s = report.scores
    total = int(s.posts.sum())
    side = s.model_violation == violation
    confidence, posts = s.confidence[side], s.posts[side]
    agreed = np.where(s.human_violation[side] == violation, posts, 0)
    order = np.argsort(-confidence, kind="stable")  # highest first
    ranked = confidence[order]
    starts, handled_at, agreed_at = _runs(ranked, posts[order], agreed[order])
    handled, kept = np.cumsum(handled_at), np.cumsum(agreed_at)  # at or above each distinct value
    ok = np.flatnonzero((handled > 0) & (kept / np.maximum(handled, 1) >= target))
    if not len(ok):
        return None
    i = ok[-1]  # the lowest confidence that keeps the target
    n = int(handled[i])
    return Threshold(float(ranked[starts[i]]), int(kept[i]) / n, n, ratio(n, total))


# ---------------------------------------------------------------------------------------------
# Drill-down: the posts behind a confusion cell


@dataclass(frozen=True)
class CellPost:
    post_id: int
    source: str
    decided_at: datetime
    decided_by: str | None
    action: str
    confidence: float | None
    text: str  # the start of the post's text (untrusted: show as plain text)


def cell_posts(
    session: Session, actor: Actor, flt: MetricFilter, human: str, model: str, limit: int = 200
) -> list[CellPost]:
    """The settled posts behind one confusion cell (human category, model category), latest
    decision first."""
    require_live(session, actor, Permission.METRICS)
    rows = session.execute(
        labelled(flt)
        .add_columns(
            Post.id,
            Post.source,
            PostLabel.decided_at,
            User.username,
            ReviewEvent.action,
            PostLabel.confidence,
            func.substr(Post.text, 1, 160),
        )
        .join(Post, Post.id == PostLabel.post_id)
        .join(ReviewEvent, ReviewEvent.id == PostLabel.event_id)
        .outerjoin(User, User.id == PostLabel.decided_by_id)
        .where(PostLabel.usable, PostLabel.human_category == human, PostLabel.model_category == model)
        .order_by(PostLabel.decided_at.desc(), PostLabel.post_id.desc())
        .limit(limit)
    ).all()
    return [CellPost(*row) for row in rows]


CELL_PARAMS = ("human", "model")  # a confusion cell in a link: ?human=<category>&model=<category>


def cell_from_params(
    params: Mapping[str, str | list[str]], names: Collection[str]
) -> tuple[tuple[str, str] | None, list[str]]:
    """The confusion cell a link names (both categories among ``names``, the matrix's), or None,
    and one line per parameter left out, so that a page can say what it ignored."""
    given = {p: params[p] for p in CELL_PARAMS if p in params}
    if not given:
        return None, []
    values = {p: v[-1] if isinstance(v, list) else v for p, v in given.items()}  # a name given twice: the last
    problems = [
        f"Ignored {p}={shown(v)[:40]} in the link: no decided post has that category under these filters."
        for p, v in values.items()
        if v not in names
    ]
    if problems:
        return None, problems
    if len(values) < len(CELL_PARAMS):
        return None, ["Ignored the confusion cell in the link: it needs both human= and model=."]
    return (values["human"], values["model"]), []

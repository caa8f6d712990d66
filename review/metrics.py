"""How good is the model, do the moderators agree, is the queue under control: the numbers of
the lead pages and ``python -m review report``, computed in SQL where they can be.

A settled post (status ``decided`` or ``second_review``: not reopened) counts once, with its
latest human label against the verdict that was on screen for that decision, never a later
re-score. Both come from ``post_label`` (review/labels.py), one narrow row per settled post, so
the accuracy numbers are GROUP BYs over one table. Verdicts the model failed to give (parse
failures, errors) are counted apart: they have nothing to compare.

The database returns grouped tables — confusion cells, counts per exact confidence value, per
period or slice — and the metrics are computed from those here. ROC-AUC and the threshold advice
rank the confidences exactly as stored: models emit saturated probabilities (1e-9, 0.999999) and
rounding them would turn most of them into ties. Only the calibration chart bins them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
from sqlalchemy import Select, and_, case, func, select, true
from sqlalchemy.orm import Session

from db.models import LABEL_CELLS, LIVE_POST, EventAction, Post, PostLabel, PostStatus, ReviewEvent, Verdict
from review.auth import Actor, Permission, require_live
from review.errors import ReviewError
from review.labels import SETTLED, standing_decisions, utc_day
from review.verdicts import usable_sql

CALIBRATION_BINS = 10


@dataclass(frozen=True)
class MetricFilter:
    since: datetime | None = None  # decisions at or after
    until: datetime | None = None  # decisions before
    source: str | None = None
    category: str | None = None  # the human label's category ("none": no violation)
    model_id: str | None = None
    prompt_version: str | None = None


def _labelled(flt: MetricFilter, *, by_day: bool = False) -> Select:  # type: ignore[type-arg]
    """FROM/WHERE over post_label for the settled posts under ``flt``. ``by_day``: also bound the
    day (implied by the time) for the trend query, which reads the days index from that day on.
    The other queries leave it out on purpose: a full scan of their covering index, grouped in
    index order and filtered in it, beats seeking a day range and sorting what it finds."""
    conditions = []
    if flt.since is not None:
        conditions.append(PostLabel.decided_at >= flt.since)
        if by_day:
            conditions.append(PostLabel.decided_day >= _utc(flt.since).date().isoformat())
    if flt.until is not None:
        conditions.append(PostLabel.decided_at < flt.until)
        if by_day:
            conditions.append(PostLabel.decided_day <= _utc(flt.until).date().isoformat())
    if flt.source:
        conditions.append(PostLabel.source == flt.source)
    if flt.category:
        conditions.append(PostLabel.human_category == flt.category)
    if flt.model_id:
        conditions.append(PostLabel.model_id == flt.model_id)
    if flt.prompt_version:
        conditions.append(PostLabel.prompt_version == flt.prompt_version)
    return select().select_from(PostLabel).where(and_(true(), *conditions))


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
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        return _f1(self.precision, self.recall)

    @property
    def accuracy(self) -> float:
        return _ratio(self.tp + self.tn, self.n)


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
    def of(cls, rows) -> Scores:  # type: ignore[no-untyped-def]
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


def _ratio(a: int | float, b: int | float) -> float:
    return a / b if b else 0.0


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def _tally(rows) -> tuple[Binary, dict[tuple[str, str], int]]:  # type: ignore[no-untyped-def]
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


def accuracy(session: Session, actor: Actor, flt: MetricFilter = MetricFilter()) -> Accuracy:
    """The accuracy page's headline numbers, categories, confusion matrix, calibration and
    threshold inputs for the settled posts under ``flt``: two GROUP BYs read in order from the
    ix_post_label_cells index, one per confusion cell, one per cell and exact confidence (close
    to a row per post when the confidences are all distinct, as saturated ones are)."""
    require_live(session, actor, Permission.METRICS)
    cells = session.execute(_labelled(flt).add_columns(*CELLS, func.count()).group_by(*CELLS)).all()
    label = PostLabel
    scored = (
        _labelled(flt)
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
    return _accuracy(cells, Scores.of(session.connection().execute(scored).cursor))


def accuracy_from(rows) -> Accuracy:  # type: ignore[no-untyped-def]
    """The accuracy numbers from rows of (usable, human violation, model violation, human
    category, model category, confidence, posts), one per example when a model is evaluated on
    an export (review/evaluate.py)."""
    cells = Counter[tuple]()  # type: ignore[type-arg]
    for usable, hv, mv, hc, mc, _, n in rows:
        cells[(usable, hv, mv, hc, mc)] += n
    scores = Scores.of(
        (float(conf), bool(mv), bool(hv), hc == mc, n) for usable, hv, mv, hc, mc, conf, n in rows
        if usable and conf is not None
    )  # fmt: skip
    return _accuracy([(*cell, n) for cell, n in cells.items()], scores)


def _accuracy(cells, scores: Scores) -> Accuracy:  # type: ignore[no-untyped-def]
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
    return _ratio(sum(n for (h, m), n in confusion.items() if h == m), sum(confusion.values()))


# ---------------------------------------------------------------------------------------------
# Slices and trends: the same numbers per model, prompt version, provider, source or period

GROUPINGS = ("model_id", "prompt_version", "provider", "source")
PERIODS = ("day", "week")


@dataclass(frozen=True)
class Slice:
    key: str  # the model id, source… or the first day of the period (YYYY-MM-DD, UTC)
    binary: Binary  # without AUC
    macro_f1: float
    category_accuracy: float  # share of posts whose category the model got right (= micro F1)


def _day(session: Session, column):  # type: ignore[no-untyped-def]
    return utc_day(session.get_bind().dialect.name, column)


def monday(day: str) -> str:
    """The Monday of a YYYY-MM-DD day's week (ISO weeks, as Postgres' date_trunc('week'))."""
    d = date.fromisoformat(day)
    return (d - timedelta(days=d.weekday())).isoformat()


def breakdown(session: Session, actor: Actor, flt: MetricFilter, by: str) -> list[Slice]:
    """The accuracy numbers per value of ``by``, in key order: a period of the decision time
    (day, week: UTC, a week keyed by its Monday) or a grouping (model_id, prompt_version,
    provider, source). One GROUP BY, read in order from the days or the slices index."""
    if by in PERIODS:
        require_live(session, actor, Permission.METRICS)
        grouped = (PostLabel.decided_day, *CELLS)
        query = _labelled(flt, by_day=True).add_columns(*grouped, func.count()).group_by(*grouped)
        rows = session.execute(query).all()
        to_key = monday if by == "week" else str
        return _slices([(to_key(day), cell) for day, usable, *cell in rows if usable])
    if by in GROUPINGS:
        return slices(session, actor, flt)[by]
    raise ReviewError(f"unknown breakdown {by!r}: use one of {', '.join(PERIODS + GROUPINGS)}")


def slices(session: Session, actor: Actor, flt: MetricFilter) -> dict[str, list[Slice]]:
    """The accuracy numbers per model id, prompt version, provider and source, from one GROUP BY."""
    require_live(session, actor, Permission.METRICS)
    keys = tuple(getattr(PostLabel, g) for g in GROUPINGS)
    grouped = (*keys, *CELLS)
    rows = session.execute(_labelled(flt).add_columns(*grouped, func.count()).group_by(*grouped)).all()
    out = {}
    for i, g in enumerate(GROUPINGS):
        out[g] = _slices([(str(row[i]), row[len(keys) + 1 :]) for row in rows if row[len(keys)]])
    return out


def _slices(keyed: list[tuple[str, tuple]]) -> list[Slice]:  # type: ignore[type-arg]
    grouped: dict[str, list[tuple]] = {}  # type: ignore[type-arg]
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
        p, r = _ratio(tp, predicted), _ratio(tp, support)
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
    return Threshold(float(ranked[starts[i]]), int(kept[i]) / n, n, _ratio(n, total))


@dataclass(frozen=True)
class PairKappa:
    first: str
    second: str
    posts: int  # posts both labelled
    agreement: float  # share of those with the same category
    kappa: float | None  # Cohen's kappa; None when chance agreement is total (one category only)


@dataclass(frozen=True)
class RaterScores:
    username: str
    decisions: int  # settled posts under the filter whose final label is theirs
    overturn_rate: float  # share of those with a usable verdict where the label differs from it
    with_consensus: int  # multi-rated posts they labelled where the others' labels have a strict majority
    agrees_with_consensus: float  # share of those where their label is that majority's (with two raters: the other's)


@dataclass
class Agreement:
    posts: int  # posts with labels from at least two people
    pairs: list[PairKappa]
    fleiss_kappa: float | None  # over the posts with the most common number of raters
    fleiss_posts: int
    fleiss_raters: int
    krippendorff_alpha: float | None  # nominal, over every multi-rated post
    raters: list[RaterScores]
    disputed: list[tuple[str, int, float]]  # (category, multi-rated posts it was given on, share disputed)


def agreement(session: Session, actor: Actor, flt: MetricFilter = MetricFilter()) -> Agreement:
    """How far the humans agree with each other, on settled posts two or more people labelled
    (second reviews): each person's latest label per post."""
    from db.models import User

    require_live(session, actor, Permission.METRICS)
    shared = _labelled(flt).add_columns(PostLabel.post_id).where(PostLabel.raters > 1)
    latest_per_person = (
        select(func.max(ReviewEvent.id))
        .where(standing_decisions(), ReviewEvent.post_id.in_(shared))
        .group_by(ReviewEvent.post_id, ReviewEvent.user_id)
    )
    rows = session.execute(
        select(ReviewEvent.post_id, User.username, ReviewEvent.label_violation, ReviewEvent.label_category)
        .join(User, User.id == ReviewEvent.user_id)
        .where(ReviewEvent.id.in_(latest_per_person))
    ).all()
    labels: dict[int, dict[str, str]] = {}
    for post_id, username, violation, category in rows:
        labels.setdefault(post_id, {})[username] = (category or "other") if violation else "none"
    labels = {p: by for p, by in labels.items() if len(by) > 1}

    together: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (a, b) → their labels on the posts both labelled
    for by in labels.values():
        people = sorted(by)
        for i, a in enumerate(people):
            for b in people[i + 1 :]:
                together.setdefault((a, b), []).append((by[a], by[b]))
    pairs = [_cohen(a, b, both) for (a, b), both in sorted(together.items())]

    counts_per_post = [Counter(by.values()) for by in labels.values()]
    sizes = Counter(sum(c.values()) for c in counts_per_post)
    raters = max(sizes, key=lambda k: (sizes[k], -k)) if sizes else 0
    fleiss_items = [c for c in counts_per_post if sum(c.values()) == raters]
    return Agreement(
        posts=len(labels),
        pairs=pairs,
        fleiss_kappa=_fleiss(fleiss_items),
        fleiss_posts=len(fleiss_items),
        fleiss_raters=raters,
        krippendorff_alpha=_alpha(counts_per_post),
        raters=_rater_scores(session, flt, labels),
        disputed=_disputed(labels),
    )


def _cohen(a: str, b: str, both: list[tuple[str, str]]) -> PairKappa:
    n = len(both)
    observed = sum(x == y for x, y in both) / n
    first, second = Counter(x for x, _ in both), Counter(y for _, y in both)
    expected = sum(first[c] * second[c] for c in first) / (n * n)
    kappa = None if expected == 1 else (observed - expected) / (1 - expected)
    return PairKappa(a, b, n, observed, kappa)


def _fleiss(items: list[Counter[str]]) -> float | None:
    """Fleiss' kappa over items that all have the same number of raters (>= 2)."""
    if not items:
        return None
    m = sum(items[0].values())
    total = len(items) * m
    shares = Counter[str]()
    for item in items:
        shares.update(item)
    p_e = sum((n / total) ** 2 for n in shares.values())
    p_bar = sum((sum(n * n for n in item.values()) - m) / (m * (m - 1)) for item in items) / len(items)
    return None if p_e == 1 else (p_bar - p_e) / (1 - p_e)


def _alpha(items: list[Counter[str]]) -> float | None:
    """Krippendorff's alpha for nominal labels from each item's label counts (raters may differ
    in number per item): 1 - observed / expected disagreement, from the coincidence matrix."""
    coincidence: Counter[tuple[str, str]] = Counter()
    for item in items:
        m = sum(item.values())
        if m < 2:
            continue
        for c, nc in item.items():
            for k, nk in item.items():
                pairs = nc * (nc - 1) if c == k else nc * nk
                coincidence[(c, k)] += pairs / (m - 1)
    totals: Counter[str] = Counter()
    for (c, _), n in coincidence.items():
        totals[c] += n
    n = sum(totals.values())
    observed = sum(v for (c, k), v in coincidence.items() if c != k)
    expected = sum(totals[c] * totals[k] for c in totals for k in totals if c != k)
    if not n or not expected:
        return None
    return 1 - (n - 1) * observed / expected


def _rater_scores(session: Session, flt: MetricFilter, labels: dict[int, dict[str, str]]) -> list[RaterScores]:
    from db.models import User

    disagrees = (PostLabel.human_violation != PostLabel.model_violation) | (
        PostLabel.human_category != PostLabel.model_category
    )
    per_id = session.execute(  # the final labels each person gave, and how many differ from the model
        _labelled(flt)
        .add_columns(
            PostLabel.decided_by_id,
            func.count(),
            func.sum(case((PostLabel.usable, 1), else_=0)),
            func.sum(case((PostLabel.usable & disagrees, 1), else_=0)),
        )
        .where(PostLabel.decided_by_id.is_not(None))
        .group_by(PostLabel.decided_by_id)
    ).all()
    names = dict(session.execute(select(User.id, User.username).where(User.id.in_([r[0] for r in per_id]))).all())
    rows = [(names[user_id], *counts) for user_id, *counts in per_id]
    made = {u: int(n) for u, n, _, _ in rows}
    compared = {u: int(k or 0) for u, _, k, _ in rows}
    overturned = {u: int(k or 0) for u, _, _, k in rows}
    took_part: Counter[str] = Counter()
    agreed: Counter[str] = Counter()
    for by in labels.values():  # each person against the consensus of the others on the post
        for username, label in by.items():
            majority = _majority([other for name, other in by.items() if name != username])
            if majority is not None:
                took_part[username] += 1
                agreed[username] += label == majority
    return [
        RaterScores(
            u,
            made.get(u, 0),
            _ratio(overturned.get(u, 0), compared.get(u, 0)),
            took_part[u],
            _ratio(agreed[u], took_part[u]),
        )
        for u in sorted(set(made) | set(took_part))
    ]


def _majority(labels: list[str]) -> str | None:
    top = Counter(labels).most_common(2)
    if not top or (len(top) == 2 and top[0][1] == top[1][1]):
        return None
    return top[0][0]


def _disputed(labels: dict[int, dict[str, str]]) -> list[tuple[str, int, float]]:
    given: Counter[str] = Counter()
    disputed: Counter[str] = Counter()
    for by in labels.values():
        split = len(set(by.values())) > 1
        for category in set(by.values()):
            given[category] += 1
            disputed[category] += split
    out = [(c, given[c], disputed[c] / given[c]) for c in given]
    return sorted(out, key=lambda row: (-row[2], -row[1], row[0]))


# ---------------------------------------------------------------------------------------------
# Drill-down and filter choices


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
    from db.models import User

    require_live(session, actor, Permission.METRICS)
    rows = session.execute(
        _labelled(flt)
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


@dataclass(frozen=True)
class FilterOptions:
    sources: list[str]
    model_ids: list[str]
    prompt_versions: list[str]


def filter_options(session: Session, actor: Actor) -> FilterOptions:
    """The values the filters can take: sources of posts, models and prompt versions of verdicts."""
    require_live(session, actor, Permission.METRICS)
    models = session.execute(select(Verdict.model_id, Verdict.prompt_version).distinct()).all()
    return FilterOptions(
        sources=sorted(session.scalars(select(Post.source).distinct())),
        model_ids=sorted({m for m, _ in models}),
        prompt_versions=sorted({p for _, p in models}),
    )


# ---------------------------------------------------------------------------------------------
# Operations: throughput, handling time, backlog, failures, cache and latency

LATENCY_STEP_MS = 10  # latencies are counted in 10 ms steps: percentiles to 10 ms


@dataclass(frozen=True)
class DayOps:
    day: str  # YYYY-MM-DD, UTC
    decisions: int  # confirm / overturn (bulk included)
    escalations: int
    median_handling_s: int | None  # of one-by-one decisions and escalations, in whole seconds
    verdicts: int
    model_failures: int  # verdicts that failed to parse or errored
    waiting: int  # posts ingested and not yet decided at the end of the day
    oldest_waiting_h: float | None  # age of the oldest of those, in hours


@dataclass(frozen=True)
class ModeratorOps:
    username: str
    decisions: int
    escalations: int
    overturns: int
    median_handling_s: int | None
    days_active: int


@dataclass(frozen=True)
class ModelOps:
    provider: str
    model_id: str
    verdicts: int
    failures: int
    cache_hits: int
    latency_p50_ms: float | None  # of calls that reached the model (cache hits excluded)
    latency_p95_ms: float | None

    @property
    def cache_hit_rate(self) -> float:
        return _ratio(self.cache_hits, self.verdicts)


@dataclass
class Operations:
    days: list[DayOps]
    per_moderator_day: list[tuple[str, str, int]]  # (day, username, decisions + escalations)
    moderators: list[ModeratorOps]
    models: list[ModelOps]


def _quantile(histogram: Counter[int], q: float) -> int | None:
    """The smallest value with at least ``q`` of the counts at or below it (nearest rank; for
    q = 0.5 the lower median, as statistics.median_low gives it)."""
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= q * total:
            return value
    return None  # pragma: no cover - the loop always reaches q <= 1


def operations(
    session: Session, actor: Actor, flt: MetricFilter = MetricFilter(), now: datetime | None = None
) -> Operations:
    """Throughput and health per day, per moderator and per model. Every filter narrows the
    decisions (category: the human label; model and prompt: the verdict on screen); verdict
    counts, latency and the backlog follow the date range, source, model and prompt only."""
    from db.models import User

    require_live(session, actor, Permission.METRICS)
    now = now or datetime.now(UTC)
    acted = (EventAction.CONFIRM, EventAction.OVERTURN, EventAction.ESCALATE)
    day = _day(session, ReviewEvent.created_at)
    seconds = ReviewEvent.time_spent_ms // 1000
    events = (  # by user id: names are looked up afterwards (joining users here tripled the time)
        select(day, ReviewEvent.user_id, ReviewEvent.action, seconds, func.count())
        .select_from(ReviewEvent)
        .where(ReviewEvent.action.in_([a.value for a in acted]), ReviewEvent.user_id.is_not(None))
        .group_by(day, ReviewEvent.user_id, ReviewEvent.action, seconds)
    )
    if flt.source:
        events = events.join(Post, Post.id == ReviewEvent.post_id).where(Post.source == flt.source)
    if flt.model_id or flt.prompt_version:
        events = events.join(Verdict, Verdict.id == ReviewEvent.verdict_id)
    events = events.where(*_time_and_model(flt, ReviewEvent.created_at))
    if flt.category:
        events = events.where(ReviewEvent.label_category == flt.category)

    per_day: defaultdict[str, Counter[str]] = defaultdict(Counter)
    handling: defaultdict[str, Counter[int]] = defaultdict(Counter)
    per_person: defaultdict[str, Counter[str]] = defaultdict(Counter)
    person_handling: defaultdict[str, Counter[int]] = defaultdict(Counter)
    person_days: defaultdict[str, set[str]] = defaultdict(set)
    person_day: Counter[tuple[str, str]] = Counter()
    grouped = session.execute(events).all()
    ids = {user_id for _, user_id, *_ in grouped}
    names = dict(session.execute(select(User.id, User.username).where(User.id.in_(ids))).all()) if ids else {}
    for d, user_id, action, secs, n in grouped:
        username = names[user_id]
        kind = "escalations" if action == EventAction.ESCALATE else "decisions"
        per_day[d][kind] += n
        person = per_person[username]
        person[kind] += n
        person["overturns"] += n if action == EventAction.OVERTURN else 0
        person_days[username].add(d)
        person_day[(d, username)] += n
        if secs is not None:
            handling[d][int(secs)] += n
            person_handling[username][int(secs)] += n

    verdict_day = _day(session, Verdict.created_at)
    usable = usable_sql()
    latency = func.round(Verdict.latency_ms / LATENCY_STEP_MS)
    verdicts = (
        select(verdict_day, Verdict.provider, Verdict.model_id, usable, Verdict.cache_hit, latency, func.count())
        .group_by(verdict_day, Verdict.provider, Verdict.model_id, usable, Verdict.cache_hit, latency)
        .where(*_time_and_model(flt, Verdict.created_at))
    )
    if flt.source:
        verdicts = verdicts.join(Post, Post.id == Verdict.post_id).where(Post.source == flt.source)
    made: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    models: dict[tuple[str, str], Counter[str]] = {}
    latencies: dict[tuple[str, str], Counter[int]] = {}
    for d, provider, model_id, ok, hit, step, n in session.execute(verdicts):
        made[d] += n
        failed[d] += 0 if ok else n
        tally = models.setdefault((provider, model_id), Counter())
        tally["verdicts"] += n
        tally["failures"] += 0 if ok else n
        tally["cache_hits"] += n if hit else 0
        if step is not None and not hit:
            latencies.setdefault((provider, model_id), Counter())[int(step) * LATENCY_STEP_MS] += n

    backlog = _backlog(session, flt, now)
    days = sorted(set(per_day) | set(made) | set(backlog))
    out_days = []
    for d in days:
        count = per_day.get(d, Counter())
        waiting, oldest = backlog.get(d, (0, None))
        out_days.append(
            DayOps(
                d,
                count["decisions"],
                count["escalations"],
                _quantile(handling.get(d, Counter()), 0.5),
                made[d],
                failed[d],
                waiting,
                oldest,
            )
        )
    return Operations(
        days=out_days,
        per_moderator_day=sorted((d, u, n) for (d, u), n in person_day.items()),
        moderators=[
            ModeratorOps(
                u,
                c["decisions"],
                c["escalations"],
                c["overturns"],
                _quantile(person_handling.get(u, Counter()), 0.5),
                len(person_days[u]),
            )
            for u, c in sorted(per_person.items())
        ],
        models=[
            ModelOps(
                p,
                m,
                c["verdicts"],
                c["failures"],
                c["cache_hits"],
                _quantile(latencies.get((p, m), Counter()), 0.5),
                _quantile(latencies.get((p, m), Counter()), 0.95),
            )
            for (p, m), c in sorted(models.items())
        ],
    )


def _time_and_model(flt: MetricFilter, at) -> list:  # type: ignore[no-untyped-def, type-arg]
    conditions = []
    if flt.since is not None:
        conditions.append(at >= flt.since)
    if flt.until is not None:
        conditions.append(at < flt.until)
    if flt.model_id:
        conditions.append(Verdict.model_id == flt.model_id)
    if flt.prompt_version:
        conditions.append(Verdict.prompt_version == flt.prompt_version)
    return conditions


def _backlog(session: Session, flt: MetricFilter, now: datetime) -> dict[str, tuple[int, float | None]]:
    """Per day: posts ingested by its end and not yet decided then, and the oldest one's age in
    hours. From grouped tables of (day ingested, day first decided, earliest ingest, posts):
    settled posts from post_label, the others (never decided, or reopened) from post, leaving
    out the erased ones that were still waiting (they never will be decided)."""
    came = _day(session, PostLabel.ingested_at)
    left = _day(session, PostLabel.first_decided_at)
    settled = select(came, left, func.min(PostLabel.ingested_at), func.count()).group_by(came, left)
    waiting_day = _day(session, Post.ingested_at)
    waiting = (
        select(waiting_day, func.min(Post.ingested_at), func.count())
        .where(Post.status.in_([s.value for s in PostStatus if s.value not in SETTLED]))  # the queue indexes
        .where(LIVE_POST)  # an erased post keeps its status but waits for nobody
        .group_by(waiting_day)
    )
    if flt.source:
        settled = settled.where(PostLabel.source == flt.source)
        waiting = waiting.where(Post.source == flt.source)
    groups = [(c, d, _utc(e), n) for c, d, e, n in session.execute(settled)]
    groups += [(c, None, _utc(e), n) for c, e, n in session.execute(waiting)]
    if not groups:
        return {}
    first = min(date.fromisoformat(c) for c, _, _, _ in groups)
    last = max(date.fromisoformat(d) for c, left_day, _, _ in groups for d in (c, left_day) if d)
    last = max(last, now.date())
    out = {}
    day = first
    while day <= last:
        key = day.isoformat()
        end = min(datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC), now)
        open_ = [(e, n) for c, left_day, e, n in groups if c <= key and (left_day is None or left_day > key)]
        oldest = min((e for e, _ in open_), default=None)
        in_range = (flt.since is None or end > flt.since) and (flt.until is None or day < flt.until.date())
        if in_range:
            out[key] = (sum(n for _, n in open_), (end - oldest).total_seconds() / 3600 if oldest else None)
        day += timedelta(days=1)
    return out


def _utc(value: datetime | str) -> datetime:
    if isinstance(value, str):  # SQLite hands min() of a timestamp back as its stored text
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)

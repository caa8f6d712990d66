"""How good is the model: its verdicts against the humans' labels, computed in SQL where it can be.

A decided post (status ``decided`` or ``second_review``: not reopened) counts once, with its
latest human label (the latest confirm or overturn event) against the verdict that was on screen
for that decision (``review_event.verdict_id``), never a later re-score. Verdicts the model failed
to give (parse failures, errors) are counted apart: they have nothing to compare.

The database returns small grouped tables — confusion cells, counts per confidence value, per
confidence bin — and the metrics are computed from those here, so the cost grows with the number
of decided posts only inside the database's GROUP BY.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Select, and_, case, func, select, true
from sqlalchemy.orm import Session, aliased

from db.models import EventAction, Post, PostStatus, ReviewEvent, Verdict
from review.auth import Actor, Permission, require
from review.scoring import USABLE

DECISIONS = (EventAction.CONFIRM, EventAction.OVERTURN)
SETTLED = (PostStatus.DECIDED, PostStatus.SECOND_REVIEW)
CALIBRATION_BINS = 10


@dataclass(frozen=True)
class MetricFilter:
    since: datetime | None = None  # decisions at or after
    until: datetime | None = None  # decisions before
    source: str | None = None
    category: str | None = None  # the human label's category
    model_id: str | None = None
    prompt_version: str | None = None


def _model_category():  # type: ignore[no-untyped-def]
    """The verdict's category as a label: "none" when it saw no violation."""
    return case((Verdict.violation.is_(True), Verdict.category), else_="none")


def _labelled(flt: MetricFilter) -> tuple[Select, type[ReviewEvent]]:  # type: ignore[type-arg]
    """FROM/WHERE for one row per settled post: its latest human label and the verdict on screen."""
    latest = (
        select(func.max(ReviewEvent.id).label("event_id"))
        .where(ReviewEvent.action.in_([a.value for a in DECISIONS]))
        .group_by(ReviewEvent.post_id)
        .subquery()
    )
    event = aliased(ReviewEvent)
    query = (
        select()
        .select_from(latest)
        .join(event, event.id == latest.c.event_id)
        .join(Post, Post.id == event.post_id)
        .join(Verdict, Verdict.id == event.verdict_id)
        .where(Post.status.in_([s.value for s in SETTLED]))
    )
    conditions = []
    if flt.since is not None:
        conditions.append(event.created_at >= flt.since)
    if flt.until is not None:
        conditions.append(event.created_at < flt.until)
    if flt.source:
        conditions.append(Post.source == flt.source)
    if flt.category:
        conditions.append(event.label_category == flt.category)
    if flt.model_id:
        conditions.append(Verdict.model_id == flt.model_id)
    if flt.prompt_version:
        conditions.append(Verdict.prompt_version == flt.prompt_version)
    return query.where(and_(true(), *conditions)), event


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
    scores: list[tuple[float, bool, bool, int]] = field(repr=False, default_factory=list)
    # (confidence, model says violation, human says violation, posts): for thresholds

    @property
    def n(self) -> int:
        return self.binary.n


def _ratio(a: int | float, b: int | float) -> float:
    return a / b if b else 0.0


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def accuracy(session: Session, actor: Actor, flt: MetricFilter = MetricFilter()) -> Accuracy:
    """The accuracy page's numbers for the decided posts under ``flt``."""
    require(actor, Permission.METRICS)
    base, event = _labelled(flt)
    usable = Verdict.parse_status.in_(list(USABLE))
    model_cat = _model_category()

    failures = session.scalar(base.add_columns(func.count()).where(~usable)) or 0
    cells = session.execute(
        base.add_columns(event.label_category, model_cat, func.count())
        .where(usable)
        .group_by(event.label_category, model_cat)
    ).all()
    confusion = {(human or "none", model or "none"): n for human, model, n in cells}

    # P(violation) per verdict: its confidence if it says violation, else one minus it
    said = Verdict.violation.is_(True)
    scored = session.execute(
        base.add_columns(Verdict.confidence, said, event.label_violation.is_(True), func.count())
        .where(usable, Verdict.confidence.is_not(None))
        .group_by(Verdict.confidence, said, event.label_violation.is_(True))
    ).all()
    scores = [(float(c), bool(m), bool(h), int(n)) for c, m, h, n in scored]

    tp = sum(n for _, m, h, n in scores if m and h)
    fp = sum(n for _, m, h, n in scores if m and not h)
    fn = sum(n for _, m, h, n in scores if not m and h)
    tn = sum(n for _, m, h, n in scores if not m and not h)
    binary = Binary(tp, fp, fn, tn, _auc([((c if m else 1 - c), h, n) for c, m, h, n in scores]))

    categories = _category_scores(confusion)
    total = sum(confusion.values())
    correct = sum(n for (h, m), n in confusion.items() if h == m)
    present = [c for c in categories if c.support or c.predicted]
    macro = sum(c.f1 for c in present) / len(present) if present else 0.0

    top = CALIBRATION_BINS - 1  # confidence 1.0 belongs to the last bin
    bin_of = case((Verdict.confidence >= 1.0, top), else_=func.floor(Verdict.confidence * CALIBRATION_BINS))
    right = case((event.label_category == model_cat, 1), else_=0)
    bins = session.execute(
        base.add_columns(bin_of, func.count(), func.avg(Verdict.confidence), func.avg(right))
        .where(usable, Verdict.confidence.is_not(None))
        .group_by(bin_of)
        .order_by(bin_of)
    ).all()
    calibration = [(int(b), int(n), float(conf), float(acc)) for b, n, conf, acc in bins]
    counted = sum(n for _, n, _, _ in calibration)
    ece = sum(n / counted * abs(acc - conf) for _, n, conf, acc in calibration) if counted else None
    return Accuracy(
        binary=binary,
        confusion=confusion,
        categories=categories,
        macro_f1=macro,
        micro_f1=_ratio(correct, total),  # with one label per post, micro F1 is the accuracy
        calibration=calibration,
        ece=ece,
        model_failures=failures,
        scores=scores,
    )


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


def _auc(points: list[tuple[float, bool, int]]) -> float | None:
    """ROC-AUC from (score, positive, count) groups: the chance that a positive outscores a
    negative, ties counting half (the Mann-Whitney statistic, as roc_auc_score computes it)."""
    positives = sum(n for _, y, n in points if y)
    negatives = sum(n for _, y, n in points if not y)
    if not positives or not negatives:
        return None
    by_score: dict[float, list[int]] = {}
    for score, y, n in points:
        pos_neg = by_score.setdefault(score, [0, 0])
        pos_neg[0 if y else 1] += n
    below = 0  # negatives with a lower score
    wins = 0.0
    for score in sorted(by_score):
        pos, neg = by_score[score]
        wins += pos * (below + neg / 2)
        below += neg
    return wins / (positives * negatives)


@dataclass(frozen=True)
class Threshold:
    confidence: float  # act automatically on verdicts at or above this confidence
    precision: float  # share of those the humans agreed with
    posts: int  # how many of the decided posts it would have handled
    share: float  # of all decided posts with a verdict


def threshold_for(report: Accuracy, target: float, *, violation: bool) -> Threshold | None:
    """The lowest confidence from which acting on the model alone (auto-remove its violations
    when ``violation``, auto-approve its "no violation" otherwise) keeps the humans' agreement
    at ``target`` or more, counting every verdict at or above it; None if no confidence does."""
    rows = sorted((c, h, n) for c, m, h, n in report.scores if m is violation)
    total = sum(n for *_, n in report.scores)
    best = None
    agreed = handled = 0
    for c in sorted({c for c, _, _ in rows}, reverse=True):
        agreed += sum(n for cc, h, n in rows if cc == c and h is violation)
        handled += sum(n for cc, _, n in rows if cc == c)
        if handled and agreed / handled >= target:
            best = Threshold(c, agreed / handled, handled, _ratio(handled, total))
    return best


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
    decisions: int  # their settled decisions under the filter
    overturn_rate: float  # share of those that overturned the model
    with_consensus: int  # multi-rated posts with a majority label they took part in
    agrees_with_consensus: float  # share of those where their label is the majority's


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
    """How far the humans agree with each other, on posts two or more people labelled (second
    reviews): each person's latest label per post."""
    from db.models import User

    require(actor, Permission.METRICS)
    base, event = _labelled(flt)
    settled = base.with_only_columns(event.post_id).subquery()  # the posts the filter keeps
    latest_per_person = (
        select(func.max(ReviewEvent.id))
        .where(ReviewEvent.action.in_([a.value for a in DECISIONS]), ReviewEvent.post_id.in_(select(settled.c.post_id)))
        .group_by(ReviewEvent.post_id, ReviewEvent.user_id)
    )
    shared = (
        select(ReviewEvent.post_id)
        .where(ReviewEvent.id.in_(latest_per_person))
        .group_by(ReviewEvent.post_id)
        .having(func.count() > 1)
    )
    rows = session.execute(
        select(ReviewEvent.post_id, User.username, ReviewEvent.label_category)
        .join(User, User.id == ReviewEvent.user_id)
        .where(ReviewEvent.id.in_(latest_per_person), ReviewEvent.post_id.in_(shared))
    ).all()
    labels: dict[int, dict[str, str]] = {}
    for post_id, username, category in rows:
        labels.setdefault(post_id, {})[username] = category or "none"

    people = sorted({u for by in labels.values() for u in by})
    pairs = []
    for i, a in enumerate(people):
        for b in people[i + 1 :]:
            both = [(by[a], by[b]) for by in labels.values() if a in by and b in by]
            if both:
                pairs.append(_cohen(a, b, both))

    counts_per_post = [Counter(by.values()) for by in labels.values()]
    sizes = Counter(sum(c.values()) for c in counts_per_post)
    raters = max(sizes, key=lambda k: (sizes[k], -k)) if sizes else 0
    fleiss_items = [c for c in counts_per_post if sum(c.values()) == raters]

    consensus: dict[int, str] = {}
    for post_id, by in labels.items():
        top = Counter(by.values()).most_common()
        if len(top) == 1 or top[0][1] > top[1][1]:
            consensus[post_id] = top[0][0]
    return Agreement(
        posts=len(labels),
        pairs=pairs,
        fleiss_kappa=_fleiss(fleiss_items),
        fleiss_posts=len(fleiss_items),
        fleiss_raters=raters,
        krippendorff_alpha=_alpha(counts_per_post),
        raters=_rater_scores(session, base, event, labels, consensus),
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


def _rater_scores(session, base, event, labels, consensus) -> list[RaterScores]:  # type: ignore[no-untyped-def]
    from db.models import User

    user = aliased(User)
    rows = session.execute(  # every settled decision of each person, on the posts the filter keeps
        select(user.username, ReviewEvent.action, func.count())
        .join(user, user.id == ReviewEvent.user_id)
        .where(
            ReviewEvent.action.in_([a.value for a in DECISIONS]),
            ReviewEvent.post_id.in_(base.with_only_columns(event.post_id)),
        )
        .group_by(user.username, ReviewEvent.action)
    ).all()
    made: Counter[str] = Counter()
    overturned: Counter[str] = Counter()
    for username, action, n in rows:
        made[username] += n
        if action == EventAction.OVERTURN:
            overturned[username] += n
    took_part: Counter[str] = Counter()
    agreed: Counter[str] = Counter()
    for post_id, majority in consensus.items():
        for username, label in labels[post_id].items():
            took_part[username] += 1
            agreed[username] += label == majority
    return [
        RaterScores(u, made[u], _ratio(overturned[u], made[u]), took_part[u], _ratio(agreed[u], took_part[u]))
        for u in sorted(set(made) | set(took_part))
    ]


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

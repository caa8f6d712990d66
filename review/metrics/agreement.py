"""Do the moderators agree: the Agreement page's numbers (and the report's agreement section),
on settled posts two or more people labelled (second reviews, QA with several raters): Cohen's
κ per pair, Fleiss' κ, Krippendorff's α, each person's agreement with the others' consensus and
overturn rate, the categories argued over most."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from db.models import PostLabel, ReviewEvent, User
from review.auth import Actor, Permission, require_live
from review.labels import human_category, standing_decisions
from review.metrics import ratio
from review.metrics.filters import NO_FILTER, MetricFilter, disagreement, labelled


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


def agreement(session: Session, actor: Actor, flt: MetricFilter = NO_FILTER) -> Agreement:
    """How far the humans agree with each other, on settled posts two or more people labelled
    (second reviews): each person's latest label per post."""
    require_live(session, actor, Permission.METRICS)
    shared = labelled(flt).add_columns(PostLabel.post_id).where(PostLabel.raters > 1)
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
        labels.setdefault(post_id, {})[username] = human_category(violation, category)
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
    coincidence: defaultdict[tuple[str, str], float] = defaultdict(float)
    for item in items:
        m = sum(item.values())
        if m < 2:
            continue
        for c, nc in item.items():
            for k, nk in item.items():
                pairs = nc * (nc - 1) if c == k else nc * nk
                coincidence[(c, k)] += pairs / (m - 1)
    totals: defaultdict[str, float] = defaultdict(float)
    for (c, _), n in coincidence.items():
        totals[c] += n
    n = sum(totals.values())
    observed = sum(v for (c, k), v in coincidence.items() if c != k)
    expected = sum(totals[c] * totals[k] for c in totals for k in totals if c != k)
    if not n or not expected:
        return None
    return 1 - (n - 1) * observed / expected


def _rater_scores(session: Session, flt: MetricFilter, labels: dict[int, dict[str, str]]) -> list[RaterScores]:
    per_id = session.execute(  # the final labels each person gave, and how many differ from the model
        labelled(flt)
        .add_columns(
            PostLabel.decided_by_id,
            func.count(),
            func.sum(case((PostLabel.usable, 1), else_=0)),
            func.sum(case((PostLabel.usable & disagreement(), 1), else_=0)),
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
            ratio(overturned.get(u, 0), compared.get(u, 0)),
            took_part[u],
            ratio(agreed[u], took_part[u]),
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

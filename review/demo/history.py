"""A simulated review history on the demo set, so that the lead pages have something to show.

Three demo moderators (who cannot sign in) decide about two thirds of the scored demo posts over
ten days, through the desk's own ``claim`` and ``decide``; ``demo_waiting`` says whether the demo
set waits for it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from db.models import Post, PostStatus, ReviewEvent, User, Verdict
from db.session import writing
from review.auth import Actor, Permission, create_user, require, set_active
from review.decisions import Label, claim, decide
from review.demo.load import DEMO_SOURCE, demo_external_id
from review.demo.posts import intended_labels
from review.errors import ReviewError
from review.verdicts import category_shown, current_verdict, is_usable

# What a careful moderator decides for each demo post (demo-001 … demo-040), in order: posts.toml.
INTENDED = intended_labels()
# Where a hurried moderator goes wrong instead.
CONFUSED_WITH = {"false_advertising": "fraud_spam", "fraud_spam": "false_advertising", "none": "false_advertising",
                 "misinformation": "none", "illegal_goods": "fraud_spam", "violence_gore": "none",
                 "hate_harassment": "none"}  # fmt: skip
DEMO_MODERATORS = ("demo-ana", "demo-ben", "demo-cai")


@dataclass
class HistoryReport:
    decisions: int = 0
    second_reviews: int = 0
    escalations: int = 0
    left_waiting: int = 0


def history_refusal(sessions: sessionmaker[Session]) -> str | None:
    """Why the demo's history cannot be simulated now, in words for the person asking; None when
    it can (demo posts wait in the queue and the history was not simulated yet)."""
    with sessions() as session:
        simulated = session.scalar(select(User.id).where(User.username.in_(DEMO_MODERATORS)).limit(1))
        waiting = session.scalar(
            select(Post.id).where(Post.source == DEMO_SOURCE, Post.status == PostStatus.QUEUED).limit(1)
        )
    if simulated is not None:
        return "it was simulated on this desk already (its demo moderators exist)"
    if waiting is None:
        return "no demo post waits in the queue (python -m review demo loads and scores them on an empty desk)"
    return None


def demo_waiting(sessions: sessionmaker[Session]) -> bool:
    """Whether demo posts wait in the queue and the history was not simulated yet."""
    return history_refusal(sessions) is None


def simulate_history(
    sessions: sessionmaker[Session],
    by: Actor,
    *,
    share_decided: float = 0.65,
    raters: int = 2,
    now: datetime | None = None,
) -> HistoryReport:
    """Ten days of simulated moderation on the demo posts, through the desk's own claim and
    decide: three moderator accounts (single-sign-on only, deactivated afterwards, so nobody can
    sign in as them) decide about two thirds of the scored demo posts, mostly as INTENDED says
    and sometimes not, a share is drawn for a blind second review by the others (``raters``
    people label each of those: QA_RATERS, at most the three demo moderators), and two are
    escalated. The rest stay in the queue for the person trying the desk. Needs an admin
    (it adds accounts); refused once the demo moderators exist."""
    require(by, Permission.MANAGE_USERS)
    if not 2 <= raters <= len(DEMO_MODERATORS):
        raise ReviewError(f"the demo has {len(DEMO_MODERATORS)} moderators: it can simulate 2 or 3 raters per post")
    now = now or datetime.now(UTC)
    with sessions() as session:
        if session.scalar(select(User.id).where(User.username.in_(DEMO_MODERATORS)).limit(1)) is not None:
            raise ReviewError("the demo history was simulated already (its moderators exist)")
        rows = session.execute(
            select(Post.id, Post.external_id)
            .where(Post.source == DEMO_SOURCE, Post.status == PostStatus.QUEUED)
            .order_by(Post.id)
        ).all()
    intended = {demo_external_id(n): label for n, label in enumerate(INTENDED, start=1)}
    waiting = [(post_id, intended[ext]) for post_id, ext in rows if ext in intended]
    if not waiting:
        raise ReviewError("no scored demo post is waiting: load the demo first (python -m review demo)")
    rng = random.Random(20261202)
    chosen = sorted(rng.sample(waiting, round(len(waiting) * share_decided)))
    start = now - timedelta(days=10)
    times = {post_id: start + timedelta(days=10 * k / len(chosen), minutes=rng.randint(0, 90))
             for k, (post_id, _) in enumerate(chosen)}  # fmt: skip
    with writing(sessions) as session:  # the posts arrived, and were scored, before they were decided
        for k, (post_id, _) in enumerate(waiting):
            arrived = times.get(post_id, start + timedelta(days=10 * k / len(waiting))) - timedelta(hours=3)
            session.execute(update(Post).where(Post.id == post_id).values(ingested_at=arrived))
            session.execute(
                update(Verdict).where(Verdict.post_id == post_id).values(created_at=arrived + timedelta(minutes=2))
            )
    people: list[Actor] = []
    report = HistoryReport()
    try:
        for name in DEMO_MODERATORS:
            people.append(create_user(sessions, name, None, "moderator", by=by))
        for k, (post_id, truth) in enumerate(chosen):
            at = times[post_id]
            first = people[k % len(people)]
            if claim(sessions, first, post_id, now=at) is None:
                continue
            if k in (3, 11):  # unsure: for a lead
                decide(sessions, first, post_id, "escalate", note="Not sure this breaks policy: please decide.",
                       time_spent_ms=rng.randint(20_000, 90_000), now=at)  # fmt: skip
                report.escalations += 1
                continue
            event = _decide_as(sessions, first, post_id, _judged(truth, 0.85, rng), rng, at, share=0.35, raters=raters)
            report.decisions += 1
            with sessions() as session:
                drawn = session.scalar(select(Post.status).where(Post.id == post_id)) == PostStatus.SECOND_REVIEW
            for step in range(1, raters if drawn else 1):  # the other raters, blind, one after the other
                other = people[(k + step) % len(people)]
                later = min(event.created_at + timedelta(hours=rng.randint(2, 20)), now - timedelta(minutes=5))
                if claim(sessions, other, post_id, now=later) is None:
                    break
                event = _decide_as(sessions, other, post_id, _judged(truth, 0.7, rng), rng, later, raters=raters)
                report.second_reviews += 1
    finally:
        for person in people:
            set_active(sessions, person.username, False, by=by)
    report.left_waiting = len(waiting) - len(chosen)
    return report


def _judged(truth: str, right: float, rng: random.Random) -> str:
    return truth if rng.random() < right else CONFUSED_WITH.get(truth, "none")


def _decide_as(
    sessions: sessionmaker[Session],
    actor: Actor,
    post_id: int,
    category: str,
    rng: random.Random,
    at: datetime,
    share: float = 0.0,
    raters: int = 2,
) -> ReviewEvent:
    """Confirm when the verdict on screen says ``category``, overturn with it otherwise."""
    with sessions() as session:
        verdict = current_verdict(session, post_id)
        agrees = (
            verdict is not None
            and is_usable(verdict.parse_status)
            and category_shown(verdict.violation, verdict.category) == category
        )
    spent = int(rng.lognormvariate(9.6, 0.5))
    if agrees:
        return decide(sessions, actor, post_id, "confirm", time_spent_ms=spent, share=share, raters=raters, now=at)
    label = Label(category != "none", category, 0 if category == "none" else 2)
    return decide(sessions, actor, post_id, "overturn", label=label, time_spent_ms=spent, share=share, raters=raters,
                  now=at)  # fmt: skip

"""The queue's order: ``post.priority``, highest first (then the oldest post), as
:mod:`review.queue` lists and claims posts. Scoring sets it when a post enters the queue,
decisions when a post is escalated or a decision is undone; this module is the queue's, kept
apart from it so that the scoring worker does not import a later stage.
"""

from __future__ import annotations

from db.models import Verdict
from review.verdicts import is_usable

ESCALATED_PRIORITY = 200.0  # escalations sort before model failures and every verdict
FAILURE_PRIORITY = 100.0  # model failures sort before every verdict (severity × confidence ≤ 3)


def queue_priority(verdict: Verdict | None) -> float:
    """A scored post's place in the queue from its current verdict: model failures (and a post
    without a verdict) first, then severity × confidence."""
    if verdict is None or not is_usable(verdict.parse_status):
        return FAILURE_PRIORITY
    return float((verdict.severity or 0) * (verdict.confidence or 0.0))

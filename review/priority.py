"""The queue's order: ``post.priority``, highest first (then the oldest post), as
:mod:`review.queue` lists and claims posts. Scoring sets it when a post enters the queue,
decisions when a post is escalated or a decision is undone, reports from the platform when they
arrive (review/reports.py); this module is the queue's, kept apart from it so that the scoring
worker does not import a later stage.

The rule: escalations first (200), then model failures (100), then severity × confidence of the
current verdict (0 to 3); reports add :data:`REPORT_WEIGHT` each (their counts summed) up to
:data:`REPORT_BOOST_CAP`, so six reports lift a post as far as a certain high-severity verdict,
and a brigade of thousands lifts it no further.
"""

from __future__ import annotations

from db.models import Verdict
from review.verdicts import is_usable

ESCALATED_PRIORITY = 200.0  # escalations sort before model failures and every verdict
FAILURE_PRIORITY = 100.0  # model failures sort before every verdict (severity × confidence ≤ 3)
REPORT_WEIGHT = 0.5  # added per report
REPORT_BOOST_CAP = 3.0  # reached at six reports


def report_boost(reports: int) -> float:
    """What ``reports`` reports (their counts summed) add to a post's priority."""
    return min(REPORT_BOOST_CAP, REPORT_WEIGHT * max(0, reports))


def queue_priority(verdict: Verdict | None, reports: int) -> float:
    """A scored post's place in the queue from its current verdict and the reports on it: model
    failures (and a post without a verdict) first, then severity × confidence; plus the reports'
    boost."""
    if verdict is None or not is_usable(verdict.parse_status):
        return FAILURE_PRIORITY + report_boost(reports)
    return float((verdict.severity or 0) * (verdict.confidence or 0.0)) + report_boost(reports)

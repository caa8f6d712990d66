"""review.queue's filter in a link: filter_params and filter_from_params round-trip every field,
and a bad, unknown or forbidden parameter is left out with a line saying so."""

from __future__ import annotations

from datetime import timedelta

from review.auth import Actor
from review.queue import ANY, QueueFilter, filter_from_params, filter_params

CATEGORIES = ["none", "fraud_spam", "violence_gore"]
LEAD = Actor(1, "lea", "lead")
MODERATOR = Actor(2, "ann", "moderator")


def test_every_field_goes_through_a_link_and_back() -> None:
    flt = QueueFilter(
        category="fraud_spam", violation=True, min_confidence=0.35, max_confidence=0.9, model_failure=False,
        escalated=True, second_review=False, source="微博 feed", model_id="qwen/vl", prompt_version="p@2",
        min_age=timedelta(hours=2), max_age=timedelta(hours=48),
    )  # fmt: skip
    params = filter_params(flt)
    assert params["category"] == "fraud_spam" and params["violation"] == "yes" and params["failure"] == "no"
    assert params["older_than_hours"] == "2" and params["min_confidence"] == "0.35"
    assert filter_from_params(params, CATEGORIES, LEAD) == (flt, [])
    assert filter_params(ANY) == {} and filter_from_params({}, CATEGORIES, LEAD) == (ANY, [])


def test_what_a_link_cannot_name_is_ignored_with_a_reason() -> None:
    flt, problems = filter_from_params(
        {
            "category": "nonsense", "violation": "maybe", "min_confidence": "nan", "max_confidence": "1.5",
            "older_than_hours": "1.5", "escalated": "yes", "colour": "red", "source": "x" * 201,
            "second_review": ["no", "yes"], "model": "  m  ", "embed": "true",
        },
        CATEGORIES,
        MODERATOR,
    )  # fmt: skip
    assert flt == QueueFilter(second_review=True, model_id="m")  # a repeated name: the last value
    assert len(problems) == 8
    assert all(p.startswith("Ignored ") and "\n" not in p for p in problems)
    assert any("only leads" in p for p in problems) and any("colour" in p for p in problems)
    assert any("not a category" in p for p in problems) and any("at most 200" in p for p in problems)

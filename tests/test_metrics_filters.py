"""review/metrics/filters.py, the one filter over post_label and the one definition of a
model-vs-human disagreement: the filter selects what a plain reading of the rows selects (with
and without the day bound), and the export's disagreements are the metrics' disagreement cells
and model failures, on SQLite and Postgres. Every metric (and the report built from them) reads
the caller's role as stored, not as the caller says it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from db.models import PostLabel
from review import auth, report
from review.auth import PermissionDenied
from review.export import ExportOptions, select_examples
from review.metrics.accuracy import accuracy, breakdown
from review.metrics.activity import activity
from review.metrics.agreement import agreement
from review.metrics.filters import (
    MetricFilter,
    disagreement,
    disagrees,
    filter_options,
    label_conditions,
    labelled,
)
from tests.conftest import account
from tests.factories import T0, metrics_world


@pytest.mark.parametrize(
    ("usable", "human", "model", "expected"),
    [
        (True, (True, "fraud_spam"), (True, "fraud_spam"), False),  # the same label
        (True, (False, "none"), (False, "none"), False),
        (True, (True, "fraud_spam"), (True, "hate_harassment"), True),  # another category
        (True, (True, "fraud_spam"), (False, "none"), True),  # missed
        (True, (True, "none"), (False, "none"), True),  # the violation alone differs
        (False, (False, "none"), (None, None), True),  # no usable verdict: always a disagreement
        (False, (True, "fraud_spam"), (None, None), True),
    ],
)
def test_disagrees(usable, human, model, expected) -> None:
    assert disagrees(usable, *human, *model) is expected


def _ids(session, query) -> set[int]:
    return set(session.scalars(query))


def test_the_filter_selects_what_a_plain_reading_selects(desk) -> None:
    metrics_world(desk, n=120, seed=5)
    with desk.sessions() as session:
        rows = session.scalars(select(PostLabel)).all()
        since, until = T0 + timedelta(hours=30), T0 + timedelta(hours=75, minutes=2)
        cases = [
            (MetricFilter(), lambda r: True),
            (MetricFilter(since=since), lambda r: r.decided_at >= since),
            (MetricFilter(since=since, until=until), lambda r: since <= r.decided_at < until),
            (MetricFilter(source="douyin"), lambda r: r.source == "douyin"),
            (MetricFilter(category="none"), lambda r: r.human_category == "none"),
            (MetricFilter(model_id="m", source="weibo"), lambda r: r.model_id == "m" and r.source == "weibo"),
            (MetricFilter(prompt_version="nope"), lambda r: False),
        ]
        for flt, keep in cases:
            expected = {r.post_id for r in rows if keep(r)}
            assert _ids(session, labelled(flt).add_columns(PostLabel.post_id)) == expected, flt
            # the trend query's day bound is implied by the time bound: it narrows nothing
            assert _ids(session, labelled(flt, by_day=True).add_columns(PostLabel.post_id)) == expected, flt
        # the export's form: several categories at once
        two = {"none", "fraud_spam"}
        query = select(PostLabel.post_id).where(*label_conditions(categories=two, until=until))
        assert _ids(session, query) == {r.post_id for r in rows if r.human_category in two and r.decided_at < until}
        assert len({r.human_category for r in rows} - two) > 0  # the condition left some out


def test_export_disagreements_are_the_metrics_disagreements(desk, world) -> None:
    """The same posts are "disagreements" to the export, to the SQL condition, to its Python
    form and to the accuracy numbers (the confusion's off-diagonal cells and the model failures)."""
    lead = account(desk, "lead")
    with desk.sessions() as session:
        rows = session.scalars(select(PostLabel)).all()
        in_python = {
            r.post_id
            for r in rows
            if disagrees(r.usable, r.human_violation, r.human_category, r.model_violation, r.model_category)
        }
        in_sql = _ids(session, select(PostLabel.post_id).where(disagreement()))
        selection = select_examples(session, lead, ExportOptions(format="swift"))
        acc = accuracy(session, lead)
    assert in_sql == in_python and 0 < len(in_sql) < len(rows)
    exported = {e.post_id for e in selection.examples}
    assert exported <= in_sql and len(exported) + selection.dropped["exact duplicates"] == len(in_sql)
    off_diagonal = sum(n for (human, model), n in acc.confusion.items() if human != model)
    assert acc.model_failures + off_diagonal == len(in_sql)


def test_report_and_metrics_reread_the_role(sqlite_desk) -> None:
    desk = sqlite_desk
    lead = account(desk, "lead")
    with desk.sessions() as session:
        report.build(session, lead, MetricFilter())  # allowed while a lead
    auth.set_role(desk.sessions, "lead", "moderator", by=auth.OPERATOR)  # demoted after sign-in
    with desk.sessions() as session:
        with pytest.raises(PermissionDenied):
            report.build(session, lead, MetricFilter())
        for call in (accuracy, agreement, activity, filter_options):
            with pytest.raises(PermissionDenied):
                call(session, lead) if call is filter_options else call(session, lead, MetricFilter())
        with pytest.raises(PermissionDenied):
            breakdown(session, lead, MetricFilter(), "day")

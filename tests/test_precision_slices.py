"""The precision a verdict's model ran in (``verdict.model_precision``) on the lead pages: copied
into ``post_label`` by the projection (and by migration 0012 for the rows already there), an
accuracy slice of its own ("not recorded" for the rules, a server's model and older verdicts),
in the report's tables, and in the verdict's provenance line on Review and Posts; on SQLite and
Postgres."""

from __future__ import annotations

from sqlalchemy import insert, inspect, literal, select, update
from sqlalchemy.orm import Session

from db import schema
from db.models import Post, PostLabel, ReviewEvent, Verdict
from db.session import make_engine
from review import report
from review.browse import get_posts
from review.decisions import Label
from review.metrics.accuracy import NOT_RECORDED, breakdown, slices
from review.metrics.filters import MetricFilter
from review.visibility import COMMAND_LINE
from tests.conftest import account
from tests.factories import claim_and_decide, queued_posts_with_verdicts

# each post: the precision of its verdict (which says fraud_spam) and whether the moderator agrees
POSTS = [("float32", True), ("float32", True), ("int8-dynamic", False), ("int8-dynamic", True), (None, True)]


def _decided_posts(desk) -> list[int]:
    """POSTS scored and decided through the desk (decisions.py keeps post_label as it goes)."""
    ids = queued_posts_with_verdicts(desk, ["fraud_spam"] * len(POSTS))
    with desk.sessions() as session, session.begin():
        for post_id, (precision, _) in zip(ids, POSTS, strict=True):
            session.execute(update(Verdict).where(Verdict.post_id == post_id).values(model_precision=precision))
    moderator = account(desk, "moderator")
    for post_id, (_, agrees) in zip(ids, POSTS, strict=True):
        if agrees:
            claim_and_decide(desk, moderator, post_id, "confirm")
        else:
            claim_and_decide(desk, moderator, post_id, "overturn", label=Label(False, "none", 0))
    return ids


def test_accuracy_is_sliced_by_the_precision_of_the_verdict(desk) -> None:
    ids = _decided_posts(desk)
    lead = account(desk, "lead")
    with desk.sessions() as session:
        stored = {label.post_id: label.model_precision for label in session.scalars(select(PostLabel))}
        assert stored == {post_id: precision for post_id, (precision, _) in zip(ids, POSTS, strict=True)}
        by_precision = slices(session, lead, MetricFilter())["model_precision"]
        assert breakdown(session, lead, MetricFilter(), "model_precision") == by_precision
        tables = report.build(session, lead, MetricFilter(), sections=("accuracy",))
    got = {s.key: (s.binary.n, s.binary.accuracy) for s in by_precision}
    assert got == {"float32": (2, 1.0), "int8-dynamic": (2, 0.5), NOT_RECORDED: (1, 1.0)}
    table = tables["by_model_precision"]
    assert list(table["model_precision"]) == ["float32", "int8-dynamic", NOT_RECORDED]
    assert list(table["posts"]) == [2, 2, 1]


def test_the_verdict_line_names_the_precision_when_recorded(sqlite_desk) -> None:
    ids = queued_posts_with_verdicts(sqlite_desk, ["fraud_spam", "none"])
    with sqlite_desk.sessions() as session, session.begin():
        session.execute(update(Verdict).where(Verdict.post_id == ids[0]).values(model_precision="int8-dynamic"))
    with sqlite_desk.sessions() as session:
        rows = get_posts(session, COMMAND_LINE, ids)
    assert rows[ids[0]].verdict is not None and rows[ids[1]].verdict is not None
    assert rows[ids[0]].verdict.provenance == "transformers · m · int8-dynamic · prompt v"
    assert rows[ids[1]].verdict.provenance == "transformers · m · prompt v"


def test_migration_0012_fills_the_precision_and_steps_down(db_url: str) -> None:
    """0012 copies each label row's precision from its verdict and puts it in the slices index
    (after the provider, where the slices' GROUP BY has it); the downgrade takes both back."""
    engine = make_engine(db_url)

    def slices_index() -> list[str | None]:
        found = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("post_label")}
        return found["ix_post_label_slices"]

    try:
        schema.upgrade(engine, "0011")
        with Session(engine) as session, session.begin():
            for pid, precision in ((1, "int8-bnb"), (2, None)):
                session.execute(insert(Post.__table__).values(id=pid, source="s", external_id=f"e{pid}", text="t",
                                                              status="decided"))  # fmt: skip
                session.execute(insert(Verdict.__table__).values(
                    id=pid, post_id=pid, provider="transformers", model_id="m", prompt_version="v",
                    input_hash=f"h{pid}", parse_status="ok", violation=False, category=None, confidence=0.9,
                    tags=[], parse_notes=[], model_precision=precision))  # fmt: skip
                session.execute(insert(ReviewEvent.__table__).values(
                    id=pid, post_id=pid, action="confirm", verdict_id=pid, label_violation=False))  # fmt: skip
            session.execute(  # the table as it was at 0011 (no model_precision)
                insert(PostLabel.__table__).from_select(
                    ["post_id", "event_id", "decided_at", "decided_day", "first_decided_at", "raters",
                     "human_violation", "human_category", "verdict_id", "usable", "source", "ingested_at"],
                    select(Post.id, Post.id.label("event_id"), Post.ingested_at, literal("2026-12-06"),
                           Post.ingested_at.label("first"), literal(1), literal(False), literal("none"),
                           Post.id.label("verdict_id"), literal(True), Post.source, Post.ingested_at.label("in")),
                )
            )  # fmt: skip
        assert "model_precision" not in slices_index()
        schema.upgrade(engine)
        with Session(engine) as session:
            stored = {label.post_id: label.model_precision for label in session.scalars(select(PostLabel))}
        assert stored == {1: "int8-bnb", 2: None}
        assert slices_index()[:5] == ["model_id", "prompt_version", "provider", "model_precision", "source"]
        schema.downgrade(engine, "0011")
        assert "model_precision" not in {c["name"] for c in inspect(engine).get_columns("post_label")}
        assert slices_index()[:4] == ["model_id", "prompt_version", "provider", "source"]
        schema.upgrade(engine)
        schema.require_current(engine)
    finally:
        engine.dispose()

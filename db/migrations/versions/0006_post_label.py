"""post_label: the metrics' projection of each settled post's latest human label and the verdict
that was on screen for it (see review/labels.py), filled from the existing events; and
review_event.undoes_id, the decision an undo's reopen takes back (filled from their notes)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # as db.models.BigID
STAMP = sa.DateTime(timezone=True)  # as db.models.UTCDateTime

# The rule of review.labels.label_rows as it stood at this revision (a migration must not change
# with later code).
BACKFILL = """
INSERT INTO post_label (post_id, event_id, decided_at, decided_day, first_decided_at, decided_by_id, raters, human_violation,
    human_category, verdict_id, usable, model_violation, model_category, confidence, provider, model_id,
    prompt_version, source, ingested_at)
SELECT l.post_id, l.event_id, e.created_at, {day}, l.first_at, e.user_id, l.raters,
    e.label_violation IS TRUE,
    CASE WHEN e.label_violation IS TRUE THEN coalesce(e.label_category, 'other') ELSE 'none' END,
    e.verdict_id, coalesce(v.parse_status IN ('ok', 'repaired'), FALSE),
    CASE WHEN v.parse_status IN ('ok', 'repaired') THEN v.violation IS TRUE END,
    CASE WHEN v.parse_status IN ('ok', 'repaired') THEN CASE WHEN v.violation IS TRUE THEN v.category ELSE 'none' END END,
    CASE WHEN v.parse_status IN ('ok', 'repaired') THEN v.confidence END,
    v.provider, v.model_id, v.prompt_version, p.source, p.ingested_at
FROM (SELECT post_id, max(id) AS event_id, min(created_at) AS first_at, count(DISTINCT user_id) AS raters
      FROM review_event WHERE action IN ('confirm', 'overturn')
      AND id NOT IN (SELECT undoes_id FROM review_event WHERE undoes_id IS NOT NULL)
      GROUP BY post_id) l
JOIN review_event e ON e.id = l.event_id
JOIN post p ON p.id = l.post_id
LEFT JOIN verdict v ON v.id = e.verdict_id
WHERE p.status IN ('decided', 'second_review')
"""


DAY = {  # the UTC day of the decision, as review.labels.utc_day
    "sqlite": "date(e.created_at)",
    "postgresql": "to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
}


UNDO_NOTE = re.compile(r"^undo of event (\d+) ")  # what decisions.undo wrote before this revision


def upgrade() -> None:
    with op.batch_alter_table("review_event") as batch:
        batch.add_column(sa.Column("undoes_id", ID, nullable=True))
        batch.create_foreign_key(op.f("fk_review_event_undoes_id_review_event"), "review_event", ["undoes_id"], ["id"])
    undoes = sa.text("undoes_id IS NOT NULL")  # partial: only reopens written by undo have one
    op.create_index("ix_review_event_undoes_id", "review_event", ["undoes_id"], sqlite_where=undoes,
                    postgresql_where=undoes)  # fmt: skip
    bind = op.get_bind()
    reopens = bind.execute(sa.text("SELECT id, note FROM review_event WHERE action = 'reopen' AND note IS NOT NULL"))
    for reopen_id, note in reopens.all():
        found = UNDO_NOTE.match(note)
        if found:
            bind.execute(sa.text("UPDATE review_event SET undoes_id = :undone WHERE id = :id"),
                         {"undone": int(found.group(1)), "id": reopen_id})  # fmt: skip
    op.create_table(
        "post_label",
        sa.Column("post_id", ID, nullable=False),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("decided_at", STAMP, nullable=False),
        sa.Column("decided_day", sa.String(10), nullable=False),
        sa.Column("first_decided_at", STAMP, nullable=False),
        sa.Column("decided_by_id", ID, nullable=True),
        sa.Column("raters", sa.Integer(), nullable=False),
        sa.Column("human_violation", sa.Boolean(), nullable=False),
        sa.Column("human_category", sa.String(64), nullable=False),
        sa.Column("verdict_id", ID, nullable=True),
        sa.Column("usable", sa.Boolean(), nullable=False),
        sa.Column("model_violation", sa.Boolean(), nullable=True),
        sa.Column("model_category", sa.String(64), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("provider", sa.String(32), nullable=True),
        sa.Column("model_id", sa.String(255), nullable=True),
        sa.Column("prompt_version", sa.String(64), nullable=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("ingested_at", STAMP, nullable=False),
        sa.ForeignKeyConstraint(["post_id"], ["post.id"], name=op.f("fk_post_label_post_id_post"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["event_id"], ["review_event.id"], name=op.f("fk_post_label_event_id_review_event")),
        sa.ForeignKeyConstraint(["decided_by_id"], ["app_user.id"], name=op.f("fk_post_label_decided_by_id_app_user")),
        sa.ForeignKeyConstraint(["verdict_id"], ["verdict.id"], name=op.f("fk_post_label_verdict_id_verdict")),
        sa.PrimaryKeyConstraint("post_id", name=op.f("pk_post_label")),
    )
    op.execute(BACKFILL.format(day=DAY[op.get_bind().dialect.name]))  # before the indexes: faster
    cells = ["usable", "human_violation", "model_violation", "human_category", "model_category"]
    op.create_index("ix_post_label_cells", "post_label",
                    [*cells, "confidence", "decided_at", "source", "model_id", "prompt_version"])  # fmt: skip
    op.create_index(
        "ix_post_label_days",
        "post_label",
        ["decided_day", *cells, "decided_at", "source", "model_id", "prompt_version"],
    )
    op.create_index("ix_post_label_slices", "post_label",
                    ["model_id", "prompt_version", "provider", "source", *cells, "decided_at"])  # fmt: skip
    op.create_index("ix_post_label_raters", "post_label", ["raters"])


def downgrade() -> None:
    op.drop_table("post_label")
    op.drop_index("ix_review_event_undoes_id", table_name="review_event")
    with op.batch_alter_table("review_event") as batch:
        batch.drop_constraint(op.f("fk_review_event_undoes_id_review_event"), type_="foreignkey")
        batch.drop_column("undoes_id")

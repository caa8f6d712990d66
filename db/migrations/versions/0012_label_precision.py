"""post_label.model_precision: the precision of the verdict on screen (float32, bfloat16,
int8-dynamic, int8-bnb; None when not recorded), filled from the verdicts, so that the accuracy
slices tell int8 verdicts from full-precision ones; the slices index groups on it too

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CELLS = ["usable", "human_violation", "model_violation", "human_category", "model_category"]
GROUPS = ["model_id", "prompt_version", "provider"]  # the slices index's keys before the precision

BACKFILL = """
UPDATE post_label SET model_precision = (SELECT v.model_precision FROM verdict v WHERE v.id = post_label.verdict_id)
WHERE verdict_id IS NOT NULL
"""


def upgrade() -> None:
    op.add_column("post_label", sa.Column("model_precision", sa.String(32), nullable=True))
    op.execute(BACKFILL)
    op.drop_index("ix_post_label_slices", table_name="post_label")
    op.create_index("ix_post_label_slices", "post_label", [*GROUPS, "model_precision", "source", *CELLS, "decided_at"])


def downgrade() -> None:
    op.drop_index("ix_post_label_slices", table_name="post_label")
    with op.batch_alter_table("post_label") as batch:
        batch.drop_column("model_precision")
    op.create_index("ix_post_label_slices", "post_label", [*GROUPS, "source", *CELLS, "decided_at"])

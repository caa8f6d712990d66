"""queue: the current verdict's category and violation on the post; indexes in queue order;
the status a decision found the post in (for undo)

The queue index sorts priority descending, so ties go oldest first without a sort; filters on
the current verdict's category or violation get indexes of their own in the same order.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


QUEUE_ORDER: list[str | sa.TextClause] = [sa.text("priority DESC"), "id"]


def upgrade() -> None:
    with op.batch_alter_table("post") as batch:
        # The post's current (latest) verdict; no foreign key: verdict already points at post.
        batch.add_column(sa.Column("verdict_id", sa.BigInteger(), nullable=True))
        # Copied from that verdict when it is usable (NULL: unscored, or the model failed).
        batch.add_column(sa.Column("verdict_category", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("verdict_violation", sa.Boolean(), nullable=True))
    with op.batch_alter_table("review_event") as batch:
        # For decisions: where the post waited before (queued / escalated); undo restores it.
        batch.add_column(sa.Column("status_before", sa.String(length=16), nullable=True))
    op.execute("UPDATE post SET verdict_id = (SELECT max(v.id) FROM verdict v WHERE v.post_id = post.id)")
    usable = "v.id = post.verdict_id AND v.parse_status IN ('ok', 'repaired')"
    op.execute(
        "UPDATE post SET verdict_category = (SELECT CASE WHEN v.violation THEN v.category ELSE 'none' END "
        f"FROM verdict v WHERE {usable}), "
        f"verdict_violation = (SELECT v.violation FROM verdict v WHERE {usable})"
    )
    # (status, priority, id) read backwards gives priority DESC, id DESC: posts of equal priority
    # (every escalation, every "none" verdict) had to be sorted by id for "oldest first".
    op.drop_index("ix_post_queue", table_name="post")
    op.create_index("ix_post_queue", "post", ["status", *QUEUE_ORDER], unique=False)
    op.create_index("ix_post_queue_category", "post", ["status", "verdict_category", *QUEUE_ORDER], unique=False)
    op.create_index("ix_post_queue_violation", "post", ["status", "verdict_violation", *QUEUE_ORDER], unique=False)


def downgrade() -> None:
    op.drop_index("ix_post_queue_violation", table_name="post")
    op.drop_index("ix_post_queue_category", table_name="post")
    op.drop_index("ix_post_queue", table_name="post")
    op.create_index("ix_post_queue", "post", ["status", "priority", "id"], unique=False)
    with op.batch_alter_table("review_event") as batch:
        batch.drop_column("status_before")
    with op.batch_alter_table("post") as batch:
        batch.drop_column("verdict_violation")
        batch.drop_column("verdict_category")
        batch.drop_column("verdict_id")

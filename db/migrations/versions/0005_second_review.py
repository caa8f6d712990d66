"""second review and preferences: the post status ``second_review`` with the moderator whose
decision is checked; each user's display preferences; an index to find a moderator's claim

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # as db.models.BigID
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
OLD_STATUSES = "status IN ('unscored', 'queued', 'in_review', 'decided', 'escalated')"
NEW_STATUSES = "status IN ('unscored', 'queued', 'in_review', 'decided', 'escalated', 'second_review')"
QUEUE_INDEXES = {
    "ix_post_queue": [],
    "ix_post_queue_category": ["verdict_category"],
    "ix_post_queue_violation": ["verdict_violation"],
}


def _status_check(condition: str) -> None:
    # SQLite rebuilds the table for a new CHECK constraint; its expression indexes (priority
    # DESC) do not survive the copy, so they are dropped first and made again afterwards.
    # Postgres changes the constraint in place and keeps its indexes.
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        for name in QUEUE_INDEXES:
            op.drop_index(name, table_name="post")
    with op.batch_alter_table("post", recreate="auto") as batch:
        batch.drop_constraint(op.f("ck_post_status"), type_="check")
        batch.create_check_constraint(op.f("ck_post_status"), condition)
    if sqlite:
        for name, columns in QUEUE_INDEXES.items():
            op.create_index(name, "post", ["status", *columns, sa.text("priority DESC"), "id"], unique=False)


def upgrade() -> None:
    with op.batch_alter_table("post") as batch:
        batch.add_column(sa.Column("first_decider_id", ID, nullable=True))
        batch.create_foreign_key(op.f("fk_post_first_decider_id_app_user"), "app_user", ["first_decider_id"], ["id"])
    with op.batch_alter_table("app_user") as batch:
        batch.add_column(sa.Column("preferences", JSON, nullable=False, server_default="{}"))
    _status_check(NEW_STATUSES)
    claimed = sa.text("claimed_by_id IS NOT NULL")  # partial: almost every post has no claim
    op.create_index("ix_post_claimed_by_id", "post", ["claimed_by_id"], sqlite_where=claimed, postgresql_where=claimed)


def downgrade() -> None:
    op.drop_index("ix_post_claimed_by_id", table_name="post")
    # A post waiting for its second review is decided already: it goes back to "decided".
    op.execute("UPDATE post SET status = 'decided' WHERE status = 'second_review'")
    _status_check(OLD_STATUSES)
    with op.batch_alter_table("app_user") as batch:
        batch.drop_column("preferences")
    with op.batch_alter_table("post") as batch:
        batch.drop_constraint(op.f("fk_post_first_decider_id_app_user"), type_="foreignkey")
        batch.drop_column("first_decider_id")

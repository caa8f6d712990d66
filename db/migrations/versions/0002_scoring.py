"""scoring: worker leases on posts; verdict cache provenance and parse notes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("post") as batch:
        batch.add_column(sa.Column("score_lease_owner", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("score_lease_expires_at", TIMESTAMP, nullable=True))
    with op.batch_alter_table("verdict") as batch:
        batch.add_column(sa.Column("text_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("cached_from_id", ID, nullable=True))
        batch.add_column(sa.Column("parse_notes", JSON, nullable=False, server_default=sa.text("'[]'")))
        batch.create_foreign_key(op.f("fk_verdict_cached_from_id_verdict"), "verdict", ["cached_from_id"], ["id"])
        batch.create_index("ix_verdict_text_hash", ["text_hash"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("verdict") as batch:
        batch.drop_index("ix_verdict_text_hash")
        batch.drop_constraint(op.f("fk_verdict_cached_from_id_verdict"), type_="foreignkey")
        batch.drop_column("parse_notes")
        batch.drop_column("cached_from_id")
        batch.drop_column("text_hash")
    with op.batch_alter_table("post") as batch:
        batch.drop_column("score_lease_expires_at")
        batch.drop_column("score_lease_owner")

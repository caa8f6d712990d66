"""The precision a verdict's model ran in (``verdict.model_precision``: float32, bfloat16, int8),
so that int8 verdicts can be told from full-precision ones

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("verdict", sa.Column("model_precision", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("verdict") as batch:
        batch.drop_column("model_precision")

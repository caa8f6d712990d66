"""signals: near-duplicate clusters and the extra hashes on media

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("media") as batch:
        # phash of the image without uniform bands at its edges (caption bars, borders)
        batch.add_column(sa.Column("content_phash", sa.String(length=16), nullable=True))
        # phashes of the four corner crops, comma-separated (finds reposts cut at one corner)
        batch.add_column(sa.Column("corner_phashes", sa.String(length=67), nullable=True))
        # mean colours of a 4x4 grid, hex (tells apart same-layout pictures in other colours)
        batch.add_column(sa.Column("colour_signature", sa.String(length=96), nullable=True))
        # the near-duplicate cluster: the id of the cluster's first image (NULL: not computed yet)
        batch.add_column(sa.Column("dup_cluster", sa.BigInteger(), nullable=True))
        # (dup_cluster, id): the signals runner pages through the NULLs in id order
        batch.create_index("ix_media_dup_cluster", ["dup_cluster", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("media") as batch:
        batch.drop_index("ix_media_dup_cluster")
        batch.drop_column("dup_cluster")
        batch.drop_column("colour_signature")
        batch.drop_column("corner_phashes")
        batch.drop_column("content_phash")

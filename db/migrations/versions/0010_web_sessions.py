"""Sign-in sessions of the app (``web_session``): the server-side half of the session cookie
that keeps a user signed in across reloads and tabs, ended by sign-out, timeouts, deactivation
and password or role changes

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # as db.models.BigID
STAMP = sa.DateTime(timezone=True)  # as db.models.UTCDateTime
# a frozen copy of the check as db.models builds it from SessionEnd at this revision
END_REASONS = (
    "end_reason IS NULL OR end_reason IN "
    "('signed_out', 'idle', 'expired', 'deactivated', 'password_changed', 'role_changed')"
)


def upgrade() -> None:
    op.create_table(
        "web_session",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=True),
        sa.Column("handoff_hash", sa.String(64), nullable=True),
        sa.Column("handoff_expires_at", STAMP, nullable=True),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("last_seen_at", STAMP, nullable=False),
        sa.Column("expires_at", STAMP, nullable=False),
        sa.Column("ended_at", STAMP, nullable=True),
        sa.Column("end_reason", sa.String(32), nullable=True),
        sa.CheckConstraint(END_REASONS, name=op.f("ck_web_session_end_reason")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name=op.f("fk_web_session_user_id_app_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_session")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_web_session_token_hash")),
        sa.UniqueConstraint("handoff_hash", name=op.f("uq_web_session_handoff_hash")),
    )
    op.create_index(op.f("ix_web_session_user_id"), "web_session", ["user_id"])


def downgrade() -> None:
    op.drop_table("web_session")

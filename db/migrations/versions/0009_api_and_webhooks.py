"""The desk wired into a platform: API tokens, reports on posts (``post_report`` and the post's
``report_count``), the ``requeue`` event that reports on a decided post may cause, and the
transactional outbox of outgoing events with its webhook endpoints and deliveries

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # as db.models.BigID
STAMP = sa.DateTime(timezone=True)  # as db.models.UTCDateTime

# frozen copies of the check as db.models builds it from EventAction at this revision
OLD_ACTIONS = "action IN ('claim', 'release', 'confirm', 'overturn', 'escalate', 'skip', 'reopen')"
NEW_ACTIONS = "action IN ('claim', 'release', 'confirm', 'overturn', 'escalate', 'skip', 'reopen', 'requeue')"
UNDOES = sa.text("undoes_id IS NOT NULL")
PENDING = sa.text("status = 'pending'")


@contextmanager
def _rebuilding_events() -> Iterator[None]:
    # SQLite copies review_event for a changed CHECK constraint; its partial index does not
    # survive the copy (as in 0008). Postgres changes the table in place.
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.drop_index("ix_review_event_undoes_id", table_name="review_event")
    yield
    if sqlite:
        op.create_index("ix_review_event_undoes_id", "review_event", ["undoes_id"], sqlite_where=UNDOES)


def upgrade() -> None:
    with _rebuilding_events(), op.batch_alter_table("review_event", recreate="auto") as batch:
        batch.drop_constraint(op.f("ck_review_event_action"), type_="check")
        batch.create_check_constraint(op.f("ck_review_event_action"), NEW_ACTIONS)
    op.add_column("post", sa.Column("report_count", sa.Integer(), nullable=False, server_default="0"))

    op.create_table(
        "api_token",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("hint", sa.String(16), nullable=False),
        sa.Column("scopes", sa.String(255), nullable=False),
        sa.Column("created_by_id", ID, nullable=True),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("last_used_at", STAMP, nullable=True),
        sa.Column("revoked_at", STAMP, nullable=True),
        sa.ForeignKeyConstraint(["created_by_id"], ["app_user.id"], name=op.f("fk_api_token_created_by_id_app_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("name", name=op.f("uq_api_token_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_token_token_hash")),
    )
    op.create_table(
        "post_report",
        sa.Column("id", ID, nullable=False),
        sa.Column("post_id", ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(255), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("status_at_arrival", sa.String(16), nullable=False),
        sa.Column("after_event_id", ID, nullable=True),
        sa.Column("token_id", ID, nullable=True),
        sa.CheckConstraint("kind IN ('user_report', 'classifier')", name=op.f("ck_post_report_kind")),
        sa.CheckConstraint("count >= 1", name=op.f("ck_post_report_count")),
        sa.ForeignKeyConstraint(
            ["post_id"], ["post.id"], name=op.f("fk_post_report_post_id_post"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(["token_id"], ["api_token.id"], name=op.f("fk_post_report_token_id_api_token")),
        sa.ForeignKeyConstraint(
            ["after_event_id"], ["review_event.id"], name=op.f("fk_post_report_after_event_id_review_event")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_post_report")),
    )
    op.create_index("ix_post_report_post_id", "post_report", ["post_id", "after_event_id"])
    op.create_table(
        "webhook_endpoint",
        sa.Column("id", ID, nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("event_types", sa.String(512), nullable=False),
        sa.Column("secret", sa.String(100), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(255), nullable=True),
        sa.Column("created_by_id", ID, nullable=True),
        sa.Column("created_at", STAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["app_user.id"], name=op.f("fk_webhook_endpoint_created_by_id_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoint")),
    )
    op.create_table(
        "outbox_event",
        sa.Column("id", ID, nullable=False),
        sa.Column("uid", sa.String(40), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("review_event_id", ID, nullable=False),
        sa.Column("post_id", ID, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["post_id"], ["post.id"], name=op.f("fk_outbox_event_post_id_post"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["review_event_id"],
            ["review_event.id"],
            name=op.f("fk_outbox_event_review_event_id_review_event"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_event")),
        sa.UniqueConstraint("uid", name=op.f("uq_outbox_event_uid")),
        sa.UniqueConstraint("seq", name=op.f("uq_outbox_event_seq")),
        sa.UniqueConstraint("review_event_id", name=op.f("uq_outbox_event_review_event_id")),
    )
    op.create_index("ix_outbox_event_post_id", "outbox_event", ["post_id", "seq"])
    op.create_table(
        "outbox_clock",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_clock")),
    )
    op.execute("INSERT INTO outbox_clock (id, seq) VALUES (1, 0)")
    op.create_table(
        "webhook_delivery",
        sa.Column("id", ID, nullable=False),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("endpoint_id", ID, nullable=False),
        sa.Column("post_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", STAMP, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", STAMP, nullable=True),
        sa.Column("last_attempt_at", STAMP, nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("delivered_at", STAMP, nullable=True),
        sa.Column("dead_at", STAMP, nullable=True),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'dead')", name=op.f("ck_webhook_delivery_status")),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoint.id"],
            name=op.f("fk_webhook_delivery_endpoint_id_webhook_endpoint"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["outbox_event.id"],
            name=op.f("fk_webhook_delivery_event_id_outbox_event"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_delivery")),
        sa.UniqueConstraint("event_id", "endpoint_id", name=op.f("uq_webhook_delivery_event_id_endpoint_id")),
    )
    op.create_index(
        "ix_webhook_delivery_due",
        "webhook_delivery",
        ["next_attempt_at", "seq"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )
    op.create_index(
        "ix_webhook_delivery_order",
        "webhook_delivery",
        ["endpoint_id", "post_id", "seq"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )
    op.create_index("ix_webhook_delivery_endpoint_status", "webhook_delivery", ["endpoint_id", "status", "id"])


def downgrade() -> None:
    for table in ("webhook_delivery", "outbox_clock", "outbox_event", "webhook_endpoint", "post_report", "api_token"):
        op.drop_table(table)
    with op.batch_alter_table("post") as batch:
        batch.drop_column("report_count")
    with _rebuilding_events(), op.batch_alter_table("review_event", recreate="auto") as batch:
        batch.drop_constraint(op.f("ck_review_event_action"), type_="check")
        batch.create_check_constraint(op.f("ck_review_event_action"), OLD_ACTIONS)

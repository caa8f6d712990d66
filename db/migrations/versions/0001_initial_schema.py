"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Column types, frozen here: this migration must not change when db/models.py does.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "app_user",
        sa.Column("id", ID, nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("last_login_at", TIMESTAMP, nullable=True),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", TIMESTAMP, nullable=True),
        sa.CheckConstraint("role IN ('moderator', 'lead', 'admin')", name=op.f("ck_app_user_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_user")),
        sa.UniqueConstraint("username", name=op.f("uq_app_user_username")),
    )
    op.create_table(
        "media",
        sa.Column("id", ID, nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("thumb_path", sa.String(length=255), nullable=False),
        sa.Column("mime", sa.String(length=32), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("phash", sa.String(length=16), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media")),
        sa.UniqueConstraint("sha256", name=op.f("uq_media_sha256")),
    )
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.create_index("ix_media_phash", ["phash"], unique=False)

    op.create_table(
        "export",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("filters", JSON, nullable=False),
        sa.Column("counts", JSON, nullable=False),
        sa.Column("output_path", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["app_user.id"], name=op.f("fk_export_user_id_app_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export")),
    )
    op.create_table(
        "post",
        sa.Column("id", ID, nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=255), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=True),
        sa.Column("ingested_at", TIMESTAMP, nullable=False),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("claimed_by_id", ID, nullable=True),
        sa.Column("lease_expires_at", TIMESTAMP, nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "status IN ('unscored', 'queued', 'in_review', 'decided', 'escalated')",
            name=op.f("ck_post_status"),
        ),
        sa.ForeignKeyConstraint(["claimed_by_id"], ["app_user.id"], name=op.f("fk_post_claimed_by_id_app_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_post")),
        sa.UniqueConstraint("source", "external_id", name=op.f("uq_post_source_external_id")),
    )
    with op.batch_alter_table("post", schema=None) as batch_op:
        batch_op.create_index("ix_post_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_post_ingested_at", ["ingested_at"], unique=False)
        batch_op.create_index("ix_post_queue", ["status", "priority", "id"], unique=False)

    op.create_table(
        "finetune_run",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=True),
        sa.Column("export_id", ID, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("base_model", sa.String(length=255), nullable=False),
        sa.Column("adapter_path", sa.Text(), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("metrics", JSON, nullable=False),
        sa.ForeignKeyConstraint(["export_id"], ["export.id"], name=op.f("fk_finetune_run_export_id_export")),
        sa.ForeignKeyConstraint(["user_id"], ["app_user.id"], name=op.f("fk_finetune_run_user_id_app_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finetune_run")),
    )
    op.create_table(
        "post_media",
        sa.Column("post_id", ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("media_id", ID, nullable=False),
        sa.Column("original_name", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["media_id"], ["media.id"], name=op.f("fk_post_media_media_id_media")),
        sa.ForeignKeyConstraint(["post_id"], ["post.id"], name=op.f("fk_post_media_post_id_post"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("post_id", "position", name=op.f("pk_post_media")),
    )
    with op.batch_alter_table("post_media", schema=None) as batch_op:
        batch_op.create_index("ix_post_media_media_id", ["media_id"], unique=False)

    op.create_table(
        "signal",
        sa.Column("id", ID, nullable=False),
        sa.Column("post_id", ID, nullable=True),
        sa.Column("media_id", ID, nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("value", JSON, nullable=False),
        sa.Column("producer", sa.String(length=64), nullable=False),
        sa.Column("producer_version", sa.String(length=64), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("post_id IS NOT NULL OR media_id IS NOT NULL", name=op.f("ck_signal_subject")),
        sa.ForeignKeyConstraint(["media_id"], ["media.id"], name=op.f("fk_signal_media_id_media")),
        sa.ForeignKeyConstraint(["post_id"], ["post.id"], name=op.f("fk_signal_post_id_post"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signal")),
    )
    with op.batch_alter_table("signal", schema=None) as batch_op:
        batch_op.create_index("ix_signal_media_kind", ["media_id", "kind"], unique=False)
        batch_op.create_index("ix_signal_post_kind", ["post_id", "kind"], unique=False)

    op.create_table(
        "verdict",
        sa.Column("id", ID, nullable=False),
        sa.Column("post_id", ID, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("model_id", sa.String(length=255), nullable=False),
        sa.Column("model_revision", sa.String(length=64), nullable=True),
        sa.Column("adapter", sa.String(length=255), nullable=True),
        sa.Column("prompt_version", sa.String(length=64), nullable=False),
        sa.Column("input_hash", sa.String(length=64), nullable=False),
        sa.Column("cache_hit", sa.Boolean(), nullable=False),
        sa.Column("violation", sa.Boolean(), nullable=True),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("severity", sa.Integer(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("image_text_consistency", sa.String(length=16), nullable=True),
        sa.Column("consistency_reason", sa.Text(), nullable=True),
        sa.Column("sentiment", sa.String(length=16), nullable=True),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("ocr_text", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("rationale", sa.Text(), nullable=True),
        sa.Column("raw_output", sa.Text(), nullable=True),
        sa.Column("parse_status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["post_id"], ["post.id"], name=op.f("fk_verdict_post_id_post"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verdict")),
    )
    with op.batch_alter_table("verdict", schema=None) as batch_op:
        batch_op.create_index("ix_verdict_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_verdict_input_hash", ["input_hash"], unique=False)
        batch_op.create_index("ix_verdict_model_prompt", ["model_id", "prompt_version"], unique=False)
        batch_op.create_index("ix_verdict_post_id", ["post_id", "id"], unique=False)

    op.create_table(
        "review_event",
        sa.Column("id", ID, nullable=False),
        sa.Column("post_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("verdict_id", ID, nullable=True),
        sa.Column("label_violation", sa.Boolean(), nullable=True),
        sa.Column("label_category", sa.String(length=64), nullable=True),
        sa.Column("label_severity", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("time_spent_ms", sa.Integer(), nullable=True),
        sa.Column("lease_expires_at", TIMESTAMP, nullable=True),
        sa.Column("bulk_id", sa.String(length=36), nullable=True),
        sa.Column("second_review", sa.Boolean(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "action IN ('claim', 'release', 'confirm', 'overturn', 'escalate', 'skip', 'comment', 'reopen', 'bulk')",
            name=op.f("ck_review_event_action"),
        ),
        sa.ForeignKeyConstraint(
            ["post_id"], ["post.id"], name=op.f("fk_review_event_post_id_post"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["app_user.id"], name=op.f("fk_review_event_user_id_app_user")),
        sa.ForeignKeyConstraint(["verdict_id"], ["verdict.id"], name=op.f("fk_review_event_verdict_id_verdict")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_event")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_review_event_idempotency_key")),
    )
    with op.batch_alter_table("review_event", schema=None) as batch_op:
        batch_op.create_index("ix_review_event_action_created", ["action", "created_at"], unique=False)
        batch_op.create_index("ix_review_event_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_review_event_post_id", ["post_id", "id"], unique=False)
        batch_op.create_index("ix_review_event_user_created", ["user_id", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("review_event", schema=None) as batch_op:
        batch_op.drop_index("ix_review_event_user_created")
        batch_op.drop_index("ix_review_event_post_id")
        batch_op.drop_index("ix_review_event_created_at")
        batch_op.drop_index("ix_review_event_action_created")

    op.drop_table("review_event")
    with op.batch_alter_table("verdict", schema=None) as batch_op:
        batch_op.drop_index("ix_verdict_post_id")
        batch_op.drop_index("ix_verdict_model_prompt")
        batch_op.drop_index("ix_verdict_input_hash")
        batch_op.drop_index("ix_verdict_created_at")

    op.drop_table("verdict")
    with op.batch_alter_table("signal", schema=None) as batch_op:
        batch_op.drop_index("ix_signal_post_kind")
        batch_op.drop_index("ix_signal_media_kind")

    op.drop_table("signal")
    with op.batch_alter_table("post_media", schema=None) as batch_op:
        batch_op.drop_index("ix_post_media_media_id")

    op.drop_table("post_media")
    op.drop_table("finetune_run")
    with op.batch_alter_table("post", schema=None) as batch_op:
        batch_op.drop_index("ix_post_queue")
        batch_op.drop_index("ix_post_ingested_at")
        batch_op.drop_index("ix_post_created_at")

    op.drop_table("post")
    op.drop_table("export")
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.drop_index("ix_media_phash")

    op.drop_table("media")
    op.drop_table("app_user")

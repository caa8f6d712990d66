"""A system of record: the append-only audit_event table (refusing UPDATE and DELETE by
trigger), login_throttle (failed sign-ins per account, client and pair, replacing the counters
on app_user), the post's erasure tombstone (purged_at, purge_event_id), and review events that
keep their post (ON DELETE RESTRICT instead of CASCADE: purge is the only way out)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # as db.models.BigID
STAMP = sa.DateTime(timezone=True)  # as db.models.UTCDateTime
JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")  # as db.models.JSONType

APPEND_ONLY = "audit_event is append-only"
TRIGGERS = {
    "sqlite": [
        f"CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event "
        f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END",
        f"CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event "
        f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END",
    ],
    "postgresql": [
        "CREATE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$",
        "CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON audit_event "
        "FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()",
        "CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()",
    ],
}
DROP_TRIGGERS = {
    "sqlite": ["DROP TRIGGER audit_event_no_update", "DROP TRIGGER audit_event_no_delete"],
    "postgresql": [
        "DROP TRIGGER audit_event_no_change ON audit_event",
        "DROP TRIGGER audit_event_no_truncate ON audit_event",
        "DROP FUNCTION audit_event_append_only()",
    ],
}


QUEUE_INDEXES = {  # as 0004 and 0005 made them
    "ix_post_queue": [],
    "ix_post_queue_category": ["verdict_category"],
    "ix_post_queue_violation": ["verdict_violation"],
}
CLAIMED = sa.text("claimed_by_id IS NOT NULL")
UNDOES = sa.text("undoes_id IS NOT NULL")


@contextmanager
def _rebuilding_post() -> Iterator[None]:
    # SQLite copies the post table for a new foreign key; its expression indexes (priority DESC)
    # and partial index do not survive the copy, so they are dropped first and made again.
    # Postgres changes the table in place.
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        for name in [*QUEUE_INDEXES, "ix_post_claimed_by_id"]:
            op.drop_index(name, table_name="post")
    yield
    if sqlite:
        for name, columns in QUEUE_INDEXES.items():
            op.create_index(name, "post", ["status", *columns, sa.text("priority DESC"), "id"], unique=False)
        op.create_index("ix_post_claimed_by_id", "post", ["claimed_by_id"], sqlite_where=CLAIMED)


def _post_of_events(ondelete: str) -> None:
    # SQLite copies review_event for the changed foreign key; its partial index goes first.
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.drop_index("ix_review_event_undoes_id", table_name="review_event")
    with op.batch_alter_table("review_event") as batch:
        batch.drop_constraint(op.f("fk_review_event_post_id_post"), type_="foreignkey")
        batch.create_foreign_key(op.f("fk_review_event_post_id_post"), "post", ["post_id"], ["id"], ondelete=ondelete)
    if sqlite:
        op.create_index("ix_review_event_undoes_id", "review_event", ["undoes_id"], sqlite_where=UNDOES)


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column("id", ID, nullable=False),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("actor_id", ID, nullable=True),
        sa.Column("actor_name", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(255), nullable=True),
        sa.Column("client", sa.String(64), nullable=True),
        sa.Column("details", JSON, nullable=False),
        sa.ForeignKeyConstraint(["actor_id"], ["app_user.id"], name=op.f("fk_audit_event_actor_id_app_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    op.create_index("ix_audit_event_created_at", "audit_event", ["created_at"])
    op.create_index("ix_audit_event_action_created", "audit_event", ["action", "created_at"])
    for statement in TRIGGERS[op.get_bind().dialect.name]:
        op.execute(statement)

    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", STAMP, nullable=False),
        sa.Column("locked_until", STAMP, nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttle")),
    )
    # The old per-account counters are not carried over: a lock in progress ends with the upgrade.
    with op.batch_alter_table("app_user") as batch:
        batch.drop_column("failed_logins")
        batch.drop_column("locked_until")

    with _rebuilding_post(), op.batch_alter_table("post") as batch:
        batch.add_column(sa.Column("purged_at", STAMP, nullable=True))
        batch.add_column(sa.Column("purge_event_id", ID, nullable=True))
        batch.create_foreign_key(op.f("fk_post_purge_event_id_audit_event"), "audit_event", ["purge_event_id"], ["id"])

    _post_of_events("RESTRICT")


def downgrade() -> None:
    _post_of_events("CASCADE")
    with _rebuilding_post(), op.batch_alter_table("post") as batch:
        batch.drop_constraint(op.f("fk_post_purge_event_id_audit_event"), type_="foreignkey")
        batch.drop_column("purge_event_id")
        batch.drop_column("purged_at")
    with op.batch_alter_table("app_user") as batch:
        batch.add_column(sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("locked_until", STAMP, nullable=True))
    op.drop_table("login_throttle")
    for statement in DROP_TRIGGERS[op.get_bind().dialect.name]:
        op.execute(statement)
    op.drop_index("ix_audit_event_action_created", table_name="audit_event")
    op.drop_index("ix_audit_event_created_at", table_name="audit_event")
    op.drop_table("audit_event")

"""post status as a projection: the values nothing writes go (the status ``in_review``, the event
actions ``comment`` and ``bulk``, the per-post signal ``signal.post_id``: signals are per image), and a decision records whether it sends the post to a (further)
second review (``review_event.to_second_review``), the one fact review/status.py needs beyond the
event's action to recompute the status

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

from db.errors import MigrationRefused

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# frozen copies of the checks as db.models builds them from its enums at this revision
OLD_STATUSES = "status IN ('unscored', 'queued', 'in_review', 'decided', 'escalated', 'second_review')"
NEW_STATUSES = "status IN ('unscored', 'queued', 'decided', 'escalated', 'second_review')"
OLD_ACTIONS = "action IN ('claim', 'release', 'confirm', 'overturn', 'escalate', 'skip', 'comment', 'reopen', 'bulk')"
NEW_ACTIONS = "action IN ('claim', 'release', 'confirm', 'overturn', 'escalate', 'skip', 'reopen')"
DEAD = {  # what the new checks refuse → the count that must be zero first
    "post.status 'in_review'": "SELECT count(*) FROM post WHERE status = 'in_review'",
    "review_event.action 'comment' or 'bulk'": "SELECT count(*) FROM review_event WHERE action IN ('comment', 'bulk')",
    "signal.post_id": "SELECT count(*) FROM signal WHERE post_id IS NOT NULL",
}
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # db.models.BigID
# A confirm / overturn sent its post to a (further) second review when the post's next decision
# was taken in second review or, with no decision after it, when the post waits in second review now.
# A decision that was undone before 0008 left no trace of where it sent the post (the undo restored
# the status before it), so it is read as not sent: FALSE. The status replays right either way (an
# undo restores the recorded status whatever the decision did), and an undone decision is not a
# standing label; only this flag of those old rows may be wrong.
BACKFILL = """
UPDATE review_event SET to_second_review = TRUE
WHERE action IN ('confirm', 'overturn') AND bulk_id IS NULL AND status_before IN ('queued', 'second_review')
  AND COALESCE(
    (SELECT later.status_before FROM review_event later
      WHERE later.post_id = review_event.post_id AND later.id > review_event.id
        AND later.action IN ('confirm', 'overturn', 'escalate', 'skip')
      ORDER BY later.id LIMIT 1),
    (SELECT post.status FROM post WHERE post.id = review_event.post_id)
  ) = 'second_review'
"""

QUEUE_INDEXES = {  # as 0004 and 0005 made them
    "ix_post_queue": [],
    "ix_post_queue_category": ["verdict_category"],
    "ix_post_queue_violation": ["verdict_violation"],
}
CLAIMED = sa.text("claimed_by_id IS NOT NULL")
UNDOES = sa.text("undoes_id IS NOT NULL")


@contextmanager
def _rebuilding(table: str) -> Iterator[None]:
    # SQLite copies the table for a changed CHECK constraint; its expression indexes (priority
    # DESC) and partial indexes do not survive the copy, so they are dropped first and made
    # again. Postgres changes the table in place.
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite and table == "post":
        for name in [*QUEUE_INDEXES, "ix_post_claimed_by_id"]:
            op.drop_index(name, table_name="post")
    if sqlite and table == "review_event":
        op.drop_index("ix_review_event_undoes_id", table_name="review_event")
    yield
    if sqlite and table == "post":
        for name, columns in QUEUE_INDEXES.items():
            op.create_index(name, "post", ["status", *columns, sa.text("priority DESC"), "id"], unique=False)
        op.create_index("ix_post_claimed_by_id", "post", ["claimed_by_id"], sqlite_where=CLAIMED)
    if sqlite and table == "review_event":
        op.create_index("ix_review_event_undoes_id", "review_event", ["undoes_id"], sqlite_where=UNDOES)


def upgrade() -> None:
    bind = op.get_bind()
    found = {what: bind.execute(sa.text(query)).scalar_one() for what, query in DEAD.items()}
    if any(found.values()):
        listed = ", ".join(f"{n} rows with {what}" for what, n in found.items() if n)
        raise MigrationRefused(
            f"cannot upgrade to 0008: the database has {listed}, values the desk never writes; "
            "nothing was changed. Look at those rows (they were not written by the review desk) and "
            "remove or correct them by hand, then upgrade again."
        )
    with _rebuilding("post"), op.batch_alter_table("post", recreate="auto") as batch:
        batch.drop_constraint(op.f("ck_post_status"), type_="check")
        batch.create_check_constraint(op.f("ck_post_status"), NEW_STATUSES)
    with _rebuilding("review_event"), op.batch_alter_table("review_event", recreate="auto") as batch:
        batch.add_column(sa.Column("to_second_review", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.drop_constraint(op.f("ck_review_event_action"), type_="check")
        batch.create_check_constraint(op.f("ck_review_event_action"), NEW_ACTIONS)
    op.execute(BACKFILL)
    with op.batch_alter_table("signal", recreate="auto") as batch:
        batch.drop_index("ix_signal_post_kind")
        batch.drop_constraint(op.f("ck_signal_subject"), type_="check")
        batch.drop_constraint(op.f("fk_signal_post_id_post"), type_="foreignkey")
        batch.drop_column("post_id")
        batch.alter_column("media_id", existing_type=ID, nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("signal", recreate="auto") as batch:
        batch.alter_column("media_id", existing_type=ID, nullable=True)
        batch.add_column(sa.Column("post_id", ID, nullable=True))
        batch.create_foreign_key(op.f("fk_signal_post_id_post"), "post", ["post_id"], ["id"], ondelete="CASCADE")
        batch.create_check_constraint(op.f("ck_signal_subject"), "post_id IS NOT NULL OR media_id IS NOT NULL")
        batch.create_index("ix_signal_post_kind", ["post_id", "kind"], unique=False)
    with _rebuilding("review_event"), op.batch_alter_table("review_event", recreate="auto") as batch:
        batch.drop_constraint(op.f("ck_review_event_action"), type_="check")
        batch.create_check_constraint(op.f("ck_review_event_action"), OLD_ACTIONS)
        batch.drop_column("to_second_review")
    with _rebuilding("post"), op.batch_alter_table("post", recreate="auto") as batch:
        batch.drop_constraint(op.f("ck_post_status"), type_="check")
        batch.create_check_constraint(op.f("ck_post_status"), OLD_STATUSES)

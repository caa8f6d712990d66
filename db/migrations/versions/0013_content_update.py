"""The ``update`` event: ingest --update replaced the content of a post nobody had decided
(review/ingest/changes.py); its note says what changed and keeps what was replaced, and
``replaced_media`` keeps the image links it replaced (erasure follows them)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# frozen copies of the check as db.models builds it from EventAction at this revision
OLD_ACTIONS = "action IN ('claim', 'release', 'confirm', 'overturn', 'escalate', 'skip', 'reopen', 'requeue')"
NEW_ACTIONS = "action IN ('claim', 'release', 'confirm', 'overturn', 'escalate', 'skip', 'reopen', 'requeue', 'update')"
UNDOES = sa.text("undoes_id IS NOT NULL")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # as db.models.BigID


@contextmanager
def _rebuilding_events() -> Iterator[None]:
    # SQLite copies review_event for a changed CHECK constraint; its partial index does not
    # survive the copy (as in 0008 and 0009). Postgres changes the table in place.
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.drop_index("ix_review_event_undoes_id", table_name="review_event")
    yield
    if sqlite:
        op.create_index("ix_review_event_undoes_id", "review_event", ["undoes_id"], sqlite_where=UNDOES)


def _check(actions: str) -> None:
    with _rebuilding_events(), op.batch_alter_table("review_event", recreate="auto") as batch:
        batch.drop_constraint(op.f("ck_review_event_action"), type_="check")
        batch.create_check_constraint(op.f("ck_review_event_action"), actions)


def upgrade() -> None:
    _check(NEW_ACTIONS)
    op.create_table(
        "replaced_media",
        sa.Column("event_id", ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("post_id", ID, nullable=False),
        sa.Column("media_id", ID, nullable=False),
        sa.Column("original_name", sa.String(255), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"], ["review_event.id"], name=op.f("fk_replaced_media_event_id_review_event")
        ),
        sa.ForeignKeyConstraint(["media_id"], ["media.id"], name=op.f("fk_replaced_media_media_id_media")),
        sa.ForeignKeyConstraint(
            ["post_id"], ["post.id"], name=op.f("fk_replaced_media_post_id_post"), ondelete="RESTRICT"
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("event_id", "position", name=op.f("pk_replaced_media")),
    )
    op.create_index("ix_replaced_media_post_id", "replaced_media", ["post_id"])
    op.create_index("ix_replaced_media_media_id", "replaced_media", ["media_id"])


def downgrade() -> None:
    # an update event cannot be expressed before this revision: refuse rather than lose history
    if op.get_bind().execute(sa.text("SELECT 1 FROM review_event WHERE action = 'update' LIMIT 1")).first():
        raise RuntimeError("review_event holds 'update' events (ingest --update); they cannot be downgraded")
    op.drop_table("replaced_media")
    _check(OLD_ACTIONS)

"""The ``update`` event: ingest --update replaced the content of a post nobody had decided
(review/ingest/changes.py); its note says what changed and keeps what was replaced

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


def downgrade() -> None:
    # an update event cannot be expressed before this revision: refuse rather than lose history
    if op.get_bind().execute(sa.text("SELECT 1 FROM review_event WHERE action = 'update' LIMIT 1")).first():
        raise RuntimeError("review_event holds 'update' events (ingest --update); they cannot be downgraded")
    _check(OLD_ACTIONS)

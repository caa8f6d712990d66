"""Alembic environment. Run through ``python -m review db upgrade`` (see db/schema.py), which
hands over an Engine in ``config.attributes["engine"]``; plain ``alembic -c`` use falls back to
DATABASE_URL from the review settings."""

from __future__ import annotations

from alembic import context

from db.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:  # there is no alembic.ini: db/schema.py runs every migration with its engine
        raise RuntimeError("run migrations with `python -m review db upgrade` (db/schema.py), not the alembic command")
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        raw = connection.connection.driver_connection if sqlite else None
        if raw is not None:
            # SQLite changes a table by copying it (batch mode) and dropping the old one; with
            # foreign keys enforced, that drop would cascade-delete every row referring to the
            # table (a post's verdicts, events, images). SQLite's documented procedure: no
            # enforcement during the change (outside any transaction), a full check before commit.
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                # SQLite cannot ALTER most things in place; batch mode copies the table instead.
                render_as_batch=sqlite,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"the migration left rows with dangling foreign keys: {broken[:5]}")
            connection.commit()
        finally:
            if raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `python -m review db upgrade`")
run_migrations_online()

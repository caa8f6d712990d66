"""``python -m review db`` (review/cli/db.py): an unreachable database, an unknown revision, a
schema newer than the code and an uncreatable folder each fail in one line, without a traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from review.cli import main
from review.desk import Desk


def test_db_commands_fail_in_one_line(
    sqlite_desk: Desk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody:pw@127.0.0.1:1/none?connect_timeout=2")
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot open the database") and "Traceback" not in err

    monkeypatch.setenv("DATABASE_URL", sqlite_desk.settings.database_url)
    assert main(["db", "downgrade", "nosuchrev"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot migrate to 'nosuchrev'") and "Traceback" not in err

    with sqlite_desk.engine.begin() as conn:  # a schema written by a newer version of the code
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed'"))
    assert main(["db", "current"]) == 1
    assert "newer version" in capsys.readouterr().out

    monkeypatch.setenv("DATABASE_URL", "sqlite:////proc/no/such/place/review.db")
    assert main(["db", "current"]) == 2
    assert "cannot create the folder" in capsys.readouterr().err

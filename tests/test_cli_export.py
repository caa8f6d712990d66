"""review/cli/export.py: ``python -m review export`` and where it may write."""

from __future__ import annotations

from review.cli import main
from tests.conftest import point_cli_at


def test_export_into_a_file_is_refused_in_one_line(sqlite_desk, tmp_path, monkeypatch, capsys) -> None:
    point_cli_at(monkeypatch, sqlite_desk, tmp_path)
    target = tmp_path / "a-file"
    target.write_text("keep me", encoding="utf-8")
    assert main(["export", "--format", "swift", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"error: {target} is a file, not a folder: export into a new folder"]
    assert target.read_text(encoding="utf-8") == "keep me"

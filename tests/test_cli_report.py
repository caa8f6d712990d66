"""review/cli/report.py: ``python -m review report`` writes the tables review.metrics computes as
text, JSON and CSV, keeps the Activity section's first name, and ``--out`` writes its files only
where told."""

from __future__ import annotations

import json

import pytest

from review.cli import main
from review.metrics.accuracy import accuracy
from review.metrics.filters import MetricFilter
from tests.conftest import account, point_cli_at, umask
from tests.factories import metrics_world


def test_report_cli_formats(monkeypatch, sqlite_desk, tmp_path, capsys) -> None:
    desk = sqlite_desk
    metrics_world(desk, n=120, seed=2)
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    with desk.sessions() as session:
        expected = accuracy(session, account(desk, "lead"), MetricFilter(source="weibo"))

    assert main(["report", "--format", "json", "--source", "weibo", "--section", "accuracy"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["filters"] == {"source": "weibo"}
    headline = body["tables"]["accuracy"][0]
    assert headline["posts"] == expected.n
    assert headline["f1"] == pytest.approx(expected.binary.f1)
    assert {"categories", "confusion", "calibration", "thresholds", "trend_week", "by_source"} <= set(body["tables"])

    assert main(["report", "--format", "csv", "--table", "categories", "--source", "weibo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "category,precision,recall,f1,support,predicted"
    assert len(lines) == 1 + len(expected.categories)

    out = tmp_path / "report"
    assert main(["report", "--format", "csv", "--out", str(out)]) == 0
    written = {p.name for p in out.iterdir()}
    assert {"accuracy.csv", "agreement_pairs.csv", "operations_days.csv", "models.csv"} <= written

    assert main(["report", "--format", "csv"]) == 2  # which table?
    assert "--table" in capsys.readouterr().err
    assert main(["report", "--table", "nope"]) == 2
    with pytest.raises(SystemExit) as bad:
        main(["report", "--since", "yesterday"])
    assert bad.value.code == 2
    assert main(["report", "--since", "2026-11-01", "--until", "2026-11-01", "--section", "accuracy"]) == 0
    assert "== accuracy" in capsys.readouterr().out


def test_the_activity_section_keeps_its_first_name(monkeypatch, sqlite_desk, capsys) -> None:
    """The Activity page's section is ``activity`` in the report, and ``operations`` (its name
    before) still asks for the same tables, which keep their names (``operations_days``)."""
    from review import report

    desk = sqlite_desk
    metrics_world(desk, n=60, seed=6)
    with desk.sessions() as session:
        lead = account(desk, "lead")
        old = report.build(session, lead, MetricFilter(), sections=("operations",))
        new = report.build(session, lead, MetricFilter(), sections=("activity",))
    assert list(old) == list(new) == ["operations_days", "moderator_days", "moderators", "models"]
    stable = {name: df.drop(columns=["oldest_waiting_h"], errors="ignore") for name, df in old.items()}  # ages grow
    assert all(stable[name].equals(new[name].drop(columns=["oldest_waiting_h"], errors="ignore")) for name in old)
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    for section in ("operations", "activity"):
        assert main(["report", "--format", "json", "--section", section]) == 0
        assert set(json.loads(capsys.readouterr().out)["tables"]) == set(old)


def test_report_out_refuses_to_overwrite_unless_forced(sqlite_desk, tmp_path, monkeypatch, capsys) -> None:
    point_cli_at(monkeypatch, sqlite_desk, tmp_path)
    out = tmp_path / "report"
    assert main(["report", "--out", str(out), "--section", "accuracy"]) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "accuracy.csv").write_text("an earlier report", encoding="utf-8")
    capsys.readouterr()
    assert main(["report", "--out", str(out), "--section", "accuracy"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds accuracy.csv" in err[0] and "--force" in err[0]
    assert (out / "accuracy.csv").read_text(encoding="utf-8") == "an earlier report"  # nothing replaced
    assert sorted(p.name for p in out.iterdir()) == sorted(first)  # nothing added either
    assert main(["report", "--out", str(out), "--section", "accuracy", "--force"]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert oct((out / "accuracy.csv").stat().st_mode & 0o777) == oct(0o666 & ~umask())
    assert main(["report", "--format", "json", "--out", str(out / "accuracy.csv")]) == 2  # a file, not a folder
    assert "is a file, not a folder" in capsys.readouterr().err

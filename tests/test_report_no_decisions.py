"""review/report.py and review/cli/report.py: with no decided posts the report's rates are not
defined, so it says "n/a" (JSON: null), never 0.000, which reads as a model that got all wrong."""

from __future__ import annotations

import json

from review.cli import main
from tests.conftest import point_cli_at


def test_report_with_no_decisions_says_n_a(monkeypatch, desk, tmp_path, capsys) -> None:
    point_cli_at(monkeypatch, desk, tmp_path)
    assert main(["report", "--section", "accuracy"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header, values = lines[1].split(), lines[2].split()
    row = dict(zip(header, values, strict=True))
    assert row["posts"] == "0" and row["true_positives"] == "0"
    for rate in ("precision", "recall", "f1", "accuracy", "category_macro_f1", "category_micro_f1"):
        assert row[rate] == "n/a", rate
    thresholds = lines[lines.index("== thresholds") + 2]
    assert thresholds.split()[-1] == "n/a" and "0.000" not in thresholds.split()[1:]  # share of no decided posts

    assert main(["report", "--section", "accuracy", "--format", "json"]) == 0
    headline = json.loads(capsys.readouterr().out)["tables"]["accuracy"][0]
    assert headline["posts"] == 0 and headline["precision"] is None and headline["f1"] is None

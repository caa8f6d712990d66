"""The command line's shape (review/cli/): one module per command group holding its arguments and
its handler, no SQL of its own, a quick ``--help``; the argument types and exit statuses the
commands share (review/cli/common.py). The commands themselves are tested with what they run.
Here too: a database outage is one line from any command, never a traceback (the outage tests
run a Postgres server of their own)."""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.models import Post, Verdict
from review.cli import EXIT_ERROR, GROUPS, build_parser, main
from review.cli.audit import positive
from review.cli.common import day, through
from review.cli.report import share
from tests.conftest import REPO, free_port, row_count, start_cli, unscored_posts, wait_for

CLI = REPO / "review" / "cli"
SQL = {"select", "insert", "update", "delete", "text", "func", "and_", "or_", "exists"}


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("path", sorted(CLI.glob("*.py")), ids=lambda p: p.name)
def test_no_cli_module_runs_sql(path) -> None:
    """Queries live in the core modules that own the facts; the CLI calls them."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    imported = {
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy")
        for alias in node.names
    }
    assert not {name for _, name in imported} & SQL, f"{path.name} builds SQL: {sorted(imported)}"
    calls = {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        if node.func.attr in {"execute", "scalar", "scalars", "limit", "where"}
    }
    assert not calls, f"{path.name} runs or narrows a query itself: {sorted(calls)}"


def test_each_command_is_declared_beside_its_handler() -> None:
    """Every command a group's ``add_parser`` declares runs a handler of that same module."""
    seen: list[str] = []
    for group in GROUPS:
        parser = argparse.ArgumentParser()
        group.add_parser(parser.add_subparsers())
        for name, command in _commands(parser).items():
            handler = command.get_default("handler")
            assert handler is not None and handler.__module__ == group.__name__, name
            seen.append(name)
    assert seen == list(_commands(build_parser())), "GROUPS lists every command once, in the --help order"


def test_help_imports_nothing_heavy() -> None:
    """``python -m review --help`` stays quick: the handlers import the desk, the database
    and the models when they run, not when the parser is built."""
    code = (
        "import sys; from review.cli import build_parser; build_parser(); "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    assert not loaded & {"sqlalchemy", "alembic", "pandas", "numpy", "PIL", "torch", "transformers", "tqdm"}


def test_days_are_utc_days() -> None:
    assert day("2024-02-29") == datetime(2024, 2, 29, tzinfo=UTC)
    assert through(day("2024-02-29")) == datetime(2024, 3, 1, tzinfo=UTC)  # --until: through its end
    assert through(None) is None
    with pytest.raises(argparse.ArgumentTypeError, match="use YYYY-MM-DD"):
        day("29.02.2024")


def test_shares_and_limits() -> None:
    assert share("1") == 1.0 and share("0.5") == 0.5
    for bad in ("0", "1.5", "-0.1", "most"):
        with pytest.raises(argparse.ArgumentTypeError, match="between 0 and 1"):
            share(bad)
    assert positive("3") == 3
    for bad in ("0", "-1", "2.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive whole number"):
            positive(bad)


def test_errors_meant_for_people_are_one_line_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--format", "csv"]) == EXIT_ERROR  # refused before any database is opened
    err = capsys.readouterr().err
    assert err == "error: --format csv writes one table: name it with --table, or give --out DIR for all of them\n"


# ---------------------------------------------------------------------------------------------
# A database outage: one line, never a traceback


def _one_line_outage(stderr: str, url: str) -> str:
    assert "Traceback" not in stderr and 'File "' not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    line = errors[0]
    assert f"the database {url} is unreachable (" in line
    assert line.endswith("check that it is running and reachable; everything saved before the outage is kept: "
                         "run it again once the database is back")  # fmt: skip
    return line


def test_unreachable_from_the_start_is_one_line(tmp_path: Path) -> None:
    port = free_port()  # a port nobody listens on
    (tmp_path / "in.jsonl").write_text('{"external_id": "1", "text": "x"}\n', encoding="utf-8")
    url = f"postgresql+psycopg://review:secret@127.0.0.1:{port}/none"
    for args in (["ingest", str(tmp_path / "in.jsonl")], ["score", "--provider", "baseline"]):
        done = start_cli(url, tmp_path / "media", *args)
        _, err = done.communicate(timeout=120)
        assert done.returncode == 2, err
        assert "Traceback" not in err and "secret" not in err
        assert [line for line in err.splitlines() if line.strip()] == [err.strip()]  # one line


def test_score_when_postgres_dies_mid_run_says_one_line(own_pg) -> None:
    pg, desk = own_pg
    unscored_posts(desk, 3000)
    args = ["score", "--provider", "baseline", "--batch-size", "1", "--retry-seconds", "1", "--quiet"]
    run = start_cli(desk.settings.database_url, desk.settings.media_dir, *args)
    wait_for(lambda: row_count(desk, Verdict) >= 3)
    desk.engine.dispose()
    pg.kill()
    _, err = run.communicate(timeout=120)
    assert run.returncode == 2, err
    _one_line_outage(err, desk.settings.database_url)
    pg.start()
    with desk.sessions() as session:  # what was saved stays saved: every verdict's post is queued
        queued = session.scalar(select(func.count(Post.id)).where(Post.status == "queued"))
        assert queued == row_count(desk, Verdict) >= 3


def test_ingest_when_postgres_dies_mid_run_says_one_line(own_pg, tmp_path: Path) -> None:
    pg, desk = own_pg
    lines = (json.dumps({"external_id": f"r{i}", "source": "weibo", "text": f"text {i}"}) for i in range(20_000))
    (tmp_path / "big.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    big = str(tmp_path / "big.jsonl")
    run = start_cli(desk.settings.database_url, desk.settings.media_dir, "ingest", big, "--quiet")
    wait_for(lambda: row_count(desk, Post) >= 200)
    desk.engine.dispose()
    pg.kill()
    _, err = run.communicate(timeout=120)
    assert run.returncode == 2, err
    _one_line_outage(err, desk.settings.database_url)

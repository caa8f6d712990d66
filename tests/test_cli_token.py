"""``python -m review token`` (review/cli/token.py): add prints the token once and the desk keeps
only its hash; list shows names, scopes and hints, never a token; revoke refuses the token from
then on; bad names and scopes are one-line errors."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from db.models import ApiToken
from review.cli import main
from review.cli.token import SCOPES
from review.desk import Desk
from review.tokens import Scope, authenticate, token_hash, well_formed
from tests.conftest import audit_rows


def _add(capsys: pytest.CaptureFixture[str], name: str, scopes: str) -> str:
    assert main(["token", "add", name, "--scopes", scopes]) == 0
    out = capsys.readouterr()
    assert "not shown again" in out.err
    (token,) = out.out.split()
    return token


def test_add_list_revoke(cli: Desk, capsys: pytest.CaptureFixture[str]) -> None:
    token = _add(capsys, "platform-a", "ingest,read")
    assert well_formed(token)
    with cli.sessions() as session:
        (row,) = session.scalars(select(ApiToken))
    assert row.token_hash == token_hash(token) and token not in (row.hint, row.name, row.scopes)
    assert row.scopes == "ingest,read"
    info = authenticate(cli.sessions, token)
    assert info is not None and info.scopes == (Scope.INGEST, Scope.READ)

    assert main(["token", "list"]) == 0
    listed = capsys.readouterr().out
    assert "platform-a" in listed and "ingest,read" in listed and "active" in listed
    assert token not in listed and token[:8] in listed  # the hint, never the token

    assert main(["token", "revoke", "platform-a"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert authenticate(cli.sessions, token) is None
    assert main(["token", "list"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert [r.action for r in audit_rows(cli) if r.action.startswith("token")] == ["token.create", "token.revoke"]
    assert all(token not in str(r.details) for r in audit_rows(cli))


def test_mistakes_are_one_line(sqlite_cli: Desk, capsys: pytest.CaptureFixture[str]) -> None:
    _add(capsys, "one", "decisions")
    for argv, message in (
        (["token", "add", "one", "--scopes", "read"], "already a token named 'one'"),
        (["token", "add", "two", "--scopes", "read,admin"], "unknown scope admin"),
        (["token", "add", "bad name", "--scopes", "read"], "a token's name is"),
        (["token", "revoke", "nobody"], "no token named 'nobody'"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert main(["token", "list"]) == 0
    assert capsys.readouterr().out.count("\n") == 1


def test_no_tokens_yet_says_how(sqlite_cli: Desk, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "list"]) == 0
    assert "python -m review token add" in capsys.readouterr().err


def test_help_names_the_scopes_there_are() -> None:
    assert ", ".join(s.value for s in Scope) == SCOPES

"""review/audit.py, the audit log's surfaces: append-only in the database itself (SQLite and Postgres), readable by
admins only (as the account is stored now), filtered, listed as safe terminal text, exported
streamed to CSV (formulas neutralised) or JSON lines, and the admin page (AppTest)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError
from streamlit.testing.v1 import AppTest

from db.models import AuditEvent, User
from review import audit
from review.audit import Action, AuditFilter
from review.auth import OPERATOR, Actor, PermissionDenied
from review.cli import main
from review.errors import ReviewError
from tests.conftest import REPO, account, open_page

HOSTILE = '=HYPERLINK("http://x","y")\x1b[2J\n2026-01-01 00:00:00  admin  user.role  forged'
DAY = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _seed(desk) -> None:
    """Five events on known days, by known actors, one with a hostile subject."""
    rows = [
        (DAY - timedelta(days=2), "alice", Action.USER_CREATE, "bob", {"role": "moderator"}),
        (DAY - timedelta(days=1), "alice", Action.USER_ROLE, "bob", {"before": "moderator", "after": "lead"}),
        (DAY, "(command line)", Action.INGEST, HOSTILE, {"stored": 3, "note": "@SUM(1+1)"}),
        (DAY + timedelta(days=1), "alice", Action.SIGNIN_FAILED, "mallory", {"reason": "wrong password"}),
        (DAY + timedelta(days=2), "carol", Action.PURGE, "post 7", {"reason": "court order", "kind": ["text"]}),
    ]
    with desk.sessions() as session, session.begin():
        for when, who, action, subject, details in rows:
            session.add(AuditEvent(created_at=when, actor_name=who, action=str(action), subject=subject,
                                   details=details))  # fmt: skip


def _window(**kw) -> AuditFilter:
    """Filters inside the seeded days (accounts made by the tests are audited too, today)."""
    return AuditFilter(**{"since": DAY - timedelta(days=5), "until": DAY + timedelta(days=5), **kw})


def test_the_database_refuses_to_change_or_delete_audit_rows(desk) -> None:
    first = audit.log(desk.sessions, OPERATOR, Action.BACKUP, "somewhere", op="create")
    audit.log(desk.sessions, None, Action.SIGNIN_FAILED, "mallory", reason="wrong password")
    statements = [
        "UPDATE audit_event SET subject = 'rewritten'",
        f"UPDATE audit_event SET details = '{{}}' WHERE id = {first}",
        "DELETE FROM audit_event",
        f"DELETE FROM audit_event WHERE id = {first}",
    ]
    if desk.engine.dialect.name == "postgresql":
        statements.append("TRUNCATE audit_event CASCADE")  # plain TRUNCATE stops at post's foreign key anyway
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"), desk.engine.begin() as conn:
            conn.execute(text(statement))
    # nor through the ORM
    with pytest.raises(DBAPIError, match="append-only"), desk.sessions() as session, session.begin():
        session.execute(update(AuditEvent).values(actor_name="someone else"))
    with desk.sessions() as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    assert [(r.subject, r.actor_name) for r in rows[-2:]] == [("somewhere", "(command line)"), ("mallory", "(nobody)")]


def test_only_admins_read_the_log_as_their_account_stands_now(desk, tmp_path: Path) -> None:
    _seed(desk)
    admin = account(desk, "admin", "ada")
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "log.csv"
    for role in ("moderator", "lead"):
        who = account(desk, role)
        with desk.sessions() as session:
            with pytest.raises(PermissionDenied):
                audit.events(session, AuditFilter(), by=who)
            with pytest.raises(PermissionDenied):
                next(audit.iter_events(session, AuditFilter(), by=who))
            with pytest.raises(PermissionDenied):
                audit.export_events(session, AuditFilter(), out, by=who)
    assert not list(out.parent.iterdir())  # not even a temporary file
    with desk.sessions() as session:
        assert len(audit.events(session, _window(), by=admin)) == 5
    # demoted since signing in: the Actor in hand still says admin, the stored account does not
    with desk.sessions() as session, session.begin():
        session.execute(update(User).where(User.id == admin.id).values(role="lead"))
    stale = Actor(admin.id, admin.username, "admin")
    with desk.sessions() as session, pytest.raises(PermissionDenied):
        audit.events(session, _window(), by=stale)
    with desk.sessions() as session, session.begin():
        session.execute(update(User).where(User.id == admin.id).values(role="admin", active=False))
    with desk.sessions() as session, pytest.raises(PermissionDenied, match="no longer active"):
        audit.events(session, _window(), by=stale)


def test_filters_and_a_streamed_export(desk, tmp_path: Path) -> None:
    _seed(desk)
    with desk.sessions() as session:

        def subjects(**kw) -> list[str]:
            return list(audit.events(session, _window(**kw), by=OPERATOR)["subject"])

        assert subjects() == ["post 7", "mallory", HOSTILE, "bob", "bob"]  # newest first
        assert subjects(action="user.") == ["bob", "bob"]  # a family
        assert subjects(action="user.role") == ["bob"]
        assert subjects(actor="alice") == ["mallory", "bob", "bob"]
        assert subjects(since=DAY, until=DAY + timedelta(days=1)) == [HOSTILE]
        assert subjects(limit=2) == ["post 7", "mallory"]
        with pytest.raises(ReviewError, match="NUL"):
            audit.events(session, AuditFilter(actor="al\x00ice"), by=OPERATOR)  # Postgres would fail on it
        # streamed in batches of two, oldest first, the same rows
        chunks = list(audit.iter_events(session, _window(), by=OPERATOR, batch=2))
        assert [len(c) for c in chunks] == [2, 2, 1]
        assert [s for c in chunks for s in c["subject"]] == ["bob", "bob", HOSTILE, "mallory", "post 7"]
        assert sum(len(c) for c in audit.iter_events(session, _window(limit=3), by=OPERATOR, batch=2)) == 3

        csv_out, jsonl_out = tmp_path / "audit.csv", tmp_path / "audit.jsonl"
        assert audit.export_events(session, _window(), csv_out, by=OPERATOR) == 5
        assert audit.export_events(session, _window(action="user."), jsonl_out, by=OPERATOR, fmt="jsonl") == 2
        with pytest.raises(ReviewError, match="already exists"):
            audit.export_events(session, _window(), csv_out, by=OPERATOR)
    with csv_out.open(newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    assert [r["action"] for r in table] == ["user.create", "user.role", "ingest", "signin.failed", "purge"]
    assert table[2]["subject"] == "'" + HOSTILE  # a formula no more: the spreadsheet shows it as text
    assert json.loads(table[1]["details"]) == {"after": "lead", "before": "moderator"}
    assert table[0]["created_at"] == (DAY - timedelta(days=2)).isoformat()
    lines = jsonl_out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["details"] for line in lines] == [{"role": "moderator"},
                                                               {"after": "lead", "before": "moderator"}]  # fmt: skip
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    mask = os.umask(0)
    os.umask(mask)
    assert oct(csv_out.stat().st_mode & 0o777) == oct(0o666 & ~mask)  # as a plain write makes it
    with pytest.raises(ReviewError, match="unknown action 'usr.role'"):
        audit.check_action("usr.role")
    assert (audit.check_action("user"), audit.check_action("purge")) == ("user.", "purge")


def test_cli_lists_and_exports(sqlite_desk, monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(sqlite_desk.settings.media_dir))
    _seed(sqlite_desk)
    assert main(["audit", "list", "--since", "2026-03-08", "--until", "2026-03-10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "time", "(UTC)", "actor", "action", "subject", "client", "details"]
    assert len(lines) == 4  # header and three events: the hostile subject forges no line of its own
    ingest = next(line for line in lines if " ingest " in line)
    assert "\\x1b[2J\\n2026-01-01" in ingest and ingest.endswith('{"note": "@SUM(1+1)", "stored": 3}')
    assert not any("\x1b" in line for line in lines)
    assert main(["audit", "list", "--action", "user.", "--actor", "alice", "--limit", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "user.role" in lines[1] and '{"after": "lead", "before": "moderator"}' in lines[1]
    assert main(["audit", "list", "--action", "nonsense"]) == 2
    assert "unknown action 'nonsense'" in capsys.readouterr().err

    out = tmp_path / "audit.jsonl"
    assert main(["audit", "export", "--out", str(out), "--format", "jsonl", "--until", "2026-03-20"]) == 0
    assert "wrote 5 audit events" in capsys.readouterr().out
    assert len(out.read_text(encoding="utf-8").splitlines()) == 5
    assert main(["audit", "export", "--out", str(out)]) == 2  # never overwritten
    assert "already exists" in capsys.readouterr().err
    # the export itself is in the log
    with sqlite_desk.sessions() as session:
        last = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert (last.action, last.subject, last.details["rows"]) == ("export", str(out), 5)

    # and once as an operator runs it: a real process, CSV to a file
    env = {"DATABASE_URL": sqlite_desk.settings.database_url, "MEDIA_DIR": str(sqlite_desk.settings.media_dir),
           "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}  # fmt: skip
    csv_out = tmp_path / "all.csv"
    done = subprocess.run([sys.executable, "-m", "review", "audit", "export", "--out", str(csv_out), "--action",
                           "ingest"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(csv_out.open(newline="", encoding="utf-8")))
    assert [r["subject"] for r in rows] == ["'" + HOSTILE]


def _app(monkeypatch: pytest.MonkeyPatch, desk, role: str) -> AppTest:
    return open_page(monkeypatch, desk, account(desk, role), "pages/audit.py")


@pytest.mark.parametrize("role", ["moderator", "lead"])
def test_the_page_refuses_who_is_not_an_admin(sqlite_desk, monkeypatch, role: str) -> None:
    _seed(sqlite_desk)
    at = _app(monkeypatch, sqlite_desk, role)
    assert not at.exception
    assert any("may not read the audit log" in e.value for e in at.error)
    assert not at.dataframe and not at.get("download_button")


def test_the_page_shows_filters_and_downloads_the_log(sqlite_desk, monkeypatch) -> None:
    _seed(sqlite_desk)
    at = _app(monkeypatch, sqlite_desk, "admin")
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert HOSTILE in list(table["subject"])  # shown as text in the table
    assert '{"after": "lead", "before": "moderator"}' in list(table["details"])
    assert all("HYPERLINK" not in md.value and "forged" not in md.value for md in at.markdown)

    at.selectbox(key="audit_action").select("user.").run()
    actions = set(at.dataframe[0].value["action"])
    assert {"user.create", "user.role"} <= actions and all(a.startswith("user.") for a in actions)
    at.selectbox(key="audit_action").select("All actions").run()
    at.text_input(key="audit_actor").input("carol").run()
    assert list(at.dataframe[0].value["subject"]) == ["post 7"]
    at.text_input(key="audit_actor").input("nobody at all").run()
    assert any("No audit events match" in i.value for i in at.info)

    at.text_input(key="audit_actor").input("").run()
    at.date_input(key="audit_since").set_value(DAY.date()).run()
    at.date_input(key="audit_until").set_value(DAY.date()).run()
    assert list(at.dataframe[0].value["subject"]) == [HOSTILE]
    download = at.get("download_button")[0]
    assert download.proto.label == "Download these rows as CSV"


def test_export_limit_takes_the_newest_events_as_list_does(desk, tmp_path: Path, monkeypatch, capsys) -> None:
    """``--limit N`` means the same N events in ``audit list`` and ``audit export``: the newest
    (the export still writes them oldest first)."""
    _seed(desk)
    with desk.sessions() as session:
        listed = list(audit.events(session, _window(limit=2), by=OPERATOR)["action"])
        assert listed == ["purge", "signin.failed"]
        out = tmp_path / "newest.jsonl"
        assert audit.export_events(session, _window(limit=2), out, by=OPERATOR, fmt="jsonl") == 2
        exported = [json.loads(line)["action"] for line in out.read_text(encoding="utf-8").splitlines()]
        assert exported == ["signin.failed", "purge"]
        chunks = list(audit.iter_events(session, _window(limit=3, action="user."), by=OPERATOR, batch=1))
        assert [a for c in chunks for a in c["action"]] == ["user.create", "user.role"]  # fewer than the limit
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    csv_out = tmp_path / "one.csv"
    assert main(["audit", "export", "--out", str(csv_out), "--until", "2026-03-20", "--limit", "1"]) == 0
    assert "wrote 1 audit events" in capsys.readouterr().out
    assert [r["action"] for r in csv.DictReader(csv_out.open(newline="", encoding="utf-8"))] == ["purge"]


def _signins(desk) -> None:
    _seed(desk)
    with desk.sessions() as session, session.begin():
        session.add(AuditEvent(created_at=DAY + timedelta(days=3), actor_name="dora", action=str(Action.SIGNIN),
                               subject="dora", details={}))  # fmt: skip


def test_a_family_holds_its_bare_action(desk) -> None:
    """The sign-in family "signin." holds signin and signin.failed."""
    _signins(desk)
    with desk.sessions() as session:
        assert audit.check_action("signin") == "signin" and audit.check_action("signin.") == "signin."
        found = list(audit.events(session, _window(action="signin."), by=OPERATOR)["action"])
        assert found == ["signin", "signin.failed"]
        assert list(audit.events(session, _window(action="signin"), by=OPERATOR)["action"]) == ["signin"]
        users = list(audit.events(session, _window(action="user."), by=OPERATOR)["action"])
        assert users == ["user.role", "user.create"]


def test_the_page_offers_the_sign_in_family(sqlite_desk, monkeypatch) -> None:
    _signins(sqlite_desk)
    at = _app(monkeypatch, sqlite_desk, "admin")
    options = at.selectbox(key="audit_action").options
    assert "signin." in options and "user." in options and "media." not in options  # a family of one is no family
    at.selectbox(key="audit_action").select("signin.").run()
    assert not at.exception
    assert set(at.dataframe[0].value["action"]) == {"signin", "signin.failed"}

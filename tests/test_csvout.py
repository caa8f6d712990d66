"""review/csvout.py, CSV formula injection: a source, username or model id that a spreadsheet would run as a formula
(``=HYPERLINK(…)``, ``+1+1``, ``-2+3``, ``@SUM(A1)``, a leading tab or CR) reaches no CSV as one —
not ``report --out``, not ``report --format csv`` on standard output, not the lead pages'
"Download ….csv" buttons — while numbers, negative ones included, stay numbers."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from db.models import Post, ReviewEvent, Verdict
from review import csvout, labels
from review.cli import main
from tests.conftest import DASHBOARD, account, signed_in_as

PAYLOADS = ['=HYPERLINK("http://x.example/","y")', "+1+1", "-2+3", "@SUM(A1)", "\t=1+1", "\r=1+1", "＝1+1"]
NAMES = ["+1+1", "-2+3", "@sum"]  # usernames may hold + - @
LIVE = tuple("=+-@\t\r") + ("＝",)


def _live_cells(text: str) -> list[str]:
    """Cells a spreadsheet would evaluate: starting with a formula character and not a number."""
    live = []
    for row in csv.reader(io.StringIO(text, newline="")):
        for cell in row:
            if cell.startswith(LIVE):
                try:
                    float(cell)
                except ValueError:
                    live.append(cell)
    return live


def test_the_writer_neutralises_text_and_keeps_numbers() -> None:
    df = pd.DataFrame(
        {
            "=cmd|' /C calc'!A0": ["x", "y"],  # a hostile column name
            "source": ["=1+1", "plain"],
            "kappa": [-0.25, 0.5],  # a negative float column stays a number
            "n": [-3, 4],
            "mixed": ["-5", None],  # a string that looks like a number is text: neutralised
        }
    )
    text = csvout.to_csv(df)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["'=cmd|' /C calc'!A0", "source", "kappa", "n", "mixed"]
    assert rows[1] == ["x", "'=1+1", "-0.25", "-3", "'-5"]
    assert rows[2] == ["y", "plain", "0.5", "4", ""]
    assert not _live_cells(text)
    for payload in PAYLOADS:
        assert csvout.safe_cell(payload) == "'" + payload
        assert not _live_cells(csvout.to_csv(pd.DataFrame({"a": [payload]})))
    assert csvout.safe_cell(-1.5) == -1.5 and csvout.safe_cell("a=b") == "a=b"
    # a CR inside a cell ends the row for a spreadsheet: such a cell must be quoted
    inside = csvout.to_csv(pd.DataFrame({"a": ["ok\r=1+1", "ok\n=1+1"]}))
    assert not _live_cells(inside) and [r[0] for r in csv.reader(io.StringIO(inside, newline=""))][1:] == [
        "ok\r=1+1",
        "ok\n=1+1",
    ]
    assert pd.DataFrame({"a": ["ok\r=1+1"]}).to_csv(index=False) == "a\nok\r=1+1\n"  # pandas alone: unquoted
    assert df["source"].iloc[0] == "=1+1"  # the caller's frame is left as it was


def _hostile_world(desk) -> None:
    """Decided posts from hostile sources, judged by a model with a hostile id, labelled by
    moderators with hostile names who always disagree (a κ of −1, a negative number)."""
    first, second = (account(desk, "moderator", name) for name in NAMES[:2])
    account(desk, "moderator", NAMES[2])
    now = datetime.now(UTC) - timedelta(hours=2)
    with desk.sessions() as session, session.begin():
        for i in range(24):
            source = PAYLOADS[i % len(PAYLOADS)]
            post = Post(source=source, external_id=f"h{i}", text="t", status="decided", ingested_at=now)
            session.add(post)
            session.flush()
            said = "fraud_spam" if i % 2 else "none"
            v = Verdict(post_id=post.id, provider="transformers", model_id=PAYLOADS[0], prompt_version="@p",
                        input_hash=f"h{i}", parse_status="ok", violation=said != "none", category=said,
                        severity=0 if said == "none" else 2, confidence=0.8, tags=[], parse_notes=[])  # fmt: skip
            session.add(v)
            session.flush()
            for k, who in enumerate((first, second)):
                label = said if k == 0 else ("none" if said != "none" else "fraud_spam")
                session.add(
                    ReviewEvent(post_id=post.id, user_id=who.id, verdict_id=v.id, created_at=now + timedelta(minutes=k),
                                action="confirm" if label == said else "overturn", label_violation=label != "none",
                                label_category=label, label_severity=0 if label == "none" else 2)
                )  # fmt: skip
        labels.rebuild(session)


def test_report_cli_writes_no_live_formula(sqlite_desk, tmp_path, monkeypatch, capsys) -> None:
    desk = sqlite_desk
    _hostile_world(desk)
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    out = tmp_path / "report"
    assert main(["report", "--out", str(out)]) == 0
    capsys.readouterr()
    texts = {p.name: p.read_bytes().decode("utf-8") for p in out.glob("*.csv")}
    assert {"by_source.csv", "models.csv", "moderators.csv", "agreement_pairs.csv"} <= set(texts)
    for name, text in texts.items():
        assert not _live_cells(text), name
    sources = pd.read_csv(io.StringIO(texts["by_source.csv"]), keep_default_na=False)["source"]
    assert set(sources) == {"'" + p for p in PAYLOADS}  # every payload arrived, as text
    pairs = pd.read_csv(io.StringIO(texts["agreement_pairs.csv"]))
    assert set(pairs["first"]) | set(pairs["second"]) == {"'+1+1", "'-2+3"}
    assert pairs["kappa"].tolist() == [-1.0]  # a number, not the text "'-1.0"
    assert "'" + PAYLOADS[0] in set(pd.read_csv(io.StringIO(texts["models.csv"]))["model_id"])

    assert main(["report", "--format", "csv", "--table", "by_source"]) == 0  # on standard output
    printed = capsys.readouterr().out
    assert not _live_cells(printed) and "'=HYPERLINK(" in printed


def test_page_downloads_hold_no_live_formula(sqlite_desk, monkeypatch) -> None:
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    desk = sqlite_desk
    _hostile_world(desk)
    handed_out: dict[str, bytes] = {}
    load = MemoryMediaFileStorage.load_and_get_id

    def keep(self, path_or_data, mimetype, kind, filename=None):
        if filename and filename.endswith(".csv"):
            handed_out[filename] = path_or_data
        return load(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", keep)  # records what the buttons serve
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    at = AppTest.from_file(DASHBOARD, default_timeout=60)
    signed_in_as(at, desk, account(desk, "lead"))
    for page in ("pages/agreement.py", "pages/activity.py"):
        at.switch_page(page).run()
        assert not at.exception
    assert {"agreement_pairs.csv", "moderators.csv", "models.csv"} <= set(handed_out)
    for name, data in handed_out.items():
        assert not _live_cells(data.decode("utf-8")), name
    assert "'+1+1" in handed_out["moderators.csv"].decode("utf-8")
    assert "'" + PAYLOADS[0].replace('"', '""') in handed_out["models.csv"].decode("utf-8")
    assert pd.read_csv(io.BytesIO(handed_out["agreement_pairs.csv"]))["kappa"].tolist() == [-1.0]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_each_payload_is_text_in_a_spreadsheet(payload: str) -> None:
    """What a spreadsheet reads back: the cell starts with the quote, the payload follows."""
    text = csvout.to_csv(pd.DataFrame({"source": [payload]}))
    (cell,) = list(csv.reader(io.StringIO(text, newline="")))[1]
    assert cell == "'" + payload

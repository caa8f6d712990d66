"""``python -m review ingest`` (review/cli/ingest.py): exit statuses (0 clean, 1 with rejections,
2 for unusable input, an unmigrated database or an unknown encoding), the whole report with its
names on one line, the encoding note, every input checked before anything is stored, every run
audited (uploads too), and internal errors keeping their traceback and their own status.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from db.models import Post
from review.cli import EXIT_INTERNAL, main
from review.desk import Desk
from review.errors import IngestError
from review.ingest.uploads import ingest_upload
from tests.conftest import (
    BIG5,
    GBK_CSV,
    account,
    audit_rows,
    crashing_paths,
    jsonl_bytes,
    make_image,
    png_bytes,
    point_cli_at,
    row_count,
    stored_posts,
    subprocess_env,
    write_bytes,
    write_jsonl,
)


def test_cli_ingest_with_rejections_exits_1(
    sqlite_cli: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_image(tmp_path / "in" / "ok.jpg", 1)
    path = write_jsonl(
        tmp_path / "in" / "posts.jsonl",
        [
            {"external_id": "c1", "images": ["ok.jpg"]},
            {"external_id": "c2", "images": ["nope.jpg"]},
            "{oops",
            {"external_id": "c4", "text": "fine"},
        ],
    )

    rc = main(["ingest", str(path)])

    out, err = capsys.readouterr()
    assert rc == 1
    assert out.strip().splitlines()[-1] == "2 added, 0 already present, 2 rejected"
    err_lines = sorted(line for line in err.splitlines() if line.startswith("rejected "))
    assert len(err_lines) == 2
    assert err_lines[0].startswith("rejected posts.jsonl:2: image 'nope.jpg': file not found")
    assert err_lines[1].startswith("rejected posts.jsonl:3: malformed JSON")
    assert "Traceback" not in err
    assert set(stored_posts(sqlite_cli)) == {"c1", "c4"}


def test_cli_ingest_clean_file_exits_0(sqlite_cli: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_jsonl(tmp_path / "posts.jsonl", [{"external_id": "k1"}, {"external_id": "k2", "text": "hi"}])

    assert main(["ingest", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "2 added, 0 already present, 0 rejected"
    assert "rejected " not in err

    assert main(["ingest", "--quiet", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "0 added, 2 already present, 0 rejected"
    assert "rejected " not in err
    assert row_count(sqlite_cli, Post) == 2


def test_cli_ingest_notes_a_non_utf8_encoding(
    sqlite_cli: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_bytes(tmp_path / "weibo.csv", GBK_CSV.encode("gbk"))

    assert main(["ingest", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "not UTF-8 text" in err and "--encoding" in err and "Traceback" not in err

    rc = main(["ingest", "--encoding", "gbk", str(path)])

    out, err = capsys.readouterr()
    assert rc == 1
    assert out.strip() == "2 added, 0 already present, 1 rejected"
    assert "rejected weibo.csv:5: has 2 fields, the header has 3" in err
    assert f"note: read {path} as gbk" in err
    assert stored_posts(sqlite_cli)["g1"].author == "张三"


def test_cli_unmigrated_database_exits_2_with_upgrade_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REVIEW_CONFIG", raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'fresh' / 'never-migrated.db'}")
    monkeypatch.setenv("MEDIA_DIR", str(tmp_path / "media"))
    monkeypatch.chdir(tmp_path)
    path = write_jsonl(tmp_path / "posts.jsonl", [{"external_id": "x"}])

    rc = main(["ingest", str(path)])

    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "python -m review db upgrade" in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "name",
    [
        "no-such-folder",
        "no-such-file.jsonl",
    ],
)
def test_cli_nonexistent_input_exits_2(
    sqlite_cli: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    rc = main(["ingest", str(tmp_path / name)])

    out, err = capsys.readouterr()
    assert rc == 2
    assert err.strip() == f"error: {tmp_path / name}: no such file or folder"
    assert row_count(sqlite_cli, Post) == 0


def test_cli_unknown_encoding_exits_2(sqlite_cli: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_jsonl(tmp_path / "posts.jsonl", [{"external_id": "x"}])

    rc = main(["ingest", "--encoding", "klingon", str(path)])

    _, err = capsys.readouterr()
    assert rc == 2
    assert err.strip().startswith("error: unknown encoding 'klingon'")
    assert "Traceback" not in err
    assert row_count(sqlite_cli, Post) == 0


def test_cli_ingest_with_crashing_paths_exits_1_with_the_whole_report(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = crashing_paths(tmp_path / "in")
    run = subprocess.run(
        [sys.executable, "-m", "review", "ingest", "--quiet", str(path)],
        cwd=tmp_path, env=subprocess_env(sqlite_desk), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout.strip() == "2 added, 0 already present, 2 rejected"
    assert "rejected posts.jsonl:2: image '~nosuchuser/a.jpg'" in run.stderr
    assert "rejected posts.jsonl:3: image 'loop/a'" in run.stderr
    assert set(stored_posts(sqlite_desk)) == {"good1", "good2"}


def test_cli_big5_needs_encoding(cli: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tw.csv"
    path.write_bytes(BIG5.encode("big5"))
    assert main(["ingest", "--quiet", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--encoding" in err and len(err.splitlines()) == 1
    assert main(["ingest", "--quiet", "--encoding", "big5", str(path)]) == 0
    assert {p.text for p in stored_posts(cli).values()} == {"臺灣的新聞", "颱風警報"}


def test_names_with_newlines_stay_on_one_line(cli: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "ok.png").write_bytes(png_bytes(1))
    (drop / "x.png\nrejected admin.png: forged line\u202e.png").write_bytes(b"not an image")
    data = tmp_path / "a\nrejected b.jsonl"
    data.write_bytes(jsonl_bytes({"external_id": "j"}, {"no_id": 1}))
    assert main(["ingest", "--quiet", str(drop), str(data)]) == 1
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert all(line.startswith(("rejected ", "warning ", "note: ")) for line in lines), lines
    assert len([line for line in lines if line.startswith("rejected ")]) == 2
    assert not any(line.startswith("rejected admin") or line.startswith("rejected b.jsonl") for line in lines)
    assert "\\n" in err and "\\u202e" in err
    assert out.strip() == "2 added, 0 already present, 2 rejected"
    event = audit_rows(cli, "ingest")[-1]
    assert "\n" not in (event.subject or "") and all("\n" not in name for name in event.details["inputs"])


def test_every_ingest_is_audited(cli: Desk, tmp_path: Path) -> None:
    desk = cli
    path = tmp_path / "posts.jsonl"
    path.write_bytes(jsonl_bytes({"external_id": "a"}, {"external_id": "b"}, {"no_id": 1}))
    assert main(["ingest", "--quiet", str(path)]) == 1
    assert main(["ingest", "--quiet", str(path)]) == 1
    lead = account(desk, "lead")
    upload = ingest_upload(desk.sessions, desk.settings, lead, [("up.jsonl", jsonl_bytes({"external_id": "c"}))])
    assert upload.added == 1
    first, second, third = audit_rows(desk, "ingest")
    assert (first.actor_name, first.actor_id) == ("(command line)", None)
    assert first.details["inputs"] == [str(path)]
    assert (first.details["added"], first.details["already_present"], first.details["rejected"]) == (2, 0, 1)
    assert (second.details["added"], second.details["already_present"], second.details["rejected"]) == (0, 2, 1)
    assert (third.actor_name, third.actor_id) == ("lead", lead.id)
    assert third.details["inputs"] == ["up.jsonl"] and third.details["added"] == 1
    assert third.details["via"] == "upload"
    # a refused run is logged too
    with pytest.raises(IngestError):
        ingest_upload(desk.sessions, desk.settings, lead, [("tw.csv", BIG5.encode("big5"))])
    assert audit_rows(desk, "ingest")[-1].details["outcome"] == "error"


def test_every_input_is_checked_before_anything_is_stored(
    sqlite_desk: Desk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    point_cli_at(monkeypatch, sqlite_desk, tmp_path)
    good = write_jsonl(tmp_path / "a.jsonl", ['{"external_id": "a1"}'])
    assert main(["ingest", str(good), str(tmp_path / "typo.jsonl")]) == 2
    assert "typo.jsonl: no such file or folder" in capsys.readouterr().err
    assert stored_posts(sqlite_desk) == {}


def test_internal_errors_keep_the_traceback_and_their_own_status(
    sqlite_desk: Desk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    point_cli_at(monkeypatch, sqlite_desk, tmp_path)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("review.ingest.ingest_paths", broken)  # the ingest command looks it up when it runs
    assert main(["ingest", str(write_jsonl(tmp_path / "a.jsonl", ['{"external_id": "a"}']))]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err and "internal error" in err
    with sqlite_desk.sessions() as session:
        assert session.scalar(select(func.count(Post.id))) == 0

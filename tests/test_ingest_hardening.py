"""Hostile and broken inputs found in review: each is refused with a reason, costs only its own
record (or, where a file cannot be read on, the rest of that file), and never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import func, select, text

import review.ingest as ingest_module
from db.models import Post
from review.cli import EXIT_INTERNAL, main
from review.desk import Desk
from review.ingest import IngestReport, ingest_paths


def _ingest(desk: Desk, *paths: Path, **kwargs: Any) -> IngestReport:
    return ingest_paths(desk.sessions, list(paths), desk.settings, **kwargs)


def _posts(desk: Desk) -> dict[str, Post]:
    with desk.sessions() as session:
        return {p.external_id: p for p in session.scalars(select(Post))}


def _reasons(report: IngestReport) -> dict[str, str]:
    return {r.location: r.reason for r in report.rejected}


def _jsonl(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _image(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), colour).save(path)
    return path


def test_symlinked_sidecar_cannot_read_outside_the_folder(sqlite_desk: Desk, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-CONTENT", encoding="utf-8")
    drop = tmp_path / "drop"
    _image(drop / "p.jpg")
    (drop / "p.txt").symlink_to(secret)
    _image(drop / "q.jpg", (0, 0, 200))
    report = _ingest(sqlite_desk, drop)
    assert "points outside the input folder" in _reasons(report)["p.jpg"]
    posts = _posts(sqlite_desk)
    assert set(posts) == {"q"}
    assert all("SECRET" not in p.text for p in posts.values())


def test_long_csv_field_is_read_whole_and_injects_nothing(sqlite_desk: Desk, tmp_path: Path) -> None:
    desk = Desk(sqlite_desk.settings.with_overrides(max_text_chars=400_000), sqlite_desk.engine, sqlite_desk.sessions)
    long_text = "长" * 150_000 + "\nx9,injected row\n" + "end"
    path = tmp_path / "long.csv"
    body = 'external_id,text\na1,"' + long_text + '"\na2,second\n'
    path.write_text(body, encoding="utf-8")
    report = _ingest(desk, path)
    assert (report.added, report.rejected) == (2, [])
    posts = _posts(desk)
    assert set(posts) == {"a1", "a2"}
    assert posts["a1"].text == long_text


def test_malformed_csv_stops_the_file_with_a_reason(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text('external_id\ttext\na1\tfine\na2\t"broken"quote\na3\tnever read\n', encoding="utf-8")
    report = _ingest(sqlite_desk, path)
    assert set(_posts(sqlite_desk)) == {"a1"}
    reason = _reasons(report)["bad.tsv:3"]
    assert "malformed CSV" in reason and "the rest of the file was not read" in reason


def test_nan_and_infinity_are_refused_on_both_databases(desk: Desk, tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "nan.jsonl",
        [
            '{"external_id": "n1", "metadata": {"score": NaN}}',
            '{"external_id": "n2", "metadata": {"score": -Infinity}}',
            '{"external_id": "ok", "metadata": {"score": 0.5}}',
        ],
    )
    report = _ingest(desk, path)
    reasons = _reasons(report)
    assert "NaN is not a JSON number" in reasons["nan.jsonl:1"]
    assert "-Infinity is not a JSON number" in reasons["nan.jsonl:2"]
    assert set(_posts(desk)) == {"ok"}


def test_nan_from_the_api_is_refused(desk: Desk) -> None:
    from review.ingest import ingest_records

    report = ingest_records(
        desk.sessions, [{"external_id": "n", "metadata": {"x": float("nan")}}, {"external_id": "ok"}], desk.settings
    )
    assert "metadata.x is nan" in _reasons(report)["record 1"]
    assert set(_posts(desk)) == {"ok"}


def test_absurd_json_is_a_rejection_not_a_crash(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "absurd.jsonl",
        [
            '{"external_id": "big", "metadata": {"n": ' + "9" * 5000 + "}}",
            '{"external_id": "deep", "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}",
            '{"external_id": "ok"}',
        ],
    )
    report = _ingest(sqlite_desk, path)
    reasons = _reasons(report)
    assert reasons["absurd.jsonl:1"].startswith("malformed JSON")
    assert "nested too deeply" in reasons["absurd.jsonl:2"]
    assert set(_posts(sqlite_desk)) == {"ok"}


def test_oversized_lines_and_sidecars_are_refused_unread(
    sqlite_desk: Desk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "MAX_RECORD_BYTES", 1000)
    path = _jsonl(
        tmp_path / "big.jsonl",
        ['{"external_id": "huge", "text": "' + "x" * 5000 + '"}', '{"external_id": "after"}'],
    )
    report = _ingest(sqlite_desk, path)
    assert "longer than" in _reasons(report)["big.jsonl:1"]
    drop = tmp_path / "drop"
    _image(drop / "s.jpg")
    (drop / "s.txt").write_text("y" * 5000, encoding="utf-8")
    report = _ingest(sqlite_desk, drop)
    assert "larger than" in _reasons(report)["s.jpg"]
    assert set(_posts(sqlite_desk)) == {"after"}


def test_utf16_with_broken_bytes_keeps_the_other_lines(sqlite_desk: Desk, tmp_path: Path) -> None:
    lines = '{"external_id": "u1", "text": "第一"}\n{"external_id": "u2", "text": "第二"}\n'
    lone_surrogate = '{"external_id": "u3", "text": "'.encode("utf-16-le") + b"\x00\xd8" + '"}\n'.encode("utf-16-le")
    path = tmp_path / "u16.jsonl"
    path.write_bytes(
        lines.encode("utf-16")  # with its BOM
        + lone_surrogate
        + '{"external_id": "u4"}\n'.encode("utf-16-le")
        + b"\x41"  # half a code unit: the file ends mid-character
    )
    report = _ingest(sqlite_desk, path)
    assert report.encodings[str(path)] == "utf-16"
    assert set(_posts(sqlite_desk)) == {"u1", "u2", "u4"}
    reasons = _reasons(report)
    assert "lone surrogate" in reasons["u16.jsonl:3"]
    assert "the rest of the file was not read" in reasons["u16.jsonl:5"]


def test_compact_dates_are_dates_not_unix_seconds(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", ['{"external_id": "d", "created_at": "20261120"}'])
    _ingest(sqlite_desk, path)
    created = _posts(sqlite_desk)["d"].created_at
    assert created is not None and (created.year, created.month, created.day) == (2026, 11, 20)


def test_a_rejected_record_leaves_no_image_files(sqlite_desk: Desk, tmp_path: Path) -> None:
    _image(tmp_path / "good.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"not an image at all")
    path = _jsonl(tmp_path / "r.jsonl", ['{"external_id": "r", "images": ["good.jpg", "bad.jpg"]}'])
    report = _ingest(sqlite_desk, path)
    assert report.added == 0 and len(report.rejected) == 1
    media_dir = sqlite_desk.settings.media_dir
    assert not media_dir.exists() or not any(p.is_file() for p in media_dir.rglob("*"))


def _cli_env(monkeypatch: pytest.MonkeyPatch, desk: Desk, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))


def test_every_input_is_checked_before_anything_is_stored(
    sqlite_desk: Desk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _cli_env(monkeypatch, sqlite_desk, tmp_path)
    good = _jsonl(tmp_path / "a.jsonl", ['{"external_id": "a1"}'])
    assert main(["ingest", str(good), str(tmp_path / "typo.jsonl")]) == 2
    assert "typo.jsonl: no such file or folder" in capsys.readouterr().err
    assert _posts(sqlite_desk) == {}


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


def test_internal_errors_keep_the_traceback_and_their_own_status(
    sqlite_desk: Desk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _cli_env(monkeypatch, sqlite_desk, tmp_path)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("review.cli.ingest_paths", broken)
    assert main(["ingest", str(_jsonl(tmp_path / "a.jsonl", ['{"external_id": "a"}']))]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err and "internal error" in err
    with sqlite_desk.sessions() as session:
        assert session.scalar(select(func.count(Post.id))) == 0


def test_nul_and_json_in_csv_metadata(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(
        'external_id,metadata\nm1,"{""a"": NaN}"\nm2,"' + json.dumps({"deep": [[[1]]]}).replace('"', '""') + '"\n',
        encoding="utf-8",
    )
    report = _ingest(sqlite_desk, path)
    assert "NaN is not a JSON number" in _reasons(report)["m.csv:2"]
    assert _posts(sqlite_desk)["m2"].meta == {"deep": [[[1]]]}

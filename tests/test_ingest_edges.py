"""The edges of ingest found in issue 14: each bad record, zip member, encoding, row, name or
image costs itself only, with its reason; the rest is stored, nothing is guessed, and the run is
audited. Real files, real zips, real symlink loops, real subprocesses for the command line."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import time
import warnings
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select, update

from db.models import AuditEvent, Media, Post, User
from review.auth import OPERATOR, PermissionDenied
from review.cli import main
from review.desk import Desk
from review.errors import IngestError
from review.ingest import IngestReport, ingest_paths
from review.media import collect_garbage, prepare_image, write_image
from review.operations import _unpack, ingest_upload, start_scoring
from tests.conftest import REPO, account

# --------------------------------------------------------------------------------------------
# Helpers


def _png(seed: int, size: tuple[int, int] = (48, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (seed * 37 % 256, seed * 91 % 256, 120)).save(buffer, "PNG")
    return buffer.getvalue()


def _jsonl(*records: dict[str, Any]) -> bytes:
    return ("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n").encode("utf-8")


def _zip(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", method) as zf:
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": wanted here
        for name, data in members:
            zf.writestr(name, data)
    return buffer.getvalue()


def _patch_member(archive: bytes, name: str, *, flag: int = 0, method: int | None = None,
                  file_size: int | None = None, corrupt: bool = False) -> bytes:  # fmt: skip
    """Change one member's headers (local and central) as a hostile or damaged zip has them."""
    data = bytearray(archive)
    info = zipfile.ZipFile(io.BytesIO(archive)).getinfo(name)
    local = info.header_offset
    central = data.index(b"PK\x01\x02")
    while data[central + 46 : central + 46 + len(name)] != name.encode():
        central = data.index(b"PK\x01\x02", central + 4)
    for base, flag_at, method_at, size_at in ((local, 6, 8, 22), (central, 8, 10, 24)):
        struct.pack_into("<H", data, base + flag_at, struct.unpack_from("<H", data, base + flag_at)[0] | flag)
        if method is not None:
            struct.pack_into("<H", data, base + method_at, method)
        if file_size is not None:
            struct.pack_into("<I", data, base + size_at, file_size)
    if corrupt:
        name_len, extra_len = struct.unpack_from("<HH", data, local + 26)
        start = local + 30 + name_len + extra_len
        for i in range(start + 2, start + min(info.compress_size, 40)):
            data[i] ^= 0x5A
    return bytes(data)


def _posts(desk: Desk) -> dict[str, Post]:
    with desk.sessions() as session:
        return {p.external_id: p for p in session.scalars(select(Post))}


def _reasons(report: IngestReport) -> dict[str, str]:
    return {r.location: r.reason for r in report.rejected}


def _audit(desk: Desk, action: str) -> list[AuditEvent]:
    with desk.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def _env(desk: Desk) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REVIEW_CONFIG", "MAX_IMAGE_PIXELS", "MAX_IMAGE_BYTES")}
    env.update(DATABASE_URL=desk.settings.database_url, MEDIA_DIR=str(desk.settings.media_dir), PYTHONPATH=str(REPO))
    return env


@pytest.fixture
def cli(desk: Desk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Desk:
    """`main([...])` in this process on the desk (SQLite and Postgres)."""
    for var in ("REVIEW_CONFIG", "MAX_IMAGE_PIXELS", "MAX_IMAGE_BYTES", "MAX_TEXT_CHARS", "THUMBNAIL_SIZE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    monkeypatch.chdir(tmp_path)
    return desk


def _crashing_paths(folder: Path) -> Path:
    """A JSONL whose records 2 and 3 name images whose paths raise RuntimeError in pathlib."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ok.png").write_bytes(_png(1))
    (folder / "loop").mkdir()
    os.symlink("b", folder / "loop" / "a")
    os.symlink("a", folder / "loop" / "b")
    path = folder / "posts.jsonl"
    path.write_bytes(
        _jsonl(
            {"external_id": "good1", "text": "kept", "images": ["ok.png"]},
            {"external_id": "tilde", "images": ["~nosuchuser/a.jpg"]},
            {"external_id": "loop", "images": ["loop/a"]},
            {"external_id": "good2", "text": "kept too"},
        )
    )
    return path


# --------------------------------------------------------------------------------------------
# 1. One record must not crash the ingest


def test_unknown_home_and_symlink_loop_are_rejections_and_the_rest_is_stored(desk: Desk, tmp_path: Path) -> None:
    path = _crashing_paths(tmp_path / "in")
    report = ingest_paths(desk.sessions, [path], desk.settings)
    assert (report.added, report.already_present) == (2, 0)
    reasons = _reasons(report)
    assert list(reasons) == ["posts.jsonl:2", "posts.jsonl:3"]
    assert "'~nosuchuser/a.jpg'" in reasons["posts.jsonl:2"] and "home folder" in reasons["posts.jsonl:2"]
    assert "'loop/a'" in reasons["posts.jsonl:3"] and "cannot be resolved" in reasons["posts.jsonl:3"]
    assert set(_posts(desk)) == {"good1", "good2"}


def test_cli_ingest_with_crashing_paths_exits_1_with_the_whole_report(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = _crashing_paths(tmp_path / "in")
    run = subprocess.run(
        [sys.executable, "-m", "review", "ingest", "--quiet", str(path)],
        cwd=tmp_path, env=_env(sqlite_desk), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout.strip() == "2 added, 0 already present, 2 rejected"
    assert "rejected posts.jsonl:2: image '~nosuchuser/a.jpg'" in run.stderr
    assert "rejected posts.jsonl:3: image 'loop/a'" in run.stderr
    assert set(_posts(sqlite_desk)) == {"good1", "good2"}


def test_upload_with_an_unknown_home_folder_rejects_that_record_only(desk: Desk) -> None:
    lead = account(desk, "lead")
    data = _jsonl({"external_id": "u1", "images": ["a.png"]}, {"external_id": "u2", "images": ["~nosuchuser/a.png"]})
    report = ingest_upload(desk.sessions, desk.settings, lead, [("posts.jsonl", data), ("a.png", _png(2))])
    assert report.added == 1
    assert "home folder" in _reasons(report)["posts.jsonl:2"]
    assert set(_posts(desk)) == {"u1"}


def test_metadata_nested_too_deeply_is_a_rejection_not_a_crash(sqlite_desk: Desk, tmp_path: Path) -> None:
    # Pydantic's serialiser gives up at ~250 levels with a ValueError that used to end the ingest.
    path = tmp_path / "deep.jsonl"
    deep = "[" * 300 + "]" * 300
    path.write_text('{"external_id": "deep", "metadata": {"x": ' + deep + '}}\n{"external_id": "flat"}\n')
    report = ingest_paths(sqlite_desk.sessions, [path], sqlite_desk.settings)
    assert report.added == 1
    assert "nested more than 32 levels" in _reasons(report)["deep.jsonl:1"]
    assert set(_posts(sqlite_desk)) == {"flat"}


# --------------------------------------------------------------------------------------------
# 2. Zip uploads


def test_zip_members_that_cannot_be_unpacked_are_rejections(desk: Desk) -> None:
    lead = account(desk, "lead")
    records = _jsonl(*({"external_id": n, "images": [f"{n}.png"]} for n in ("good", "enc", "bad", "m9", "lie")))
    names = ("good", "enc", "bad", "m9", "lie")
    archive = _zip(
        [("batch/posts.jsonl", records)] + [(f"batch/{n}.png", _png(i + 3, (300, 200))) for i, n in enumerate(names)]
    )
    archive = _patch_member(archive, "batch/enc.png", flag=0x1)  # encrypted: RuntimeError in zipfile
    archive = _patch_member(archive, "batch/bad.png", corrupt=True)  # damaged deflate stream
    archive = _patch_member(archive, "batch/m9.png", method=9)  # Deflate64: NotImplementedError
    true_size = zipfile.ZipFile(io.BytesIO(archive)).getinfo("batch/lie.png").file_size
    archive = _patch_member(archive, "batch/lie.png", file_size=true_size // 2)  # more data than declared

    report = ingest_upload(desk.sessions, desk.settings, lead, [("drop.zip", archive)])

    reasons = _reasons(report)
    assert "encrypted" in reasons["drop.zip/batch/enc.png"]
    assert "cannot be unpacked" in reasons["drop.zip/batch/bad.png"]
    assert "compression method 9" in reasons["drop.zip/batch/m9.png"]
    assert "cannot be unpacked" in reasons["drop.zip/batch/lie.png"]
    # the records that named the refused members are refused (their image is not there) ...
    assert {loc for loc in reasons if loc.startswith("posts.jsonl")} == {f"posts.jsonl:{i}" for i in (2, 3, 4, 5)}
    # ... and the good one is stored
    assert report.added == 1 and set(_posts(desk)) == {"good"}
    assert _audit(desk, "ingest")[-1].details["rejected"] == len(report.rejected) == 8


def test_a_zip_bomb_is_refused_by_its_declared_size_before_anything_is_extracted(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("posts.jsonl", _jsonl({"external_id": "z"}))
        with zf.open("zeros.bin", "w", force_zip64=True) as fh:
            chunk = bytes(1 << 20)
            for _ in range(1024):  # 1 GiB of zeros in about 1 MB
                fh.write(chunk)
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(buffer.getvalue())
    assert archive.stat().st_size < 8 * 2**20
    into = tmp_path / "out"
    started = time.monotonic()
    written, rejected = _unpack(archive, into, budget=2 * 1024**3)
    assert time.monotonic() - started < 5
    assert [r.location for r in rejected] == ["bomb.zip/zeros.bin"]
    assert "zip bomb" in rejected[0].reason and "1,073,741,824 bytes" in rejected[0].reason
    assert not (into / "zeros.bin").exists() and written < 1000
    # the total bound: checked on the declared sizes, before the first member is written
    small = tmp_path / "small.zip"
    small.write_bytes(_zip([("a.png", _png(1)), ("b.png", _png(2))], method=zipfile.ZIP_STORED))
    with pytest.raises(IngestError, match="declares"):
        _unpack(small, tmp_path / "small", budget=len(_png(1)) + 10)
    assert not (tmp_path / "small").exists() or not any((tmp_path / "small").iterdir())


def test_duplicate_member_names_are_refused_not_overwritten(sqlite_desk: Desk) -> None:
    lead = account(sqlite_desk, "lead")
    records = _jsonl({"external_id": "dup", "images": ["a.png"]}, {"external_id": "one", "images": ["b.png"]})
    archive = _zip([("posts.jsonl", records), ("a.png", _png(1)), ("a.png", _png(2)), ("b.png", _png(3))])
    report = ingest_upload(sqlite_desk.sessions, sqlite_desk.settings, lead, [("d.zip", archive)])
    reasons = _reasons(report)
    assert [r.location for r in report.rejected if r.location.startswith("d.zip")] == ["d.zip/a.png"] * 2
    assert "used by 2 members" in reasons["d.zip/a.png"]
    assert "posts.jsonl:1" in reasons  # its image was not taken
    assert set(_posts(sqlite_desk)) == {"one"}


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_zip_members_leaving_the_folder_still_refuse_the_upload(sqlite_desk: Desk, kind: str) -> None:
    lead = account(sqlite_desk, "lead")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("posts.jsonl", _jsonl({"external_id": "x"}))
        if kind == "symlink":
            link = zipfile.ZipInfo("link.png")
            link.external_attr = 0o120777 << 16
            zf.writestr(link, "/etc/passwd")
        else:
            zf.writestr("../evil.png" if kind == "dotdot" else "/tmp/evil.png", _png(1))
    with pytest.raises(IngestError, match="refused member"):
        ingest_upload(sqlite_desk.sessions, sqlite_desk.settings, lead, [("e.zip", buffer.getvalue())])
    assert _posts(sqlite_desk) == {}


# --------------------------------------------------------------------------------------------
# 3. Encodings are named, never guessed

BIG5 = "external_id,text\nb1,臺灣的新聞\nb2,颱風警報\n"
SJIS = '{"external_id": "j1", "text": "こんにちは世界"}\n{"external_id": "j2", "text": "東京の天気"}\n'


@pytest.mark.parametrize(("name", "text", "encoding"), [("tw.csv", BIG5, "big5"), ("jp.jsonl", SJIS, "shift_jis")])
def test_big5_and_shift_jis_are_refused_unless_named(
    sqlite_desk: Desk, tmp_path: Path, name: str, text: str, encoding: str
) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    with pytest.raises(IngestError, match="not UTF-8 text.*--encoding"):
        ingest_paths(sqlite_desk.sessions, [path], sqlite_desk.settings)
    assert _posts(sqlite_desk) == {}
    report = ingest_paths(sqlite_desk.sessions, [path], sqlite_desk.settings, encoding=encoding)
    assert report.added == 2 and report.rejected == []
    texts = {p.text for p in _posts(sqlite_desk).values()}
    assert texts == ({"臺灣的新聞", "颱風警報"} if encoding == "big5" else {"こんにちは世界", "東京の天気"})


def test_cli_big5_needs_encoding(cli: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tw.csv"
    path.write_bytes(BIG5.encode("big5"))
    assert main(["ingest", "--quiet", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--encoding" in err and len(err.splitlines()) == 1
    assert main(["ingest", "--quiet", "--encoding", "big5", str(path)]) == 0
    assert {p.text for p in _posts(cli).values()} == {"臺灣的新聞", "颱風警報"}


def test_upload_takes_a_named_encoding(sqlite_desk: Desk) -> None:
    lead = account(sqlite_desk, "lead")
    files = [("tw.csv", BIG5.encode("big5"))]
    with pytest.raises(IngestError, match="--encoding"):
        ingest_upload(sqlite_desk.sessions, sqlite_desk.settings, lead, files)
    report = ingest_upload(sqlite_desk.sessions, sqlite_desk.settings, lead, files, encoding="big5")
    assert report.added == 2
    assert _posts(sqlite_desk)["b1"].text == "臺灣的新聞"


# --------------------------------------------------------------------------------------------
# 4. CSV rows and columns


def test_one_bad_byte_rejects_its_row_only(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes("external_id,text\nr1,第一行\n".encode() + b"r2,caf\xe9\n" + "r3,第三行\n".encode())
    report = ingest_paths(sqlite_desk.sessions, [path], sqlite_desk.settings)
    assert report.added == 2
    assert _reasons(report) == {
        "data.csv:3": "not UTF-8 (byte 0xe9); the row was not stored "
        "(pass --encoding if the file is in another encoding)"
    }
    assert {p.external_id: p.text for p in _posts(sqlite_desk).values()} == {"r1": "第一行", "r3": "第三行"}


def test_undecodable_lines_in_ascii_text_cost_only_those_lines(sqlite_desk: Desk, tmp_path: Path) -> None:
    """More than 3 bad bytes, but nothing else beyond ASCII: no line that decodes can be mojibake,
    so the bad lines are rejections and their neighbours are stored (the file is not refused)."""
    path = tmp_path / "data.jsonl"
    path.write_bytes(
        b'{"external_id": "a", "text": "before"}\n'
        b'{"external_id": "b", "text": "\xed\xa0\x80"}\n'
        b'{"external_id": "c", "text": "caf\xe9 au lait"}\n'
        b'{"external_id": "d", "text": "after"}\n'
    )
    report = ingest_paths(sqlite_desk.sessions, [path], sqlite_desk.settings)
    assert report.added == 2
    assert set(_reasons(report)) == {"data.jsonl:2", "data.jsonl:3"}
    assert {p.external_id: p.text for p in _posts(sqlite_desk).values()} == {"a": "before", "d": "after"}


def test_duplicate_csv_columns_refuse_the_file(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("external_id,text,author, Text \nd1,first text,ann,second text\n", encoding="utf-8")
    report = ingest_paths(sqlite_desk.sessions, [path], sqlite_desk.settings)
    assert report.added == 0
    reason = _reasons(report)["dup.csv:1"]
    assert "'text' more than once" in reason and "file not read" in reason
    assert _posts(sqlite_desk) == {}


# --------------------------------------------------------------------------------------------
# 5. Metadata bounds


def test_metadata_keys_are_bounded(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = tmp_path / "meta.jsonl"
    half = {f"k{i}": i for i in range(300)}
    path.write_bytes(
        _jsonl(
            {"external_id": "many", "metadata": {f"k{i}": i for i in range(501)}},
            {"external_id": "nested", "metadata": {"a": half, "b": {"c": half}}},
            {"external_id": "long", "metadata": {"x" * 129: 1}},
            {"external_id": "fine", "metadata": {f"k{i}": i for i in range(500)}},
        )
    )  # fmt: skip
    report = ingest_paths(sqlite_desk.sessions, [path], sqlite_desk.settings)
    reasons = _reasons(report)
    assert "more than 500 keys" in reasons["meta.jsonl:1"] and "more than 500 keys" in reasons["meta.jsonl:2"]
    assert "129 characters" in reasons["meta.jsonl:3"]
    assert set(_posts(sqlite_desk)) == {"fine"}


# --------------------------------------------------------------------------------------------
# 6. Timestamps


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (253402300800, "out of range"),  # the year 10000 in seconds: Pydantic read it as ms (1978)
        ("253402300800", "out of range"),
        (1700000000000, "looks like milliseconds"),
        (0, "out of range"),  # "unknown" placeholders
        (-1, "out of range"),
        ("1969-12-31", "out of range"),
        ("2999-01-01T00:00:00Z", "out of range"),
        ("10000-01-01", "created_at"),
    ],
)
def test_absurd_times_are_rejected_not_reinterpreted(sqlite_desk: Desk, tmp_path: Path, value: Any, why: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(_jsonl({"external_id": "t", "created_at": value}, {"external_id": "ok"}))
    report = ingest_paths(sqlite_desk.sessions, [path], sqlite_desk.settings)
    assert set(_posts(sqlite_desk)) == {"ok"}
    assert why in _reasons(report)["t.jsonl:1"]


def test_sane_times_are_kept(sqlite_desk: Desk, tmp_path: Path) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    path = tmp_path / "t.jsonl"
    path.write_bytes(
        _jsonl(
            {"external_id": "secs", "created_at": 1700000000},
            {"external_id": "text", "created_at": "1700000000.5"},
            {"external_id": "iso", "created_at": "2024-05-01T12:00:00+08:00"},
            {"external_id": "soon", "created_at": soon},  # a platform clock a little ahead
            {"external_id": "usenet", "created_at": "1981-06-01"},
        )
    )
    report = ingest_paths(sqlite_desk.sessions, [path], sqlite_desk.settings)
    assert report.rejected == []
    posts = _posts(sqlite_desk)
    assert posts["secs"].created_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert posts["iso"].created_at == datetime(2024, 5, 1, 4, 0, tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# 7. Names cannot forge report lines


def test_names_with_newlines_stay_on_one_line(cli: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "ok.png").write_bytes(_png(1))
    (drop / "x.png\nrejected admin.png: forged line\u202e.png").write_bytes(b"not an image")
    data = tmp_path / "a\nrejected b.jsonl"
    data.write_bytes(_jsonl({"external_id": "j"}, {"no_id": 1}))
    assert main(["ingest", "--quiet", str(drop), str(data)]) == 1
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert all(line.startswith(("rejected ", "warning ", "note: ")) for line in lines), lines
    assert len([line for line in lines if line.startswith("rejected ")]) == 2
    assert not any(line.startswith("rejected admin") or line.startswith("rejected b.jsonl") for line in lines)
    assert "\\n" in err and "\\u202e" in err
    assert out.strip() == "2 added, 0 already present, 2 rejected"
    event = _audit(cli, "ingest")[-1]
    assert "\n" not in (event.subject or "") and all("\n" not in name for name in event.details["inputs"])


# --------------------------------------------------------------------------------------------
# 8. Decode memory

_MAKE = """
import sys
from PIL import Image, ImageDraw
im = Image.new("RGB", (7000, 7000), (250, 250, 245))
d = ImageDraw.Draw(im)
for i in range(0, 7000, 350):
    d.rectangle((i, i // 2, i + 200, i // 2 + 300), fill=(i % 255, 80, 160))
    d.line((0, i, 7000, 7000 - i), fill=(20, 20, 20), width=5)
im.save(sys.argv[1] + "/rgb.png")
im.save(sys.argv[1] + "/photo.jpg", quality=85)
im.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(sys.argv[1] + "/palette.png")
"""
_MEASURE = """
import os, resource, sys
from review.media import prepare_image
prepare_image(open(sys.argv[1] + "/small.png", "rb").read(), max_pixels=50_000_000, thumbnail_size=256)  # warm
for name in sys.argv[2:]:
    data = open(sys.argv[1] + "/" + name, "rb").read()
    if os.fork() == 0:  # a child per image: its peak starts from the warm parent's size
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        image = prepare_image(data, max_pixels=50_000_000, thumbnail_size=256)
        rise = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024
        print(name, rise, image.stored.width, image.stored.height, image.thumbnail.size[0], flush=True)
        os._exit(0)
    os.wait()
"""


def test_a_7000_square_image_is_thumbnailed_within_a_memory_bound(tmp_path: Path) -> None:
    """Peak RSS above the warm process, one forked child per image: before, 377 MB (JPEG), 468 MB
    (palette PNG), 376 MB (RGB PNG); now about 8, 100 and 220 MB: one decoding buffer in the
    file's own mode (RGB 7000² = 196 MB at Pillow's 4 bytes a pixel), or 1/8 of the JPEG's sides."""
    subprocess.run([sys.executable, "-c", _MAKE, str(tmp_path)], check=True, timeout=120)
    (tmp_path / "small.png").write_bytes(_png(1))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", _MEASURE, str(tmp_path), "photo.jpg", "palette.png", "rgb.png"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=120).stdout
    peaks = {}
    for line in out.splitlines():
        name, peak, *sizes = line.split()
        peaks[name] = int(peak)
        assert sizes == ["7000", "7000", "256"]
    assert peaks["photo.jpg"] < 60, peaks
    assert peaks["palette.png"] < 150, peaks
    assert peaks["rgb.png"] < 260, peaks


def test_a_reduced_decode_keeps_size_orientation_and_hash(tmp_path: Path) -> None:
    import imagehash

    photo = Image.effect_mandelbrot((2400, 1200), (-2.0, -1.0, 1.0, 1.0), 80).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90, exif=exif)
    prepared = prepare_image(buffer.getvalue(), max_pixels=50_000_000, thumbnail_size=256)
    assert (prepared.stored.width, prepared.stored.height) == (1200, 2400)
    assert prepared.thumbnail.size == (128, 256)
    upright = photo.transpose(Image.Transpose.ROTATE_270)
    full = upright.copy()
    full.thumbnail((256, 256), Image.Resampling.BICUBIC, reducing_gap=2.0)
    assert imagehash.hex_to_hash(prepared.stored.phash) - imagehash.phash(full) <= 6


# --------------------------------------------------------------------------------------------
# 9. media gc


def _age(path: Path, minutes: float) -> None:
    stamp = time.time() - minutes * 60
    os.utime(path, (stamp, stamp))


def test_media_gc_lists_then_removes_what_crashes_left(
    cli: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    desk = cli
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(_png(1))
    (tmp_path / "in" / "p.jsonl").write_bytes(_jsonl({"external_id": "p", "images": ["a.png"]}))
    assert main(["ingest", "--quiet", str(tmp_path / "in" / "p.jsonl")]) == 0
    media = desk.settings.media_dir
    with desk.sessions() as session:
        row = session.scalars(select(Media)).one()
    kept = [media / row.path, media / row.thumb_path]
    # a crash after writing the files, before the commit: an orphan and its thumbnail
    orphan = prepare_image(_png(2), max_pixels=10**7, thumbnail_size=64)
    stored = write_image(orphan, media)
    orphans = [media / stored.path, media / stored.thumb_path]
    # a crash during a write: a temporary file; and the same, just now (an ingest writing)
    tmp_old = media / row.path[:5] / ".tmp-crash123.png"
    tmp_old.write_bytes(b"x" * 1000)
    tmp_new = media / row.path[:5] / ".tmp-writing.png"
    tmp_new.write_bytes(b"y" * 10)
    foreign = media / "README.txt"
    foreign.write_text("an operator's note")
    for path in [*kept, *orphans, tmp_old, foreign]:
        _age(path, 120)

    assert main(["media", "gc"]) == 0
    out = capsys.readouterr().out
    assert f"would remove {1000:>12,}  {tmp_old.relative_to(media).as_posix()}" in out
    for path in orphans:
        assert f"{path.stat().st_size:>12,}  {path.relative_to(media).as_posix()}" in out
    assert "would remove 1 temporary files (1,000 bytes) and 2 orphaned files" in out
    assert "1 newer than the age threshold kept" in out and "1 files that are not the store's own" in out
    assert all(p.exists() for p in [*kept, *orphans, tmp_old, tmp_new, foreign])
    assert _audit(desk, "media.gc") == []

    orphan_bytes = sum(p.stat().st_size for p in orphans)
    assert main(["media", "gc", "--delete"]) == 0
    out = capsys.readouterr().out
    assert "removed 1 temporary files (1,000 bytes) and 2 orphaned files" in out
    assert not any(p.exists() for p in [*orphans, tmp_old])
    assert all(p.exists() for p in [*kept, tmp_new, foreign])
    (event,) = _audit(desk, "media.gc")
    assert event.actor_name == "(command line)"
    assert (event.details["temp_files"], event.details["orphans"]) == (1, 2)
    assert event.details["bytes"] == 1000 + orphan_bytes

    # a lead may not; an admin may
    with pytest.raises(PermissionDenied):
        collect_garbage(desk.sessions, media, account(desk, "lead"))
    assert collect_garbage(desk.sessions, media, account(desk, "admin")).files == []


def test_a_reused_store_file_is_young_again(tmp_path: Path) -> None:
    prepared = prepare_image(_png(5), max_pixels=10**7, thumbnail_size=64)
    stored = write_image(prepared, tmp_path)
    for rel in (stored.path, stored.thumb_path):
        _age(tmp_path / rel, 600)
    write_image(prepared, tmp_path)  # an ingest of the same bytes: the files are about to be referred to
    for rel in (stored.path, stored.thumb_path):
        assert time.time() - (tmp_path / rel).stat().st_mtime < 60


# --------------------------------------------------------------------------------------------
# 10. Audit and live permission checks


def test_every_ingest_is_audited(cli: Desk, tmp_path: Path) -> None:
    desk = cli
    path = tmp_path / "posts.jsonl"
    path.write_bytes(_jsonl({"external_id": "a"}, {"external_id": "b"}, {"no_id": 1}))
    assert main(["ingest", "--quiet", str(path)]) == 1
    assert main(["ingest", "--quiet", str(path)]) == 1
    lead = account(desk, "lead")
    upload = ingest_upload(desk.sessions, desk.settings, lead, [("up.jsonl", _jsonl({"external_id": "c"}))])
    assert upload.added == 1
    first, second, third = _audit(desk, "ingest")
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
    assert _audit(desk, "ingest")[-1].details["outcome"] == "error"


def test_a_role_lowered_after_sign_in_is_refused(desk: Desk, tmp_path: Path) -> None:
    lead = account(desk, "lead")  # the Actor a page holds since sign-in
    with desk.sessions() as session, session.begin():
        session.execute(update(User).where(User.id == lead.id).values(role="moderator"))
    files = [("posts.jsonl", _jsonl({"external_id": "m1"}))]
    with pytest.raises(PermissionDenied):
        ingest_upload(desk.sessions, desk.settings, lead, files)
    path = tmp_path / "posts.jsonl"
    path.write_bytes(files[0][1])
    with pytest.raises(PermissionDenied):
        ingest_paths(desk.sessions, [path], desk.settings, actor=lead)
    with pytest.raises(PermissionDenied):
        start_scoring(desk.settings, lead, limit=1, provider="baseline")
    with pytest.raises(PermissionDenied):
        start_scoring(desk.settings, lead, limit=1, provider="baseline", sessions=desk.sessions)
    assert _posts(desk) == {}
    assert ingest_paths(desk.sessions, [path], desk.settings, actor=OPERATOR).added == 1


@pytest.mark.parametrize("decode", ["decode_image", "decode_thumbnail"])
def test_corrupt_png_data_is_refused_by_both_decoders(decode: str) -> None:
    """Reading a PNG's EXIF loads the picture; the load error it swallowed must not let a corrupt
    data stream through (the reduced decode once read the orientation before loading)."""
    from review import media

    out = io.BytesIO()
    Image.effect_noise((64, 64), 80).convert("RGB").save(out, "PNG")
    data = bytearray(out.getvalue())
    at = data.index(b"IDAT") + 8
    data[at : at + 16] = b"\xff" * 16
    with pytest.raises(media.MediaError, match="truncated or corrupt"):
        if decode == "decode_image":
            media.decode_image(bytes(data), 10**8)
        else:
            media.decode_thumbnail(bytes(data), max_pixels=10**8, size=320)

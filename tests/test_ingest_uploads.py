"""review/ingest/uploads.py: the Ingest page's uploads — zip members that cannot be unpacked, zip
bombs refused by their declared size, duplicate or escaping member names, a named encoding, and an
unknown home folder costing only its record. Real zips, patched headers for damaged ones.
"""

from __future__ import annotations

import io
import struct
import time
import warnings
import zipfile
from pathlib import Path

import pytest

from review.desk import Desk
from review.errors import IngestError
from review.ingest.uploads import _unpack, ingest_upload
from tests.conftest import BIG5, account, audit_rows, jsonl_bytes, png_bytes, rejections, stored_posts


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


def test_upload_with_an_unknown_home_folder_rejects_that_record_only(desk: Desk) -> None:
    lead = account(desk, "lead")
    data = jsonl_bytes(
        {"external_id": "u1", "images": ["a.png"]}, {"external_id": "u2", "images": ["~nosuchuser/a.png"]}
    )
    report = ingest_upload(desk.sessions, desk.settings, lead, [("posts.jsonl", data), ("a.png", png_bytes(2))])
    assert report.added == 1
    assert "home folder" in rejections(report)["posts.jsonl:2"]
    assert set(stored_posts(desk)) == {"u1"}


def test_zip_members_that_cannot_be_unpacked_are_rejections(desk: Desk) -> None:
    lead = account(desk, "lead")
    records = jsonl_bytes(*({"external_id": n, "images": [f"{n}.png"]} for n in ("good", "enc", "bad", "m9", "lie")))
    names = ("good", "enc", "bad", "m9", "lie")
    archive = _zip(
        [("batch/posts.jsonl", records)]
        + [(f"batch/{n}.png", png_bytes(i + 3, (300, 200))) for i, n in enumerate(names)]
    )
    archive = _patch_member(archive, "batch/enc.png", flag=0x1)  # encrypted: RuntimeError in zipfile
    archive = _patch_member(archive, "batch/bad.png", corrupt=True)  # damaged deflate stream
    archive = _patch_member(archive, "batch/m9.png", method=9)  # Deflate64: NotImplementedError
    true_size = zipfile.ZipFile(io.BytesIO(archive)).getinfo("batch/lie.png").file_size
    archive = _patch_member(archive, "batch/lie.png", file_size=true_size // 2)  # more data than declared

    report = ingest_upload(desk.sessions, desk.settings, lead, [("drop.zip", archive)])

    reasons = rejections(report)
    assert "encrypted" in reasons["drop.zip/batch/enc.png"]
    assert "cannot be unpacked" in reasons["drop.zip/batch/bad.png"]
    assert "compression method 9" in reasons["drop.zip/batch/m9.png"]
    assert "cannot be unpacked" in reasons["drop.zip/batch/lie.png"]
    # the records that named the refused members are refused (their image is not there) ...
    records_refused = {loc for loc in reasons if ".jsonl:" in loc}  # a data file is named by its path in the upload
    assert records_refused == {f"drop.zip/batch/posts.jsonl:{i}" for i in (2, 3, 4, 5)}
    # ... and the good one is stored
    assert report.added == 1 and set(stored_posts(desk)) == {"good"}
    assert audit_rows(desk, "ingest")[-1].details["rejected"] == len(report.rejected) == 8


def test_a_zip_bomb_is_refused_by_its_declared_size_before_anything_is_extracted(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("posts.jsonl", jsonl_bytes({"external_id": "z"}))
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
    small.write_bytes(_zip([("a.png", png_bytes(1)), ("b.png", png_bytes(2))], method=zipfile.ZIP_STORED))
    with pytest.raises(IngestError, match="declares"):
        _unpack(small, tmp_path / "small", budget=len(png_bytes(1)) + 10)
    assert not (tmp_path / "small").exists() or not any((tmp_path / "small").iterdir())


def test_duplicate_member_names_are_refused_not_overwritten(sqlite_desk: Desk) -> None:
    lead = account(sqlite_desk, "lead")
    records = jsonl_bytes({"external_id": "dup", "images": ["a.png"]}, {"external_id": "one", "images": ["b.png"]})
    archive = _zip(
        [("posts.jsonl", records), ("a.png", png_bytes(1)), ("a.png", png_bytes(2)), ("b.png", png_bytes(3))]
    )
    report = ingest_upload(sqlite_desk.sessions, sqlite_desk.settings, lead, [("d.zip", archive)])
    reasons = rejections(report)
    assert [r.location for r in report.rejected if r.location.startswith("d.zip/a")] == ["d.zip/a.png"] * 2
    assert "used by 2 members" in reasons["d.zip/a.png"]
    assert "d.zip/posts.jsonl:1" in reasons  # its image was not taken
    assert set(stored_posts(sqlite_desk)) == {"one"}


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_zip_members_leaving_the_folder_still_refuse_the_upload(sqlite_desk: Desk, kind: str) -> None:
    lead = account(sqlite_desk, "lead")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("posts.jsonl", jsonl_bytes({"external_id": "x"}))
        if kind == "symlink":
            link = zipfile.ZipInfo("link.png")
            link.external_attr = 0o120777 << 16
            zf.writestr(link, "/etc/passwd")
        else:
            zf.writestr("../evil.png" if kind == "dotdot" else "/tmp/evil.png", png_bytes(1))
    with pytest.raises(IngestError, match="refused member"):
        ingest_upload(sqlite_desk.sessions, sqlite_desk.settings, lead, [("e.zip", buffer.getvalue())])
    assert stored_posts(sqlite_desk) == {}


def test_upload_takes_a_named_encoding(sqlite_desk: Desk) -> None:
    lead = account(sqlite_desk, "lead")
    files = [("tw.csv", BIG5.encode("big5"))]
    with pytest.raises(IngestError, match="--encoding"):
        ingest_upload(sqlite_desk.sessions, sqlite_desk.settings, lead, files)
    report = ingest_upload(sqlite_desk.sessions, sqlite_desk.settings, lead, files, encoding="big5")
    assert report.added == 2
    assert stored_posts(sqlite_desk)["b1"].text == "臺灣的新聞"


def test_rejections_name_the_uploaded_files_never_the_servers_folders(sqlite_desk: Desk) -> None:
    """Where and why a record was refused, in the names the user uploaded: a zip's data file by its
    path in the archive, a missing image by its path in the upload, the upload's folder as
    <upload>; never the temporary folder it was read from."""
    lead = account(sqlite_desk, "lead")
    archive = _zip([("day1/posts.jsonl", jsonl_bytes({"external_id": "z1", "images": ["gone.png"]}))])
    loose = jsonl_bytes({"external_id": "l1", "images": ["../../etc/passwd"]}, {"external_id": "l2", "text": "ok"})
    report = ingest_upload(sqlite_desk.sessions, sqlite_desk.settings, lead,
                           [("week 1.zip", archive), ("loose.jsonl", loose)])  # fmt: skip
    found = rejections(report)
    assert set(found) == {"week 1.zip/day1/posts.jsonl:1", "loose.jsonl:1"}
    assert "file not found: week 1.zip/day1/gone.png (" in found["week 1.zip/day1/posts.jsonl:1"]
    assert "outside the input folder <upload> " in found["loose.jsonl:1"]
    assert set(report.encodings) == {"week 1.zip/day1/posts.jsonl", "loose.jsonl"}
    assert "review-upload-" not in repr(report)

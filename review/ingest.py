"""Posts and their images into the database: JSONL, CSV/TSV, folders of images, API payloads.

The record schema (see README): ``external_id`` (required), ``source``, ``text``, ``author``,
``created_at``, ``images`` (paths relative to the input file's folder; absolute ones only when allowed),
``metadata`` (a JSON object). Unknown fields are kept in ``metadata``.

Guarantees:
- ``(source, external_id)`` is unique: re-ingesting a post never duplicates it (it counts as
  "already present" and the stored post is left unchanged);
- a bad record is rejected with its location (``file:line``) and a reason a person can act on,
  and the good records around it are stored;
- a record is stored whole or not at all: if one of its images is bad, the post is rejected;
- relative image paths may not leave the input's folder (no ``../`` or symlink escapes);
- text is read as UTF-8 (with or without BOM) or UTF-16/32 with a BOM unless the operator names
  the encoding; other text is refused, never guessed (a guess among legacy encodings stores
  mojibake), and a row or line with undecodable bytes is rejected alone;
- file names and other untrusted text in rejections and warnings are escaped to one line.

:func:`ingest_paths` is what ``python -m review ingest`` runs; :func:`ingest_records` takes
already-parsed records (the API entry point).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from db.models import Media, Post, PostMedia, PostStatus
from db.session import writing
from review import audit
from review.auth import OPERATOR, Actor, Permission, require_live
from review.config import Settings
from review.errors import IngestError, MediaError
from review.media import StoredImage, prepare_image, read_image_file, write_image
from review.text import one_line, shown  # (shown: also for review.operations)

DEFAULT_SOURCE = "local"
MAX_RECORD_BYTES = 16 * 2**20  # one JSONL line or sidecar file; larger ones are refused unread
MAX_METADATA_KEYS = 500  # keys in one record's metadata, nested objects' keys included
MAX_METADATA_KEY_CHARS = 128  # characters in one metadata key
MAX_METADATA_DEPTH = 32  # nesting of objects and lists in metadata
# created_at must fall in [EARLIEST_CREATED_AT, now + FUTURE_SLACK]: older is not a social-media
# post (Usenet began in 1980; 1970-01-01 is a placeholder for "unknown"), later is a bad clock.
EARLIEST_CREATED_AT = datetime(1980, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)
CHUNK_SIZE = 200  # records per transaction
SIDECAR_SUFFIXES = {".txt", ".json"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
CSV_SUFFIXES = {".csv", ".tsv"}
DATA_SUFFIXES = JSONL_SUFFIXES | CSV_SUFFIXES
IGNORED_NAMES = {"thumbs.db", "desktop.ini"}
# progress(label, total) → callback(done): how long inputs report progress (tqdm in the CLI).
Progress = Callable[[str, int], Callable[[int], None]]
# Python's csv module refuses fields over 128 KiB by default; our own MAX_TEXT_CHARS applies instead.
csv.field_size_limit(2**31 - 1)
RECORD_FIELDS = {"external_id", "source", "text", "author", "created_at", "images", "metadata"}


class PostRecord(BaseModel):
    """One post as it arrives. Anything crossing the ingest boundary is validated here."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    external_id: str = Field(min_length=1, max_length=255)
    source: str = Field(default=DEFAULT_SOURCE, min_length=1, max_length=64)
    text: str = ""
    author: str | None = Field(default=None, max_length=255)
    created_at: datetime | None = None
    images: list[str] = Field(default_factory=list, max_length=50)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("external_id", "source", mode="before")
    @classmethod
    def _identifier(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # numeric ids from CSV exports and JSON
        if isinstance(value, str):
            value = value.strip()
            if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
                raise ValueError("must not contain control or invisible (zero-width, bidi) characters")
        return value

    @field_validator("text", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("created_at", mode="before")
    @classmethod
    def _created_at(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return None
            if re.fullmatch(r"\d{8}", value):  # 20261120: a compact date, not Unix seconds
                value = f"{value[:4]}-{value[4:6]}-{value[6:]}"
            elif re.fullmatch(r"\d{14}", value):  # 20261120083000: a compact date and time
                value = f"{value[:4]}-{value[4:6]}-{value[6:8]}T{value[8:10]}:{value[10:12]}:{value[12:]}"
            elif re.fullmatch(r"[+-]?\d+(\.\d+)?", value):  # a number in a string: Unix seconds
                return _from_unix_seconds(float(value) if "." in value else int(value))
            elif re.match(r"^\d{4}/\d{1,2}/\d{1,2}", value):  # 2024/05/01 12:00, common in CN exports
                date, _, time = value.partition(" ")
                y, m, d = date.split("/")
                value = f"{y}-{int(m):02d}-{int(d):02d}" + (f" {time}" if time else "")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            return _from_unix_seconds(value)
        return value

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)  # naive timestamps are taken as UTC (documented)
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"is out of range; {_TIME_RANGE}") from None
        if not EARLIEST_CREATED_AT <= value <= datetime.now(UTC) + FUTURE_SLACK:
            raise ValueError(f"{value.isoformat()} is out of range; {_TIME_RANGE}")
        return value

    @field_validator("images", mode="before")
    @classmethod
    def _images(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        return value


_TIME_RANGE = (
    f"a post's time must lie between {EARLIEST_CREATED_AT:%Y-%m-%d} and one day from now (UTC); "
    "fix it or leave created_at empty"
)


def _from_unix_seconds(value: int | float) -> datetime:
    """A number as created_at: Unix time in seconds, never guessed to be milliseconds (Pydantic
    would read 253402300800, the year 10000 in seconds, as milliseconds: 1978)."""
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a time")
    earliest, latest = EARLIEST_CREATED_AT.timestamp(), (datetime.now(UTC) + FUTURE_SLACK).timestamp()
    if earliest <= value <= latest:
        return datetime.fromtimestamp(value, UTC)
    if earliest * 1000 <= value <= latest * 1000:
        when = datetime.fromtimestamp(value / 1000, UTC).isoformat()
        raise ValueError(
            f"{value} looks like milliseconds since 1970 ({when}); numbers are read as seconds: "
            "divide by 1000 or give an ISO 8601 time"
        )
    raise ValueError(f"{value} seconds since 1970 is out of range; {_TIME_RANGE}")


@dataclass(frozen=True)
class RawRecord:
    """A record before validation, with where it came from."""

    location: str  # "posts.jsonl:12", shown to the operator
    data: dict[str, Any] | None
    base_dir: Path | None  # relative image paths resolve against this folder
    error: str | None = None  # set when the line could not even be parsed


@dataclass(frozen=True)
class Rejection:
    location: str
    reason: str
    order: int = field(default=0, compare=False, repr=False)  # position in the input

    def __post_init__(self) -> None:  # one line each, whatever a file name or a message held
        object.__setattr__(self, "location", one_line(self.location))
        object.__setattr__(self, "reason", one_line(self.reason))

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


@dataclass
class IngestReport:
    added: int = 0
    already_present: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    encodings: dict[str, str] = field(default_factory=dict)  # input file → encoding used
    post_ids: list[int] = field(default_factory=list)  # ids of the posts added

    @property
    def ok(self) -> bool:
        return not self.rejected

    def summary(self) -> str:
        return f"{self.added} added, {self.already_present} already present, {len(self.rejected)} rejected"


# --------------------------------------------------------------------------------------------
# Text encodings


ENCODING_HINT = "--encoding gb18030, big5, shift_jis, euc-kr, cp1252 …"


def detect_encoding(path: Path, sample_bytes: int = 1 << 20) -> str:
    """UTF-8 (with or without BOM) or UTF-16/32 with a BOM; any other text is refused with an
    :class:`IngestError` asking for ``--encoding``. Nothing is guessed: legacy encodings (GBK,
    Big5, Shift-JIS, Latin-1…) accept almost any bytes, so a guess among them stores mojibake.

    Decided on the first MiB. Bytes that are not UTF-8 refuse the file only where text that could
    be mojibake would be stored beside them: more than 3 of them, and more than the non-ASCII
    characters that did decode. Otherwise the file is read as UTF-8 and the lines or rows holding
    them are rejected one by one, so nothing undecodable is ever stored."""
    with path.open("rb") as fh:
        sample = fh.read(sample_bytes)
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if sample.count(0) > len(sample) // 8:
        raise IngestError(
            f"{shown(path)}: looks like UTF-16 or UTF-32 without a byte-order mark; "
            "pass --encoding utf-16-le (or utf-16-be)"
        )
    # Undecodable bytes become lone surrogates (U+DC80–U+DCFF), one per byte; a character cut
    # at the end of the sample is held back by the incremental decoder.
    text = codecs.getincrementaldecoder("utf-8")("surrogateescape").decode(sample, final=False)
    bad = [i for i, ch in enumerate(text) if "\udc80" <= ch <= "\udcff"]
    good = sum(1 for ch in text if ord(ch) > 0x7F) - len(bad)
    # Refused when the undecodable bytes outnumber the characters that did decode as UTF-8 beyond
    # ASCII: then those may be legacy text that happens to form UTF-8 (mojibake). With no such
    # characters at all, every line that decodes is plain ASCII, the same in any encoding: the
    # file is read and only its undecodable lines are rejected.
    if good and len(bad) > 3 and len(bad) > good:
        line = text.count("\n", 0, bad[0]) + 1
        raise IngestError(
            f"{shown(path)}: not UTF-8 text (undecodable bytes from line {line} on); only UTF-8 and UTF-16 "
            f"with a byte-order mark are read unless the encoding is named: pass {ENCODING_HINT}"
        )
    return "utf-8"


def _check_encoding(name: str) -> str:
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise IngestError(f"unknown encoding {name!r} (try utf-8, gbk, gb18030, big5, shift_jis)") from None


# --------------------------------------------------------------------------------------------
# Readers: each yields RawRecords and never raises for a single bad record.


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str) -> Any:
    """json.loads for untrusted input: NaN/Infinity are refused (not JSON, and Postgres rejects
    them), and absurd numbers or nesting are a ValueError, not a crash."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def json_problem(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return str(exc)


Line = str | UnicodeDecodeError | ValueError  # a decoded line, or why it could not be read


def _numbered_lines(path: Path, encoding: str) -> Iterator[tuple[int, Line]]:
    """Lines of a text file with their numbers. For encodings that keep ASCII bytes intact
    (UTF-8, GB18030, Big5…) each line is decoded on its own, so one bad line costs one record,
    and a line over MAX_RECORD_BYTES is skipped unread. UTF-16/32 files are decoded as a stream:
    a lone surrogate passes through (its record is refused later), bytes that cannot be decoded
    at all end the file."""
    codec = codecs.lookup(encoding).name
    if codec.startswith(("utf-16", "utf-32")):
        with path.open("r", encoding=encoding, errors="surrogatepass", newline="") as fh:
            lineno = 0
            while True:
                try:
                    line = fh.readline()
                except UnicodeDecodeError as exc:
                    yield (
                        lineno + 1,
                        ValueError(f"not valid {encoding} ({exc.reason}); the rest of the file was not read"),
                    )
                    return
                if not line:
                    return
                lineno += 1
                yield lineno, line
    codec = "utf-8" if codec == "utf-8-sig" else codec
    with path.open("rb") as fh:
        lineno = 0
        while raw := fh.readline(MAX_RECORD_BYTES + 1):
            lineno += 1
            if len(raw) > MAX_RECORD_BYTES:
                while (rest := fh.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass  # skip the remainder of the oversized line
                yield lineno, ValueError(f"the line is longer than {MAX_RECORD_BYTES // 2**20} MiB")
                continue
            if lineno == 1 and codec == "utf-8":
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                yield lineno, raw.decode(codec)
            except UnicodeDecodeError as exc:
                yield lineno, exc


def read_jsonl(path: Path, encoding: str) -> Iterator[RawRecord]:
    base = path.parent
    label = shown(path.name)
    for lineno, line in _numbered_lines(path, encoding):
        where = f"{label}:{lineno}"
        if isinstance(line, UnicodeDecodeError):
            yield RawRecord(where, None, base, f"line is not valid {encoding} ({line.reason} at byte {line.start})")
            continue
        if isinstance(line, ValueError):
            yield RawRecord(where, None, base, str(line))
            continue
        if not line.strip():
            continue
        try:
            data = parse_json(line)
        except ValueError as exc:
            yield RawRecord(where, None, base, f"malformed JSON ({json_problem(exc)})")
            continue
        if not isinstance(data, dict):
            yield RawRecord(where, None, base, f"expected a JSON object per line, got {type(data).__name__}")
            continue
        yield RawRecord(where, data, base)


def _split_images(cell: str) -> list[str] | str:
    cell = cell.strip()
    if not cell:
        return []
    if cell.startswith("["):
        try:
            return parse_json(cell)
        except ValueError:
            return "images: looks like a JSON list but is malformed"
    return [part.strip() for part in re.split(r"[;|\n]", cell) if part.strip()]


def _undecodable(text: str) -> bool:
    """Whether ``text`` holds a byte that its encoding could not decode (surrogateescape)."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _label(encoding: str) -> str:
    return "UTF-8" if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig") else encoding


def read_csv(path: Path, encoding: str) -> Iterator[RawRecord]:
    """CSV (or TSV by extension) with a header row; fields may hold quotes and newlines."""
    base = path.parent
    label = shown(path.name)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    # Encodings that keep ASCII intact decode undecodable bytes to lone surrogates (surrogateescape),
    # so that a bad byte costs its row only; UTF-16/32 cannot resynchronise and stop the file.
    wide = codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))
    with path.open("r", encoding=encoding, errors="strict" if wide else "surrogateescape", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter, strict=True)  # bad quoting is an error, not a guess
        try:
            header = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as exc:
            yield RawRecord(f"{label}:1", None, base, f"cannot read the header row ({exc}); file not read")
            return
        if any(_undecodable(h) for h in header):
            reason = f"the header row is not valid {_label(encoding)}; file not read (pass --encoding if it is another)"
            yield RawRecord(f"{label}:1", None, base, reason)
            return
        header = [h.strip().lstrip("\ufeff").lower() for h in header]
        if "external_id" not in header:
            found = one_line(", ".join(header)) or "nothing"
            yield RawRecord(f"{label}:1", None, base, f"the header has no external_id column (found: {found})")
            return
        twice = sorted({h for h in header if h and header.count(h) > 1})
        if twice:
            columns = ", ".join(repr(h) for h in twice)
            reason = (
                f"the header names the column {columns} more than once (columns are compared without case "
                "and surrounding spaces); one would overwrite the other: rename it, file not read"
            )
            yield RawRecord(f"{label}:1", None, base, reason)
            return
        start = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError as exc:
                reason = (
                    f"not valid {encoding} ({exc.reason}); the rest of the file was not read "
                    "(pass --encoding if the file is in another encoding)"
                )
                yield RawRecord(f"{label}:{start}", None, base, reason)
                return
            except csv.Error as exc:  # the reader cannot find the next record reliably after this
                reason = f"malformed CSV ({exc}); the rest of the file was not read"
                yield RawRecord(f"{label}:{start}", None, base, reason)
                return
            where = f"{label}:{start}"
            start = reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            bad = next((cell for cell in row if _undecodable(cell)), None)
            if bad is not None:
                byte = next(ord(ch) - 0xDC00 for ch in bad if _undecodable(ch))
                reason = (
                    f"not {_label(encoding)} (byte 0x{byte:02x}); the row was not stored "
                    "(pass --encoding if the file is in another encoding)"
                )
                yield RawRecord(where, None, base, reason)
                continue
            if len(row) != len(header):
                yield RawRecord(where, None, base, f"has {len(row)} fields, the header has {len(header)}")
                continue
            data: dict[str, Any] = {}
            extra: dict[str, Any] = {}
            for name, cell in zip(header, row, strict=True):
                if name == "images":
                    images = _split_images(cell)
                    if isinstance(images, str):
                        yield RawRecord(where, None, base, images)
                        break
                    data["images"] = images
                elif name == "metadata":
                    if cell.strip():
                        try:
                            data["metadata"] = parse_json(cell)
                        except ValueError as exc:
                            yield RawRecord(where, None, base, f"metadata is not valid JSON ({json_problem(exc)})")
                            break
                elif name in RECORD_FIELDS:
                    if cell != "" or name == "text":  # an empty cell means "not given"
                        data[name] = cell
                elif name:
                    extra[name] = cell
            else:
                data.update(extra)  # unknown columns join metadata in _validate
                yield RawRecord(where, data, base)


def read_folder(folder: Path, encoding: str | None) -> Iterator[RawRecord]:
    """Every file in the folder (recursively) is one post's image; ``name.txt`` next to
    ``name.jpg`` is its text, ``name.json`` holds any other record fields."""
    files, by_stem = _folder_listing(folder)
    for path in files:
        rel = path.relative_to(folder).as_posix()
        where = shown(rel)
        suffix = path.suffix.lower()
        if suffix in DATA_SUFFIXES:
            yield RawRecord(where, None, folder, "data files inside an image folder are not read; ingest them by name")
            continue
        if suffix in SIDECAR_SUFFIXES:
            if path.with_suffix("") not in by_stem:
                yield RawRecord(where, None, folder, "sidecar file with no image of the same name next to it")
            continue
        data: dict[str, Any] = {"external_id": Path(rel).with_suffix("").as_posix(), "images": [rel]}
        sidecar_json = path.with_suffix(".json")
        sidecar_txt = path.with_suffix(".txt")
        try:
            if sidecar_json.is_file():
                try:
                    extra = parse_json(_read_sidecar(folder, sidecar_json, encoding))
                except IngestError:
                    raise
                except ValueError as exc:
                    raise ValueError(f"{sidecar_json.name} is malformed JSON ({json_problem(exc)})") from None
                if not isinstance(extra, dict):
                    raise ValueError(f"{sidecar_json.name} must hold a JSON object")
                extra.pop("images", None)  # the image is the file itself
                data.update(extra)
            if sidecar_txt.is_file() and "text" not in data:
                data["text"] = _read_sidecar(folder, sidecar_txt, encoding)
        except (ValueError, IngestError) as exc:
            yield RawRecord(where, None, folder, f"sidecar {exc}")
            continue
        except OSError as exc:  # unreadable, vanished meanwhile, a link loop
            yield RawRecord(where, None, folder, f"sidecar cannot be read ({exc.strerror or exc})")
            continue
        yield RawRecord(where, data, folder)


def _folder_listing(folder: Path) -> tuple[list[Path], dict[Path, Path]]:
    """The folder's visible files (sorted, recursive) and its image candidates by stem."""
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.name.lower() not in IGNORED_NAMES
    )
    by_stem = {p.with_suffix(""): p for p in files if p.suffix.lower() not in SIDECAR_SUFFIXES | DATA_SUFFIXES}
    return files, by_stem


def _read_sidecar(folder: Path, path: Path, encoding: str | None) -> str:
    """A sidecar's text, exactly (no newline translation). It must really live inside the
    folder (a symlink out of it is refused) and stay under MAX_RECORD_BYTES."""
    if not path.resolve().is_relative_to(folder.resolve()):
        raise IngestError(f"{shown(path.name)} points outside the input folder {shown(folder)}")
    if path.stat().st_size > MAX_RECORD_BYTES:
        raise IngestError(f"{shown(path.name)} is larger than {MAX_RECORD_BYTES // 2**20} MiB")
    enc = encoding or detect_encoding(path)
    try:
        with path.open(encoding=enc, newline="") as fh:
            return fh.read().removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise IngestError(f"{shown(path.name)} is not valid {enc} ({exc.reason})") from None


# --------------------------------------------------------------------------------------------
# Validation and storage


@dataclass
class _Prepared:
    raw: RawRecord
    record: PostRecord
    fingerprint: str
    order: int = 0  # position in the input
    image_paths: list[Path] = field(default_factory=list)
    stored: list[StoredImage] = field(default_factory=list)
    error: str | None = None


def _format_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "record"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown field {loc!r}")
        else:
            parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _validate(raw: RawRecord, settings: Settings, default_source: str | None) -> _Prepared | str:
    assert raw.data is not None
    data = dict(raw.data)
    extra = {k: data.pop(k) for k in list(data) if k not in RECORD_FIELDS}
    if extra:
        meta = data.get("metadata") or {}
        if not isinstance(meta, dict):
            return "metadata must be a JSON object"
        data["metadata"] = {**extra, **meta}
    if not data.get("source"):
        data["source"] = default_source or DEFAULT_SOURCE
    try:
        record = PostRecord.model_validate(data)
    except ValidationError as exc:
        return _format_validation(exc)
    if len(record.text) > settings.max_text_chars:
        return (
            f"text is {len(record.text):,} characters; the limit is {settings.max_text_chars:,} (MAX_TEXT_CHARS). "
            "Shorten it or raise the limit"
        )
    problem = _metadata_problem(record.metadata) or _unstorable_value(record.model_dump())
    if problem:
        return problem
    canonical = record.model_dump(mode="json")
    fingerprint = hashlib.sha256(json.dumps(canonical, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return _Prepared(raw=raw, record=record, fingerprint=fingerprint)


def _metadata_problem(metadata: dict[str, Any]) -> str | None:
    """More than MAX_METADATA_KEYS keys (nested objects' keys count too), a key longer than
    MAX_METADATA_KEY_CHARS, or nesting deeper than MAX_METADATA_DEPTH: a record is a post, not a
    store for arbitrary documents (and a deep one fails serialisation further on)."""
    count = 0
    todo: list[tuple[Any, int]] = [(metadata, 1)]
    while todo:
        value, depth = todo.pop()
        if isinstance(value, dict | list) and depth > MAX_METADATA_DEPTH:
            return f"metadata is nested more than {MAX_METADATA_DEPTH} levels deep; flatten it"
        if isinstance(value, dict):
            count += len(value)
            if count > MAX_METADATA_KEYS:
                return (
                    f"metadata has more than {MAX_METADATA_KEYS} keys (nested ones included); "
                    "keep what moderation needs, or put the rest in one JSON string"
                )
            for key in value:
                if len(str(key)) > MAX_METADATA_KEY_CHARS:
                    return (
                        f"metadata key {str(key)[:40]!r}… is {len(str(key)):,} characters; "
                        f"keys are at most {MAX_METADATA_KEY_CHARS}"
                    )
            todo.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            todo.extend((item, depth + 1) for item in value)
    return None


def _unstorable_value(value: Any, where: str = "") -> str | None:
    """Find a value no database can keep: NUL characters (Postgres refuses them), lone
    surrogates (half of a cut emoji; not valid UTF-8), NaN or infinite numbers (not JSON).
    Returns the reason, naming the field."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where or 'a field'} is {value}, which is not a valid JSON number"
    if isinstance(value, str):
        if "\x00" in value:
            return f"{where or 'a field'} contains NUL (\\x00) characters, which cannot be stored; remove them"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{where or 'a field'} contains a lone surrogate (a broken, half-cut character); fix the text"
    elif isinstance(value, dict):
        for key, item in value.items():
            problem = _unstorable_value(key, f"{where}.{key}" if where else str(key))
            problem = problem or _unstorable_value(item, f"{where}.{key}" if where else str(key))
            if problem:
                return problem
    elif isinstance(value, list):
        for i, item in enumerate(value):
            problem = _unstorable_value(item, f"{where}[{i}]")
            if problem:
                return problem
    return None


def unexpected(exc: BaseException) -> str:
    """The reason for a rejection that no check foresaw: the record is refused, the others go
    on, and the error stays visible as what it is."""
    return f"could not be processed ({type(exc).__name__}: {exc}); this is a bug worth reporting"


def _resolve_images(prep: _Prepared, allow_absolute: bool) -> str | None:
    base = prep.raw.base_dir
    for name in prep.record.images:
        try:
            candidate = Path(name).expanduser()
        except RuntimeError:  # ~nosuchuser/…, or no home folder at all
            return f"image {name!r}: '~' names no user's home folder on this machine"
        try:
            if candidate.is_absolute():
                if not allow_absolute:
                    return (
                        f"image {name!r}: absolute paths are refused unless the operator allows them "
                        "(python -m review ingest --allow-absolute-paths)"
                    )
                resolved = candidate.resolve()
            else:
                if base is None:
                    return f"image {name!r}: a relative path needs an input folder"
                resolved = (base / candidate).resolve()
        except (RuntimeError, OSError) as exc:  # a symlink loop (RuntimeError before Python 3.13)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return f"image {name!r}: the path cannot be resolved ({one_line(reason)})"
        if base is not None and not candidate.is_absolute() and not resolved.is_relative_to(base.resolve()):
            return (
                f"image {name!r} points outside the input folder {shown(base)} "
                "(relative paths may not leave it; use an absolute path if this is intended)"
            )
        prep.image_paths.append(resolved)
    return None


def _store_images(prep: _Prepared, settings: Settings) -> None:
    """Runs in a worker thread: validate every image of one record, then store them all (a
    record with a bad image leaves no file behind)."""
    prepared = []
    for name, path in zip(prep.record.images, prep.image_paths, strict=True):
        try:
            data = read_image_file(path, settings.max_image_bytes)
            prepared.append(
                prepare_image(data, max_pixels=settings.max_image_pixels, thumbnail_size=settings.thumbnail_size)
            )
        except MediaError as exc:
            prep.error = f"image {name!r}: {exc}"
            return
        except Exception as exc:  # a decoder bug must cost one record, not the batch
            prep.error = f"image {name!r}: {unexpected(exc)}"
            return
    try:
        prep.stored = [write_image(image, settings.media_dir) for image in prepared]
    except OSError as exc:  # a full disk, a store that is not writable
        prep.error = f"could not be written to the media store ({exc.strerror or exc})"
    except Exception as exc:
        prep.error = unexpected(exc)


def _is_deadlock(exc: OperationalError) -> bool:
    return getattr(exc.orig, "sqlstate", None) == "40P01"  # Postgres deadlock_detected


def _media_row(img: StoredImage) -> Media:
    return Media(
        sha256=img.sha256,
        path=img.path,
        thumb_path=img.thumb_path,
        mime=img.mime,
        width=img.width,
        height=img.height,
        frames=img.frames,
        size_bytes=img.size_bytes,
        phash=img.phash,
    )


class _Ingestor:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: Settings,
        *,
        default_source: str | None,
        allow_absolute_paths: bool,
        workers: int,
    ) -> None:
        self.session_factory = session_factory
        self.settings = settings
        self.default_source = default_source
        self.allow_absolute = allow_absolute_paths
        self.workers = min(max(1, workers), 16)
        self.report = IngestReport()
        self.seen: dict[tuple[str, str], tuple[str, str]] = {}  # key → (location, fingerprint)
        self.rejected_keys: set[tuple[str, str]] = set()
        self.position = 0  # records read so far; orders the rejections
        self.media_cache: dict[str, int] = {}

    def warn(self, message: str) -> None:
        self.report.warnings.append(one_line(message))

    def reject(self, order: int, location: str, reason: str) -> None:
        self.report.rejected.append(Rejection(location, reason, order))

    def reject_prep(self, prep: _Prepared, reason: str) -> None:
        self.reject(prep.order, prep.raw.location, reason)
        self.rejected_keys.add((prep.record.source, prep.record.external_id))

    def run(self, records: Iterable[RawRecord]) -> None:
        chunk: list[RawRecord] = []
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for raw in records:
                chunk.append(raw)
                if len(chunk) >= CHUNK_SIZE:
                    self._chunk(chunk, pool)
                    chunk = []
            if chunk:
                self._chunk(chunk, pool)
        self.report.rejected.sort(key=lambda r: r.order)  # input order, whatever stage refused them

    def _chunk(self, chunk: list[RawRecord], pool: ThreadPoolExecutor) -> None:
        fresh: list[_Prepared] = []
        repeats: list[tuple[int, RawRecord, tuple[str, str], str]] = []
        for raw in chunk:
            self.position += 1
            order = self.position
            if raw.data is None:
                self.reject(order, raw.location, raw.error or "no record")
                continue
            try:
                prep = _validate(raw, self.settings, self.default_source)
            except Exception as exc:  # one record's surprise must not cost the chunk
                prep = unexpected(exc)
            if isinstance(prep, str):
                self.reject(order, raw.location, prep)
                continue
            prep.order = order
            key = (prep.record.source, prep.record.external_id)
            earlier = self.seen.get(key)
            if earlier is None:
                self.seen[key] = (raw.location, prep.fingerprint)
                fresh.append(prep)
            elif earlier[1] == prep.fingerprint:
                repeats.append((order, raw, key, earlier[0]))  # settled once the first one is
            else:
                self.reject(
                    order,
                    raw.location,
                    f"external_id {key[1]!r} (source {key[0]!r}) already appeared at {earlier[0]} "
                    "with different content; give each post its own id",
                )

        with self.session_factory() as session:
            existing = self._existing_keys(session, [(p.record.source, p.record.external_id) for p in fresh])
        todo = []
        for prep in fresh:
            if (prep.record.source, prep.record.external_id) in existing:
                self.report.already_present += 1
                continue
            try:
                error = _resolve_images(prep, self.allow_absolute)
            except Exception as exc:
                error = unexpected(exc)
            if error:
                self.reject_prep(prep, error)
                continue
            todo.append(prep)

        list(pool.map(lambda p: _store_images(p, self.settings), todo))

        ready = []
        for prep in todo:
            if prep.error:
                self.reject_prep(prep, prep.error)
            else:
                ready.append(prep)
        if ready:
            self._store(ready)

        for order, raw, key, first_location in repeats:
            if key in self.rejected_keys:
                self.reject(order, raw.location, f"repeats {first_location}, which was rejected")
            else:
                self.report.already_present += 1
                self.warn(f"{raw.location}: repeats {first_location} exactly; stored once")

    @staticmethod
    def _existing_keys(session: Session, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        for start in range(0, len(keys), 400):
            part = keys[start : start + 400]
            if part:
                rows = session.execute(
                    select(Post.source, Post.external_id).where(tuple_(Post.source, Post.external_id).in_(part))
                )
                found.update((r.source, r.external_id) for r in rows)
        return found

    def _store(self, ready: list[_Prepared]) -> None:
        """Insert a chunk in one transaction with batched statements; if another process stored
        some of the same posts or images meanwhile, redo the chunk record by record."""
        cache_before = dict(self.media_cache)
        try:
            with writing(self.session_factory) as session:
                posts = self._insert_batch(session, ready)
        except (IntegrityError, OperationalError) as exc:
            if isinstance(exc, OperationalError) and not _is_deadlock(exc):
                raise
            self.media_cache = cache_before  # ids from the rolled-back transaction are void
            with writing(self.session_factory) as session:
                results = [self._insert_one(session, prep) for prep in ready]
            posts = [p for p in results if p is not None]
            self.report.already_present += results.count(None)
        self.report.added += len(posts)
        self.report.post_ids.extend(p.id for p in posts)

    def _insert_batch(self, session: Session, ready: list[_Prepared]) -> list[Post]:
        # Rows go in sorted by their unique keys, so that concurrent writers take locks in the
        # same order (no deadlocks on Postgres).
        # Every image of the chunk is looked up in this transaction, those cached from earlier
        # chunks too: a purge (review/purge.py) may have removed their media rows since.
        wanted = {img.sha256: img for prep in ready for img in prep.stored}
        if wanted:
            for sha in wanted:
                self.media_cache.pop(sha, None)
            rows = session.execute(select(Media.sha256, Media.id).where(Media.sha256.in_(list(wanted))))
            self.media_cache.update({sha: media_id for sha, media_id in rows})
            new_media = [_media_row(wanted[sha]) for sha in sorted(wanted) if sha not in self.media_cache]
            session.add_all(new_media)
            session.flush()
            self.media_cache.update({m.sha256: m.id for m in new_media})
        ordered = sorted(ready, key=lambda p: (p.record.source, p.record.external_id))
        posts = {id(prep): self._post_row(prep) for prep in ordered}
        session.add_all(posts.values())
        session.flush()
        return [posts[id(prep)] for prep in ready]

    def _insert_one(self, session: Session, prep: _Prepared) -> Post | None:
        """One record in a savepoint; None when the post is already there. A clash on an image
        that another process stored meanwhile is retried: that image is then found, not added."""
        key = (prep.record.source, prep.record.external_id)
        for _attempt in range(3):
            cache_before = dict(self.media_cache)
            try:
                with session.begin_nested():
                    return self._insert_batch(session, [prep])[0]
            except IntegrityError:
                self.media_cache = cache_before
                if session.scalar(select(Post.id).where(Post.source == key[0], Post.external_id == key[1])):
                    return None
        raise IngestError(f"{prep.raw.location}: could not be stored after 3 attempts (concurrent writers)")

    def _post_row(self, prep: _Prepared) -> Post:
        rec = prep.record
        post = Post(
            source=rec.source,
            external_id=rec.external_id,
            text=rec.text,
            author=rec.author,
            created_at=rec.created_at,
            meta=rec.metadata,
            status=PostStatus.UNSCORED,
        )
        post.media_links = [
            PostMedia(position=i, media_id=self.media_cache[img.sha256], original_name=name[-255:])
            for i, (img, name) in enumerate(zip(prep.stored, rec.images, strict=True))
        ]
        return post


def ingest_records(
    session_factory: sessionmaker[Session],
    records: Iterable[dict[str, Any]],
    settings: Settings,
    *,
    source: str | None = None,
    base_dir: Path | None = None,
    allow_absolute_paths: bool = False,
    workers: int = 2,
) -> IngestReport:
    """Ingest already-parsed records (the API entry point). Locations are ``record N``."""
    ingestor = _Ingestor(
        session_factory, settings, default_source=source, allow_absolute_paths=allow_absolute_paths, workers=workers
    )
    raws = (
        RawRecord(f"record {i}", r, base_dir)
        if isinstance(r, dict)
        else RawRecord(f"record {i}", None, base_dir, "expected an object")
        for i, r in enumerate(records, start=1)
    )
    ingestor.run(raws)
    return ingestor.report


def input_kind(path: Path) -> str:
    if not path.exists():
        raise IngestError(f"{shown(path)}: no such file or folder")
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in CSV_SUFFIXES:
        return "csv"
    raise IngestError(
        f"{shown(path)}: unknown input type {suffix!r}; give a .jsonl, .csv, .tsv file or a folder of images"
    )


def ingest_paths(
    session_factory: sessionmaker[Session],
    paths: Iterable[Path],
    settings: Settings,
    *,
    source: str | None = None,
    encoding: str | None = None,
    allow_absolute_paths: bool = False,
    workers: int = 2,
    progress: Progress | None = None,
    actor: Actor = OPERATOR,
) -> IngestReport:
    """Ingest files and folders given by an operator.

    Every input is checked (exists, known type, readable encoding) before anything is stored,
    so a typo in the last path does not leave the first ones half-reported. Absolute image
    paths inside the inputs are refused unless ``allow_absolute_paths``. ``progress(label,
    total)`` may return a callback taking the number of records done so far. ``actor`` needs
    the ingest permission as its account is stored now (the command line's ``OPERATOR`` has
    it); the run is written to the audit log.
    """
    paths = list(paths)
    with session_factory() as session:
        actor = require_live(session, actor, Permission.INGEST)
    return audited_ingest(
        session_factory,
        actor,
        [str(p) for p in paths],
        lambda: read_paths(
            session_factory,
            paths,
            settings,
            source=source,
            encoding=encoding,
            allow_absolute_paths=allow_absolute_paths,
            workers=workers,
            progress=progress,
        ),
        via="command line" if actor == OPERATOR else "paths",
        source=source,
        encoding=encoding,
    )


def audited_ingest(
    session_factory: sessionmaker[Session],
    actor: Actor,
    inputs: list[str],
    run: Callable[[], IngestReport],
    *,
    client: str | None = None,
    **details: Any,
) -> IngestReport:
    """``run()`` and one audit row (Action.INGEST) for it: who, the inputs (names, not their
    content), the counts; an ingest that stops on an error is logged with the error's kind, when
    the database still takes the row (the posts stored until then stay: chunks commit singly)."""
    names = [one_line(name) for name in inputs]
    subject = ", ".join(names)
    fields = {"inputs": names[:100], "inputs_count": len(names), **{k: v for k, v in details.items() if v}}
    try:
        report = run()
    except BaseException as exc:
        with contextlib.suppress(Exception):  # the database that stopped the ingest may not take the row
            audit.log(session_factory, actor, audit.Action.INGEST, subject, client=client, outcome="error",
                      error=type(exc).__name__, **fields)  # fmt: skip
        raise
    audit.log(
        session_factory,
        actor,
        audit.Action.INGEST,
        subject,
        client=client,
        outcome="done",
        added=report.added,
        already_present=report.already_present,
        rejected=len(report.rejected),
        **fields,
    )
    return report


def read_paths(
    session_factory: sessionmaker[Session],
    paths: Iterable[Path],
    settings: Settings,
    *,
    source: str | None = None,
    encoding: str | None = None,
    allow_absolute_paths: bool = False,
    workers: int = 2,
    progress: Progress | None = None,
) -> IngestReport:
    """:func:`ingest_paths` without the permission check and the audit row (its callers do both)."""
    if encoding:
        encoding = _check_encoding(encoding)
    plan = []
    for path in paths:
        kind = input_kind(path)
        try:
            plan.append((path, kind, None if kind == "folder" else encoding or detect_encoding(path)))
        except OSError as exc:
            raise IngestError(f"{shown(path)}: cannot be read ({exc.strerror or exc})") from None
    ingestor = _Ingestor(
        session_factory, settings, default_source=source, allow_absolute_paths=allow_absolute_paths, workers=workers
    )
    for path, kind, enc in plan:
        if kind == "folder":
            records = read_folder(path, encoding)
        else:
            assert enc is not None
            ingestor.report.encodings[str(path)] = enc
            records = read_jsonl(path, enc) if kind == "jsonl" else read_csv(path, enc)
        records = _guarded(records, shown(path.name or path))
        if progress:
            records = _tracked(records, path, progress(str(path), _count_units(path)))
        ingestor.run(records)
    return ingestor.report


def _guarded(records: Iterator[RawRecord], label: str) -> Iterator[RawRecord]:
    """A reader's records; if the reader itself fails (a file or folder that cannot be read on),
    one rejection says where and why, and the records read so far are stored all the same."""
    last = None
    while True:
        try:
            raw = next(records)
        except StopIteration:
            return
        except Exception as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
            after = f" after {last}" if last else ""
            yield RawRecord(label, None, None, f"reading stopped{after} ({reason}); the rest of {label} was not read")
            return
        last = raw.location
        yield raw


def _count_units(path: Path) -> int:
    """Progress total: lines of a file, entries of a folder."""
    if path.is_dir():
        files, by_stem = _folder_listing(path)
        return sum(1 for p in files if p.suffix.lower() not in SIDECAR_SUFFIXES or p.with_suffix("") not in by_stem)
    with path.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def _tracked(records: Iterator[RawRecord], path: Path, update: Callable[[int], None]) -> Iterator[RawRecord]:
    """Report progress as records are read: the line reached in a file, the count in a folder."""
    done = 0
    for raw in records:
        line = raw.location.rsplit(":", 1)[-1]
        done = int(line) if not path.is_dir() and line.isdigit() else done + 1
        update(done)
        yield raw

"""Readers of the ingest inputs: JSONL, CSV/TSV, folders of images with sidecar texts, and the
named text encodings they are read in (``detect_encoding``). Each reader yields ``RawRecord``s
and never raises for a single bad record: a line or row that cannot be read is a ``RawRecord``
with the reason.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from review.errors import IngestError
from review.ingest.records import RECORD_FIELDS, RawRecord
from review.text import one_line, shown

JSON_COLUMNS = ("metadata", "reports")  # CSV cells that hold JSON

MAX_RECORD_BYTES = 16 * 2**20  # one JSONL line or sidecar file; larger ones are refused unread
SIDECAR_SUFFIXES = {".txt", ".json"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
CSV_SUFFIXES = {".csv", ".tsv"}
DATA_SUFFIXES = JSONL_SUFFIXES | CSV_SUFFIXES
IGNORED_NAMES = {"thumbs.db", "desktop.ini"}
# Python's csv module refuses fields over 128 KiB by default; our own MAX_TEXT_CHARS applies instead.
csv.field_size_limit(2**31 - 1)


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


def check_encoding(name: str) -> str:
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise IngestError(f"unknown encoding {name!r} (try utf-8, gbk, gb18030, big5, shift_jis)") from None


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
                elif name in JSON_COLUMNS:
                    if cell.strip():
                        try:
                            data[name] = parse_json(cell)
                        except ValueError as exc:
                            yield RawRecord(where, None, base, f"{name} is not valid JSON ({json_problem(exc)})")
                            break
                elif name in RECORD_FIELDS:
                    if cell != "" or name == "text":  # an empty cell means "not given"
                        data[name] = cell
                elif name:
                    extra[name] = cell
            else:
                data.update(extra)  # unknown columns join metadata in validate
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


def count_units(path: Path) -> int:
    """Progress total: lines of a file, entries of a folder."""
    if path.is_dir():
        files, by_stem = _folder_listing(path)
        return sum(1 for p in files if p.suffix.lower() not in SIDECAR_SUFFIXES or p.with_suffix("") not in by_stem)
    with path.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))

"""Readers of the ingest inputs: JSONL, CSV/TSV, folders of images with sidecar texts, and the
named text encodings they are read in (``detect_encoding``). Each reader yields ``RawRecord``s
and never raises for a single bad record: a line or row that cannot be read is a ``RawRecord``
with the reason.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from review.errors import IngestError
from review.ingest.records import RECORD_FIELDS, RawRecord
from review.text import one_line, shown

if TYPE_CHECKING:
    import _csv

JSON_COLUMNS = ("metadata", "reports")  # CSV cells that hold JSON

MAX_RECORD_BYTES = 16 * 2**20  # one JSONL line or sidecar file; larger ones are refused unread
SIDECAR_SUFFIXES = {".txt", ".json"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
CSV_SUFFIXES = {".csv", ".tsv"}
DATA_SUFFIXES = JSONL_SUFFIXES | CSV_SUFFIXES
FORMATS = ("csv", "tsv", "jsonl")  # what --format names
IGNORED_NAMES = {"thumbs.db", "desktop.ini"}
# Python's csv module refuses fields over 128 KiB by default; our own MAX_TEXT_CHARS applies instead.
csv.field_size_limit(2**31 - 1)


ENCODING_HINT = "--encoding gb18030, big5, shift_jis, euc-kr, cp1252 …"
QUOTING_HINT = "if the file does not quote its fields, pass --no-quoting"


@dataclass(frozen=True)
class ReadOptions:
    """How the operator says the data files are to be read, where their names and headers do
    not say it: the format whatever the extension, the columns (CSV) or keys (JSONL) that hold
    the record's fields, and whether CSV/TSV fields are quoted."""

    format: str | None = None  # one of FORMATS; None: by the file's extension
    mapping: Mapping[str, str] = field(default_factory=dict)  # record field → the file's column or key
    quoting: bool = True  # False for exports that never quote: a '"' is then an ordinary character
    image_path: str | None = None  # "images/{}.jpg" or "images/{}.*": what an image name stands for (_ImagePaths)

    def __post_init__(self) -> None:
        template = self.image_path
        if template is not None and (template.count("{}") != 1 or "{}" not in Path(template).name):
            raise IngestError(
                f"--image-path {one_line(self.image_path, 80)!r} should hold {{}} once, in the file name "
                "(e.g. images/{}.jpg)"
            )


class _ImagePaths:
    """A data file's image names as the paths ``--image-path`` makes of them, relative to the
    file's folder: ``{}`` replaced by the name; a last ``.*`` takes the one file of that name
    whatever its extension (each folder listed once): with none it stays as it is, for the
    image step to name as not found, and several are the record's rejection."""

    def __init__(self, template: str | None, base: Path) -> None:
        self.template = template
        self.base = base
        self.folders: dict[str, dict[str, list[str]]] = {}  # folder → file stem → its suffixes

    def __call__(self, names: list[Any]) -> list[Any] | str:
        """The paths, or why the record cannot be stored."""
        if self.template is None:
            return names
        paths = []
        for name in names:
            if not isinstance(name, str):
                paths.append(name)  # refused by validation
                continue
            path = self.template.replace("{}", name)
            if self.template.endswith(".*"):
                folder, _, stem = path[:-2].rpartition("/")
                suffixes = sorted(self._listing(folder).get(stem, []))
                if len(suffixes) > 1:
                    found = ", ".join(suffixes)
                    return f"image {one_line(name, 80)!r}: several files match {one_line(path, 120)!r} ({found})"
                path = path[:-2] + suffixes[0] if suffixes else path
            paths.append(path)
        return paths

    def _listing(self, folder: str) -> dict[str, list[str]]:
        if folder not in self.folders:
            listing: dict[str, list[str]] = {}
            try:
                with os.scandir(self.base / folder) as entries:
                    for entry in entries:
                        stem, dot, suffix = entry.name.rpartition(".")
                        if dot and stem and entry.is_file():
                            listing.setdefault(stem, []).append(dot + suffix)
            except OSError:
                pass  # no such folder: every name in it is not found
            self.folders[folder] = listing
        return self.folders[folder]


def parse_mapping(value: str) -> dict[str, str]:
    """``--map``: ``field=column,field=column`` or a TOML file (``*.toml``) holding the same as a
    ``[map]`` table, checked before anything is read: each target a record field, named once,
    and each column mapped once."""
    if value.strip().lower().endswith(".toml"):
        pairs = _mapping_file(Path(value.strip()))
    else:
        pairs = []
        for part in value.split(","):
            target, equals, column = part.partition("=")
            if not equals or not target.strip() or not column.strip():
                raise IngestError(f"--map: {one_line(part.strip(), 80)!r} is not field=column (e.g. text=tweetText)")
            pairs.append((target.strip(), column.strip()))
    mapping: dict[str, str] = {}
    for target, column in pairs:
        if target not in RECORD_FIELDS:
            known = ", ".join(sorted(RECORD_FIELDS))
            raise IngestError(f"--map: {one_line(target, 80)!r} is not a record field (fields: {known})")
        if target in mapping:
            raise IngestError(f"--map: the field {target!r} is mapped twice")
        if column.lower() in (c.lower() for c in mapping.values()):
            raise IngestError(f"--map: the column {one_line(column, 80)!r} is mapped to two fields")
        mapping[target] = column
    if not mapping:
        raise IngestError("--map: no field=column given")
    return mapping


def _mapping_file(path: Path) -> list[tuple[str, str]]:
    try:
        content = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise IngestError(f"--map {shown(path)}: cannot be read ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise IngestError(f"--map {shown(path)}: not valid TOML ({one_line(exc, 120)})") from None
    table = content.get("map")
    if set(content) != {"map"} or not isinstance(table, dict):
        raise IngestError(f'--map {shown(path)}: should hold one [map] table of field = "column" lines')
    bad = next((k for k, v in table.items() if not isinstance(v, str) or not v.strip()), None)
    if bad is not None:
        raise IngestError(f"--map {shown(path)}: {one_line(bad, 80)!r} should name a column as text")
    return [(target, column.strip()) for target, column in table.items()]


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


def read_jsonl(path: Path, encoding: str, options: ReadOptions | None = None) -> Iterator[RawRecord]:
    """One record per line; ``options`` map its keys and name its images' files."""
    options = options or ReadOptions()
    mapping = options.mapping
    base = path.parent
    image_paths = _ImagePaths(options.image_path, base)
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
        if mapping:
            data = _mapped_keys(data, mapping)
            if isinstance(data, str):
                yield RawRecord(where, None, base, data)
                continue
        if isinstance(data.get("images"), list):
            images = image_paths(data["images"])
            if isinstance(images, str):
                yield RawRecord(where, None, base, images)
                continue
            data["images"] = images
        yield RawRecord(where, data, base)


def _mapped_keys(data: dict[str, Any], mapping: Mapping[str, str]) -> dict[str, Any] | str:
    """A JSONL record with its mapped keys renamed to the fields they hold (a mapped images
    key holding text is a comma-separated list), or why it cannot be."""
    mapped = {key: value for key, value in data.items() if key not in mapping.values()}
    for target, key in mapping.items():
        if key in data:
            if target in mapped:
                return f"has both {target!r} and {one_line(key, 80)!r}, mapped to {target}; keep one"
            mapped[target] = data[key]
    images = mapped.get("images")
    if "images" in mapping and isinstance(images, str):
        split = _split_images(images, commas=True)
        if isinstance(split, str):
            return split
        mapped["images"] = split
    return mapped


def _split_images(cell: str, commas: bool = False) -> list[str] | str:
    """An images cell: a JSON list, or names separated by ``;``, ``|`` or newlines, and by
    commas where the operator mapped the column (``--map images=…``: exports list ids so)."""
    cell = cell.strip()
    if not cell:
        return []
    if cell.startswith("["):
        try:
            return parse_json(cell)
        except ValueError:
            return "images: looks like a JSON list but is malformed"
    return [part.strip() for part in re.split(r"[;|\n,]" if commas else r"[;|\n]", cell) if part.strip()]


def _undecodable(text: str) -> bool:
    """Whether ``text`` holds a byte that its encoding could not decode (surrogateescape)."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _label(encoding: str) -> str:
    return "UTF-8" if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig") else encoding


def _delimiter(path: Path, options: ReadOptions) -> str:
    fmt = options.format or ("tsv" if path.suffix.lower() == ".tsv" else "csv")
    return "\t" if fmt == "tsv" else ","


def _mapped_header(header: list[str], mapping: Mapping[str, str]) -> list[str] | str:
    """The header's columns as record fields: compared without case and surrounding spaces,
    mapped ones renamed (``--map``); or why the file cannot be read with it."""
    columns = [h.strip().lstrip("\ufeff").lower() for h in header]
    renamed = {column.lower(): target for target, column in mapping.items()}
    missing = [column for column in mapping.values() if column.lower() not in columns]
    if missing:
        found = one_line(", ".join(columns), 200) or "nothing"
        return f"--map names {', '.join(repr(m) for m in missing)}, not a column of this file (found: {found})"
    clash = next((c for c in columns if c in mapping and c not in renamed), None)
    if clash is not None:
        return f"has a column {clash!r} and --map {clash}={mapping[clash]!r}; rename one or map the other"
    return [renamed.get(c, c) for c in columns]


def read_csv(path: Path, encoding: str, options: ReadOptions | None = None) -> Iterator[RawRecord]:
    """CSV (or TSV by extension or ``options.format``) with a header row; fields may hold quotes
    and newlines unless ``options.quoting`` is off. A record over MAX_RECORD_BYTES (a quote
    that is never closed swallows the lines after it) stops the file with a reason naming the
    line where it began."""
    options = options or ReadOptions()
    base = path.parent
    label = shown(path.name)
    image_paths = _ImagePaths(options.image_path, base)
    with _opened(path, encoding) as fh:
        budget = _RecordBudget(fh)
        reader = _csv_reader(budget, path, options)
        try:
            header = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError, _RunawayRecord) as exc:
            yield RawRecord(f"{label}:1", None, base, f"cannot read the header row ({exc}); file not read")
            return
        if any(_undecodable(h) for h in header):
            reason = f"the header row is not valid {_label(encoding)}; file not read (pass --encoding if it is another)"
            yield RawRecord(f"{label}:1", None, base, reason)
            return
        mapped = _mapped_header(header, options.mapping)
        if isinstance(mapped, str):
            yield RawRecord(f"{label}:1", None, base, f"{mapped}; file not read")
            return
        header = mapped
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
            budget.chars = 0
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
            except _RunawayRecord:
                reason = (
                    f"the record starting on this line runs on for more than {MAX_RECORD_BYTES:,} characters "
                    f"(to line {budget.line}); the rest of the file was not read"
                )
                if options.quoting:
                    reason += f" (a quote opened on this line is probably never closed: {QUOTING_HINT})"
                yield RawRecord(f"{label}:{start}", None, base, reason)
                return
            except csv.Error as exc:  # the reader cannot find the next record reliably after this
                reason = f"malformed CSV ({exc}); the rest of the file was not read"
                if options.quoting:
                    reason += _quote_hint(start, reader.line_num)
                yield RawRecord(f"{label}:{start}", None, base, reason)
                return
            where = f"{label}:{start}"
            spanned = _quote_hint(start, reader.line_num) if reader.line_num > start else ""
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
                yield RawRecord(where, None, base, f"has {len(row)} fields, the header has {len(header)}{spanned}")
                continue
            data: dict[str, Any] = {}
            extra: dict[str, Any] = {}
            for name, cell in zip(header, row, strict=True):
                if name == "images":
                    images = _split_images(cell, commas="images" in options.mapping)
                    if isinstance(images, list):
                        images = image_paths(images)
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


class _RunawayRecord(Exception):
    """One CSV record has grown past MAX_RECORD_BYTES."""


class _RecordBudget:
    """The lines of a file for csv.reader, counting the characters of the record being read
    (``chars``, reset by the reader's caller before each record), so that a quote never closed
    stops the file at MAX_RECORD_BYTES rather than swallowing all of it into one field."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.lines = lines
        self.chars = 0
        self.line = 0  # lines read

    def __iter__(self) -> _RecordBudget:
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        self.line += 1
        self.chars += len(line)
        if self.chars > MAX_RECORD_BYTES:
            raise _RunawayRecord(f"a record runs on for more than {MAX_RECORD_BYTES:,} characters")
        return line


def _quote_hint(start: int, end: int) -> str:
    """The way out of a quoting error, naming the lines a quoted field spanned when it did."""
    spanned = f"a quoted field ran from line {start} to line {end}; " if end > start else ""
    return f" ({spanned}{QUOTING_HINT})"


def check_columns(path: Path, encoding: str, options: ReadOptions) -> None:
    """Refuse a CSV/TSV file whose header lacks a column that ``--map`` names (or clashes with
    one), before anything is read or stored."""
    if not options.mapping:
        return
    with _opened(path, encoding) as fh:
        try:
            header = next(_csv_reader(fh, path, options))
        except (StopIteration, csv.Error, UnicodeDecodeError):
            return  # read_csv says why the header cannot be read
    mapped = _mapped_header(header, options.mapping)
    if isinstance(mapped, str):
        raise IngestError(f"{shown(path)}: {mapped}")


def _opened(path: Path, encoding: str) -> TextIO:
    """A CSV file for reading. Encodings that keep ASCII intact decode undecodable bytes to lone
    surrogates (surrogateescape), so that a bad byte costs its row only; UTF-16/32 cannot
    resynchronise and stop the file."""
    wide = codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))
    return path.open("r", encoding=encoding, errors="strict" if wide else "surrogateescape", newline="")


def _csv_reader(lines: Iterable[str], path: Path, options: ReadOptions) -> _csv.Reader:
    """csv.reader as the options say; strict: bad quoting is an error, not a guess."""
    delimiter = _delimiter(path, options)
    if options.quoting:
        return csv.reader(lines, delimiter=delimiter, strict=True)
    return csv.reader(lines, delimiter=delimiter, quoting=csv.QUOTE_NONE, strict=True)


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


def input_kind(path: Path, format: str | None = None) -> str:
    """The kind of input, "folder", "jsonl" or "csv" (CSV and TSV): for a file, by ``format``
    (one of FORMATS) when the operator names it, else by its extension."""
    if not path.exists():
        raise IngestError(f"{shown(path)}: no such file or folder")
    if path.is_dir():
        return "folder"
    if format is not None:
        if format not in FORMATS:
            raise IngestError(f"unknown format {one_line(format, 40)!r}; name one of {', '.join(FORMATS)}")
        return "jsonl" if format == "jsonl" else "csv"
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in CSV_SUFFIXES:
        return "csv"
    raise IngestError(
        f"{shown(path)}: unknown input type {suffix!r}; give a .jsonl, .csv, .tsv file or a folder of images, "
        "or name the format (--format csv, tsv or jsonl)"
    )


def count_units(path: Path) -> int:
    """Progress total: lines of a file, entries of a folder."""
    if path.is_dir():
        files, by_stem = _folder_listing(path)
        return sum(1 for p in files if p.suffix.lower() not in SIDECAR_SUFFIXES or p.with_suffix("") not in by_stem)
    with path.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))

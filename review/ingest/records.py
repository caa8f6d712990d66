"""A record at the ingest boundary: ``PostRecord`` (the schema and its limits), ``validate``
(a raw record into a checked one, or the reason it is refused), and what became of the records
(``RawRecord``, ``Rejection``, ``IngestReport``).

Limits: text length (``MAX_TEXT_CHARS`` in the settings), metadata keys, key length and depth,
platform times between 1980 and one day from now; NUL characters, lone surrogates and NaN are
refused wherever they appear, since no database keeps them.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from db.models import ReportKind
from review.config import Settings
from review.errors import IngestError
from review.media import StoredImage
from review.text import one_line

DEFAULT_SOURCE = "local"
MAX_METADATA_KEYS = 500  # keys in one record's metadata, nested objects' keys included
MAX_METADATA_KEY_CHARS = 128  # characters in one metadata key
MAX_METADATA_DEPTH = 32  # nesting of objects and lists in metadata
# created_at must fall in [EARLIEST_CREATED_AT, now + FUTURE_SLACK]: older is not a social-media
# post (Usenet began in 1980; 1970-01-01 is a placeholder for "unknown"), later is a bad clock.
EARLIEST_CREATED_AT = datetime(1980, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)
RECORD_FIELDS = {"external_id", "source", "text", "author", "created_at", "images", "metadata", "reports"}
# Optional fields whose bad value costs only the value: the post is stored without it, and why is
# kept in its metadata under WARNINGS_KEY and reported as a warning.
SOFT_FIELDS = ("author", "created_at")
WARNINGS_KEY = "ingest_warnings"
# The names of a record's images that were not found, kept in its post's metadata when it was
# stored without them (ingest --missing-images skip); the Review and Posts pages show them.
MISSING_IMAGES_KEY = "missing_images"
VALUE_CHARS = 80  # of an offending value shown in a message
GROUP_SHOWN = 5  # locations named in a group of identical messages
MAX_REPORT_COUNT = 1_000_000  # one report stands for at most this many
MAX_REPORTS = 100  # reports in one record


class ReportRecord(BaseModel):
    """One report on a post from its platform: who flagged it, why, how many times. The shape
    of a report wherever one arrives (a record, the API's flags: review/reports.py)."""

    model_config = ConfigDict(extra="forbid")

    kind: ReportKind
    reason: str = Field(default="", max_length=255, pattern=r"^[^\x00]*$")
    count: int = Field(default=1, ge=1, le=MAX_REPORT_COUNT)

    @field_validator("reason")
    @classmethod
    def _stripped(cls, value: str) -> str:
        return value.strip()  # (pydantic itself refuses a lone surrogate in a str field)


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
    # who flagged the post, stored with it (``post_report``); a post already there keeps its own
    reports: list[ReportRecord] = Field(default_factory=list, max_length=MAX_REPORTS)

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
    def _created_at(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            return parse_time(value, (info.context or {}).get("date_format"))
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _from_unix_time(value)
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


DATE_FORMATS = (
    "ISO 8601, RFC 2822 or Twitter's 'Mon Oct 29 22:34:01 +0000 2012', Unix seconds or milliseconds, YYYY/MM/DD HH:MM"
)
_SLASHED = ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d")  # 2024/05/01 12:00, common in CN exports


def parse_time(text: str, date_format: str | None = None) -> datetime | None:
    """A platform time written as text: in ``date_format`` (strptime) when the operator names
    one, else in any of the DATE_FORMATS (compact ``20261120`` and ``20261120083000`` are dates,
    not Unix seconds). Empty text is no time; a time without a zone is UTC. A ValueError names
    the formats tried."""
    text = text.strip()
    if not text:
        return None
    if date_format:
        try:
            return datetime.strptime(text, date_format)
        except ValueError:
            raise ValueError(f"not in the --date-format {date_format!r}") from None
    if re.fullmatch(r"\d{8}|\d{14}", text):
        try:
            return datetime.strptime(text, "%Y%m%d%H%M%S" if len(text) == 14 else "%Y%m%d")
        except ValueError:
            raise ValueError("not a compact date (YYYYMMDD or YYYYMMDDHHMMSS)") from None
    if re.fullmatch(r"[+-]?\d+(\.\d+)?", text):
        return _from_unix_time(float(text) if "." in text else int(text))
    for slashed in _SLASHED:
        with contextlib.suppress(ValueError):
            return datetime.strptime(text, slashed)
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(text)
    with contextlib.suppress(ValueError, TypeError, IndexError):
        return email.utils.parsedate_to_datetime(text)  # RFC 2822, and Twitter's order of the same parts
    raise ValueError(f"not a time in a known format ({DATE_FORMATS}); name its format with --date-format")


def check_date_format(date_format: str) -> str:
    """``--date-format`` checked before anything is read: a strptime format that reads back a
    time it wrote (an unknown directive, or a format with none, is an IngestError)."""
    sample = datetime(2012, 10, 29, 22, 34, 1)
    try:
        datetime.strptime(sample.strftime(date_format), date_format)
    except ValueError as exc:
        raise IngestError(
            f"--date-format {one_line(date_format, 80)!r} is not a usable strptime format ({exc})"
        ) from None
    if "%" not in date_format:
        raise IngestError(f"--date-format {one_line(date_format, 80)!r} has no %-directive (e.g. %d.%m.%Y %H:%M)")
    return date_format


def _from_unix_time(value: int | float) -> datetime:
    """A number as created_at: Unix time in seconds, or in milliseconds where only that reading
    falls in the range of post times (the two ranges do not overlap, so nothing is guessed)."""
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a time")
    earliest, latest = EARLIEST_CREATED_AT.timestamp(), (datetime.now(UTC) + FUTURE_SLACK).timestamp()
    if earliest <= value <= latest:
        return datetime.fromtimestamp(value, UTC)
    if earliest * 1000 <= value <= latest * 1000:
        return datetime.fromtimestamp(value / 1000, UTC)
    raise ValueError(f"{value} seconds (or milliseconds) since 1970 is out of range; {_TIME_RANGE}")


def named(data: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """A record's ``source`` and ``external_id`` as it gives them, before validation (a numeric
    id as text; None where a value is missing or not text), to name a record in an answer."""
    source, external_id = data.get("source"), data.get("external_id")
    if isinstance(external_id, int) and not isinstance(external_id, bool):
        external_id = str(external_id)
    return (
        source if isinstance(source, str) else None,
        external_id if isinstance(external_id, str) else None,
    )


@dataclass(frozen=True)
class RawRecord:
    """A record before validation, with where it came from."""

    location: str  # "posts.jsonl:12", shown to the operator
    data: dict[str, Any] | None
    base_dir: Path | None  # relative image paths resolve against this folder
    error: str | None = None  # set when the line could not even be parsed
    # images that came with the record (the API: inline or as multipart parts), by the name its
    # ``images`` use; when given, names are looked up here and never read as paths
    attachments: Mapping[str, bytes] | None = None


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


@dataclass(frozen=True)
class RecordOutcome:
    """What became of one record of a run that tracks them (the API answers with these)."""

    order: int  # position in the input, from 1
    status: str  # "created", "updated", "already_present" or "rejected"
    source: str | None = None
    external_id: str | None = None
    post_id: int | None = None
    reason: str | None = None


@dataclass
class IngestReport:
    added: int = 0
    already_present: int = 0  # stored before and left as they are (those updated are not counted here)
    updated: int = 0  # stored before with other content, replaced (--update)
    kept: int = 0  # stored before with other content, left as they are (a warning each says why)
    rejected: list[Rejection] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    encodings: dict[str, str] = field(default_factory=dict)  # input file → encoding used
    post_ids: list[int] = field(default_factory=list)  # ids of the posts added
    updated_ids: list[int] = field(default_factory=list)  # ids of the posts whose content was replaced
    outcomes: list[RecordOutcome] = field(default_factory=list)  # per record, when the run tracks them

    @property
    def ok(self) -> bool:
        return not self.rejected

    @property
    def differing(self) -> int:
        """Records of posts stored before with other content: updated, or kept as stored."""
        return self.updated + self.kept

    def summary(self) -> str:
        updated = f"{self.updated} updated, " if self.updated else ""
        present = f"{self.already_present} already present"
        if self.kept:
            present += f" ({self.kept} of them with other content, kept: see the warnings)"
        return f"{self.added} added, {updated}{present}, {len(self.rejected)} rejected"

    def grouped_rejections(self) -> list[MessageGroup]:
        return group_messages((r.location, r.reason) for r in self.rejected)

    def grouped_warnings(self) -> list[MessageGroup]:
        """Warnings read as ``location: reason`` (those without a location stand alone)."""
        pairs = (w.split(": ", 1) if ": " in w else ("", w) for w in self.warnings)
        return group_messages((location, reason) for location, reason in pairs)


@dataclass
class PreparedRecord:
    """A valid record on its way into the database: its images' paths once resolved, the images
    once stored, or the error that refused it on the way (``store.py`` fills these in)."""

    raw: RawRecord
    record: PostRecord
    fingerprint: str
    order: int = 0  # position in the input
    image_paths: list[Path] = field(default_factory=list)
    stored: list[StoredImage] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # images not found, the post stored without them (skip)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)  # optional fields left empty, and why
    emptied: tuple[str, ...] = ()  # those optional fields (SOFT_FIELDS)


def format_validation(exc: ValidationError, within: str = "") -> str:
    """A validation error in one line: each field at fault and why (never the value); ``within``
    names the part of a record that was validated (``images[0]``), before each field."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        loc = (f"{within}.{loc}" if loc else within) if within else (loc or "record")
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown field {loc!r}")
        else:
            parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def validate(
    raw: RawRecord,
    settings: Settings,
    default_source: str | None,
    date_format: str | None = None,
    soft_fields: bool = False,
) -> PreparedRecord | str:
    """A parsed record checked against the schema and the limits, or why it is refused. Unknown
    fields join its metadata; with ``soft_fields`` (files, whose author cannot be asked) a bad
    optional field (SOFT_FIELDS) is left empty with a warning (in ``warnings`` and in the
    metadata) rather than refusing the post; ``date_format`` (strptime) reads created_at. The
    fingerprint (a hash of its content) tells an exact repeat in the same run from a different
    post under the same id."""
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
    context = {"date_format": date_format}
    warnings: list[str] = []
    emptied: tuple[str, ...] = ()
    try:
        record = PostRecord.model_validate(data, context=context)
    except ValidationError as exc:
        soft = _soft_problems(exc) if soft_fields else None
        if soft is None:
            return format_validation(exc)
        warnings, emptied = list(soft.values()), tuple(soft)
        for name in soft:
            data.pop(name)
        meta = data.get("metadata") or {}
        earlier = meta.get(WARNINGS_KEY, [])
        data["metadata"] = {**meta, WARNINGS_KEY: [*(earlier if isinstance(earlier, list) else [earlier]), *warnings]}
        try:
            record = PostRecord.model_validate(data, context=context)
        except ValidationError as again:
            return format_validation(again)
    if len(record.text) > settings.max_text_chars:
        return (
            f"text is {len(record.text):,} characters; the limit is {settings.max_text_chars:,} (MAX_TEXT_CHARS). "
            "Shorten it or raise the limit"
        )
    if MISSING_IMAGES_KEY in record.metadata:  # the desk's own statement to the moderator
        return (
            f"metadata key {MISSING_IMAGES_KEY!r} (a field or column of that name) is the desk's own: the images "
            "not found at ingest. Rename it in the export"
        )
    problem = _metadata_problem(record.metadata) or _unstorable_value(record.model_dump())
    if problem:
        return problem
    canonical = record.model_dump(mode="json")
    fingerprint = hashlib.sha256(json.dumps(canonical, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return PreparedRecord(raw=raw, record=record, fingerprint=fingerprint, warnings=warnings, emptied=emptied)


def _soft_problems(exc: ValidationError) -> dict[str, str] | None:
    """Field → why it is left empty, when every error of ``exc`` is in an optional field
    (SOFT_FIELDS) and the metadata is a JSON object to note it in; None otherwise."""
    problems: dict[str, str] = {}
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else ""
        if name not in SOFT_FIELDS:
            return None
        why = err["msg"].removeprefix("Value error, ")
        problems.setdefault(name, with_value(f"{name} left empty: {why}", err["input"]))
    return problems


def with_value(reason: str, value: Any) -> str:
    """``reason`` naming the offending value, cut to one short line; messages that differ only
    in it are grouped (:func:`group_messages`)."""
    return f"{reason} (value '{one_line(value, VALUE_CHARS)}')"


_VALUE = re.compile(r" \(value '(.*)'\)$")


@dataclass(frozen=True)
class MessageGroup:
    """The records refused or warned about for one reason: where (in input order) and the
    offending values, where the reason names them (:func:`with_value`)."""

    reason: str  # without the value
    locations: list[str]
    values: list[str]  # the distinct values, up to GROUP_SHOWN

    def __str__(self) -> str:
        values = ""
        if self.values:
            shown = ", ".join(f"'{value}'" for value in self.values[:3])
            values = f" (value {shown})" if len(self.values) == 1 else f" (values {shown} …)"
        named = [location for location in self.locations if location]
        if len(self.locations) > 1:
            rest = len(named) - GROUP_SHOWN
            where = ", ".join(named[:GROUP_SHOWN]) + (f" and {rest:,} more" if rest > 0 else "")
            where = f"{len(self.locations):,} records ({where})" if named else f"{len(self.locations):,} times"
        else:
            where = named[0] if named else ""
        return f"{where}: {self.reason}{values}" if where else f"{self.reason}{values}"


def group_messages(messages: Iterable[tuple[str, str]]) -> list[MessageGroup]:
    """(location, reason) pairs grouped by reason, the offending value aside, in the order of
    each reason's first appearance: one line per reason however many records share it."""
    groups: dict[str, MessageGroup] = {}
    for location, reason in messages:
        match = _VALUE.search(reason)
        key = reason[: match.start()] if match else reason
        group = groups.setdefault(key, MessageGroup(key, [], []))
        group.locations.append(location)
        if match and len(group.values) < GROUP_SHOWN and match[1] not in group.values:
            group.values.append(match[1])
    return list(groups.values())


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


def missing_images(metadata: object) -> list[str]:
    """The names of the images a post's record named that were not found when it was stored
    (``--missing-images skip`` keeps them in its metadata under MISSING_IMAGES_KEY)."""
    names = metadata.get(MISSING_IMAGES_KEY) if isinstance(metadata, dict) else None
    return [str(name) for name in names] if isinstance(names, list) else []

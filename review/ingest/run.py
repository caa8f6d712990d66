"""The ingest entry points: ``ingest_paths`` (what ``python -m review ingest`` runs: permission,
every input checked before anything is stored, an audit row), ``ingest_records`` (already-parsed
records, the API entry point), ``read_paths`` (the files without the permission check and the
audit row, for callers that do both) and ``audited_ingest`` (one audit row per run).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from review import audit
from review.auth import OPERATOR, Actor, Permission, account_id, require_live
from review.config import Settings
from review.errors import IngestError
from review.ingest.readers import (
    ReadOptions,
    check_columns,
    check_encoding,
    count_units,
    detect_encoding,
    input_kind,
    read_csv,
    read_folder,
    read_jsonl,
)
from review.ingest.records import IngestReport, RawRecord, check_date_format
from review.ingest.store import Ingestor, StorePolicy
from review.text import one_line, shown

# progress(label, total) → callback(done): how long inputs report progress (tqdm in the CLI).
Progress = Callable[[str, int], Callable[[int], None]]


def ingest_records(
    session_factory: sessionmaker[Session],
    records: Iterable[Any],
    settings: Settings,
    *,
    source: str | None = None,
    base_dir: Path | None = None,
    attachments: Iterable[Mapping[str, bytes] | None] | None = None,
    token_id: int | None = None,
    allow_absolute_paths: bool = False,
    workers: int = 2,
) -> IngestReport:
    """Ingest already-parsed records (the API entry point). Locations are ``record N``; the
    report keeps each record's outcome. ``attachments[i]`` holds the images of ``records[i]`` by
    the names its ``images`` use (then never read as paths); ``token_id``, the API token whose
    batch it is, is stored with the records' reports."""
    ingestor = Ingestor(
        session_factory,
        settings,
        default_source=source,
        allow_absolute_paths=allow_absolute_paths,
        workers=workers,
        track=True,
        token_id=token_id,
    )
    pairs: Iterable[tuple[Any, Mapping[str, bytes] | None]] = (
        ((r, None) for r in records) if attachments is None else zip(records, attachments, strict=True)
    )
    raws = (
        RawRecord(f"record {i}", r, base_dir, attachments=files)
        if isinstance(r, dict)
        else RawRecord(f"record {i}", None, base_dir, "expected an object")
        for i, (r, files) in enumerate(pairs, start=1)
    )
    ingestor.run(raws)
    return ingestor.report


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
    options: ReadOptions | None = None,
    date_format: str | None = None,
    policy: StorePolicy | None = None,
) -> IngestReport:
    """Ingest files and folders given by an operator.

    Every input is checked (exists, known type, readable encoding) before anything is stored,
    so a typo in the last path does not leave the first ones half-reported. Absolute image
    paths inside the inputs are refused unless ``allow_absolute_paths``. ``progress(label,
    total)`` may return a callback taking the number of records done so far. ``options`` say
    how data files are read where their names and headers do not (``--format``, ``--map``,
    ``--image-path``, ``--no-quoting``); ``date_format`` (strptime) reads created_at; ``policy`` says
    what becomes of records with missing images and of posts stored before with other content
    (``--missing-images``, ``--update``). ``actor`` needs
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
            options=options,
            date_format=date_format,
            policy=policy,
            by=account_id(actor),
        ),
        via="command line" if actor == OPERATOR else "paths",
        source=source,
        encoding=encoding,
        **described(options, date_format, policy),
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
        updated=report.updated,
        differing=report.differing,
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
    options: ReadOptions | None = None,
    date_format: str | None = None,
    policy: StorePolicy | None = None,
    by: int | None = None,
) -> IngestReport:
    """:func:`ingest_paths` without the permission check and the audit row (its callers do both);
    ``by``: the account whose run it is (None: the command line), on the update events."""
    options = options or ReadOptions()
    if encoding:
        encoding = check_encoding(encoding)
    if date_format:
        check_date_format(date_format)
    plan = []
    for path in paths:
        kind = input_kind(path, options.format)
        try:
            enc = None if kind == "folder" else encoding or detect_encoding(path)
            if kind == "csv":
                assert enc is not None
                check_columns(path, enc, options)
        except OSError as exc:
            raise IngestError(f"{shown(path)}: cannot be read ({exc.strerror or exc})") from None
        plan.append((path, kind, enc))
    ingestor = Ingestor(
        session_factory,
        settings,
        default_source=source,
        allow_absolute_paths=allow_absolute_paths,
        workers=workers,
        date_format=date_format,
        soft_fields=True,
        policy=policy,
        by=by,
    )
    for path, kind, enc in plan:
        if kind == "folder":
            records = read_folder(path, encoding)
        else:
            assert enc is not None
            ingestor.report.encodings[str(path)] = enc
            records = read_jsonl(path, enc, options) if kind == "jsonl" else read_csv(path, enc, options)
        records = _guarded(records, shown(path.name or path))
        if progress:
            records = _tracked(records, path, progress(str(path), count_units(path)))
        ingestor.run(records)
    return ingestor.report


def described(options: ReadOptions | None, date_format: str | None, policy: StorePolicy | None) -> dict[str, Any]:
    """How the files were read and stored, for the audit row (what the operator named only)."""
    options, policy = options or ReadOptions(), policy or StorePolicy()
    return {
        "format": options.format,
        "mapping": dict(options.mapping),
        "quoting": None if options.quoting else "off",
        "image_path": options.image_path,
        "date_format": date_format,
        "missing_images": None if policy.missing_images == "reject" else policy.missing_images,
        "update": policy.update,
    }


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


def _tracked(records: Iterator[RawRecord], path: Path, update: Callable[[int], None]) -> Iterator[RawRecord]:
    """Report progress as records are read: the line reached in a file, the count in a folder."""
    done = 0
    for raw in records:
        line = raw.location.rsplit(":", 1)[-1]
        done = int(line) if not path.is_dir() and line.isdigit() else done + 1
        update(done)
        yield raw

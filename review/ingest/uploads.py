"""Uploaded files into the desk, as the Ingest page takes them: ``ingest_upload``.

Uploads are written to a private temporary folder and handed to :func:`read_paths` exactly as
files given on the command line: JSONL / CSV files (their relative image paths resolve inside
the upload, so a zip keeps a folder layout), or, with no data file, the images as a folder
ingest. Zip archives are checked on their declared sizes before anything is extracted (a total,
a per-file bound and a compression ratio), each member is streamed with a cap at its declared
size, and a member that cannot be taken (encrypted, an unknown method, corrupt, a name used
twice) is a rejection while the rest goes on; members with absolute paths, ``..`` or links
refuse the whole upload.
"""

from __future__ import annotations

import lzma
import os
import re
import tempfile
import zipfile
import zlib
from dataclasses import replace
from pathlib import Path, PurePosixPath

from sqlalchemy.orm import Session, sessionmaker

from review.auth import Actor, Permission, account_id, require_live
from review.config import Settings
from review.errors import IngestError
from review.ingest.readers import DATA_SUFFIXES, ReadOptions
from review.ingest.records import IngestReport, Rejection
from review.ingest.run import audited_ingest, described, read_paths
from review.ingest.store import StorePolicy
from review.text import shown

MAX_UPLOAD_BYTES = 2 * 1024**3  # all files of one upload, zip contents included (as their headers declare)
MAX_ZIP_MEMBERS = 100_000
MAX_MEMBER_BYTES = 512 * 1024**2  # one file inside a zip, as declared; checked before anything is extracted
MAX_ZIP_RATIO = 200  # declared size / compressed size above which a member (over 1 MiB) is taken for a bomb
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:]")
_READABLE_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
# What a damaged member raises while it is decompressed (zlib, bz2 and lzma streams, zipfile's CRC check).
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, lzma.LZMAError, OSError, ValueError)


def _safe_part(name: str) -> str:
    """One path component of an uploaded name, kept as written (spaces, Chinese, …) so that
    the paths a JSONL names still match; only separators and control characters go."""
    cleaned = _UNSAFE.sub("_", name).strip()
    if cleaned in ("", ".", ".."):
        raise IngestError(f"refused file name {shown(name)}")
    return cleaned


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a member cannot be taken, from its header alone (nothing is decompressed)."""
    if info.flag_bits & 0x1:
        return "is encrypted; the desk takes no passwords: zip it again without one"
    if info.compress_type not in _READABLE_METHODS:
        return f"uses compression method {info.compress_type}, which cannot be read: zip it again with deflate"
    if info.file_size > 2**20 and info.file_size > MAX_ZIP_RATIO * max(1, info.compress_size):
        return (
            f"declares {info.file_size:,} bytes packed into {info.compress_size:,} (more than {MAX_ZIP_RATIO}:1); "
            "refused as a zip bomb"
        )
    if info.file_size > MAX_MEMBER_BYTES:
        return f"declares {info.file_size:,} bytes; one file may hold at most {MAX_MEMBER_BYTES:,}"
    return None


def _unpack(archive: Path, into: Path, budget: int, label: str | None = None) -> tuple[int, list[Rejection]]:
    """Extract a zip under ``into``: no absolute paths, no ``..``, no links (the whole upload is
    refused), size-limited by the declared sizes before anything is extracted, and each member
    streamed with a cap at its declared size. A member that cannot be taken (encrypted, an
    unknown compression method, corrupt, too large, its name used twice) is a rejection with its
    reason and the others are extracted. Returns the bytes written and the rejections."""
    label = label or shown(archive.name)
    rejected: list[Rejection] = []

    def reject(member: str, reason: str) -> None:
        rejected.append(Rejection(f"{label}/{shown(member)}", reason, order=-1))

    with zipfile.ZipFile(archive) as zf:
        members = [info for info in zf.infolist() if not info.is_dir()]
        if len(members) > MAX_ZIP_MEMBERS:
            raise IngestError(f"{label}: more than {MAX_ZIP_MEMBERS:,} files")
        targets: dict[Path, list[zipfile.ZipInfo]] = {}
        for info in members:
            parts = PurePosixPath(info.filename.replace("\\", "/")).parts
            if not parts or parts[0] == "/" or ".." in parts or (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise IngestError(f"{label}: refused member {info.filename!r} (absolute, '..' or a link)")
            targets.setdefault(into.joinpath(*(_safe_part(p) for p in parts)), []).append(info)
        todo: list[tuple[Path, zipfile.ZipInfo]] = []
        declared = 0
        for target, infos in targets.items():
            if len(infos) > 1:  # which copy a record means cannot be told: none is taken
                for info in infos:
                    reject(info.filename, f"the name is used by {len(infos)} members of the archive; none was taken")
                continue
            info = infos[0]
            problem = _member_problem(info)
            if problem:
                reject(info.filename, problem)
                continue
            declared += info.file_size
            todo.append((target, info))
        if declared > budget:
            raise IngestError(
                f"{label}: the archive declares {declared:,} bytes; an upload may unpack to at most "
                f"{MAX_UPLOAD_BYTES // 1024**2:,} MB"
            )
        written = 0
        for target, info in todo:
            try:
                written += _extract(zf, info, target)
            except _CORRUPT as exc:
                target.unlink(missing_ok=True)
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
                reject(info.filename, f"cannot be unpacked ({type(exc).__name__}: {reason})")
            except Exception as exc:  # RuntimeError, NotImplementedError, …: this member only
                target.unlink(missing_ok=True)
                reject(info.filename, f"cannot be unpacked ({type(exc).__name__}: {exc})")
    return written, rejected


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> int:
    """One member, streamed, never more bytes than its header declares."""
    target.parent.mkdir(parents=True, exist_ok=True)
    copied = 0
    with zf.open(info) as src, target.open("xb") as dst:
        while chunk := src.read(1 << 20):
            copied += len(chunk)
            if copied > info.file_size:
                raise zipfile.BadZipFile(f"holds more than the {info.file_size:,} bytes it declares")
            dst.write(chunk)
    return copied


def ingest_upload(
    sessions: sessionmaker[Session],
    settings: Settings,
    actor: Actor,
    files: list[tuple[str, bytes]],
    *,
    source: str | None = None,
    encoding: str | None = None,
    client: str | None = None,
    options: ReadOptions | None = None,
    date_format: str | None = None,
    policy: StorePolicy | None = None,
) -> IngestReport:
    """Ingest uploaded files (name, content): .jsonl/.csv/.tsv data files, images, .zip archives.

    ``actor`` needs the ingest permission as its account is stored now; the run is written to
    the audit log with the uploaded files' names. ``encoding`` names the text encoding of the
    data files (default: UTF-8, or UTF-16 with a byte-order mark); ``options``, ``date_format`` and
    ``policy`` are the command line's reading and storing options (:func:`read_paths`); with a
    format named, ``.txt`` files are data files too."""
    with sessions() as session:
        actor = require_live(session, actor, Permission.INGEST)

    def run() -> IngestReport:
        if not files:
            raise IngestError("no files uploaded")
        total = sum(len(content) for _, content in files)
        if total > MAX_UPLOAD_BYTES:
            raise IngestError(f"the upload is larger than {MAX_UPLOAD_BYTES // 1024**2} MB")
        with tempfile.TemporaryDirectory(prefix="review-upload-") as tmp:
            root = Path(tmp)
            try:
                rejected, archives = _write_upload(root, files, total)
            except OSError as exc:  # names too long for the file system, a full disk
                raise IngestError(f"the upload could not be unpacked: {exc.strerror or exc}") from None
            # a named format makes .txt files data too (a tab-separated export named .txt)
            suffixes = {*DATA_SUFFIXES, ".txt"} if options and options.format else DATA_SUFFIXES
            data = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
            names = _UploadNames(root, archives)
            try:
                report = read_paths(
                    sessions, data or [root], settings, source=source, encoding=encoding, options=options,
                    date_format=date_format, policy=policy, by=account_id(actor),
                )  # fmt: skip
            except IngestError as exc:
                raise IngestError(names.text(str(exc))) from None
            names.rewrite(report, data)
        report.rejected[:0] = rejected  # the archives' members first, as they were met first
        return report

    names = [name for name, _ in files]
    return audited_ingest(sessions, actor, names, run, client=client, via="upload", source=source, encoding=encoding,
                          **described(options, date_format, policy))  # fmt: skip


class _UploadNames:
    """The uploaded names for the temporary paths an upload is read from, so that what a report
    says names the user's files ("posts.zip/day1/a.png") and never the server's folders."""

    def __init__(self, root: Path, archives: dict[Path, str]) -> None:
        pairs: dict[str, str] = {}
        for base in {root, root.resolve()}:  # as written and as resolved (a temporary folder behind a link)
            pairs |= {f"{base / folder.name}{os.sep}": f"{name}/" for folder, name in archives.items()}
            pairs |= {f"{base}{os.sep}": "", str(base): "<upload>"}
        self.pairs = sorted(pairs.items(), key=lambda pair: -len(pair[0]))  # a zip's folder before the root

    def text(self, text: str) -> str:
        for temp, name in self.pairs:
            text = text.replace(temp, name)
        return text

    def rewrite(self, report: IngestReport, data: list[Path]) -> None:
        """``report`` in uploaded names: rejections (a data file's records located by its upload
        path, where its bare name alone would not say which archive it came from), warnings and
        the encodings' files."""
        bare = [shown(path.name) for path in data]
        unique = {label: path for label, path in zip(bare, data, strict=True) if bare.count(label) == 1}

        def where(location: str) -> str:
            label, colon, line = location.partition(":")
            return self.text(str(unique[label])) + colon + line if label in unique else self.text(location)

        report.rejected[:] = [
            replace(r, location=where(r.location), reason=self.text(r.reason)) for r in report.rejected
        ]
        report.warnings[:] = [self.text(warning) for warning in report.warnings]
        report.encodings = {self.text(path): encoding for path, encoding in report.encodings.items()}
        report.outcomes[:] = [replace(o, reason=o.reason and self.text(o.reason)) for o in report.outcomes]


def _write_upload(root: Path, files: list[tuple[str, bytes]], total: int) -> tuple[list[Rejection], dict[Path, str]]:
    """The uploaded files under ``root``, zip archives unpacked into a folder of their name;
    the rejections of archive members, and each archive's folder with the archive's name."""
    rejected: list[Rejection] = []
    archives: dict[Path, str] = {}
    for name, content in files:
        target = root / _safe_part(Path(name).name)
        if target.exists():
            raise IngestError(f"two uploaded files are named {shown(target.name)}")
        target.write_bytes(content)
        if target.suffix.lower() == ".zip":
            try:
                written, members = _unpack(target, root / target.stem, MAX_UPLOAD_BYTES - total, shown(name))
            except zipfile.BadZipFile:
                raise IngestError(f"{shown(name)}: not a readable zip file") from None
            total += written
            rejected += members
            archives[root / target.stem] = shown(name)
            target.unlink()
    return rejected, archives

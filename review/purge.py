"""Erasure with a trace: purge posts' content, and apply the retention settings, by one mechanism.

What a post's content is, by kind (:class:`Kind`):

- ``media``: the post's images: its ``post_media`` links and the links an ingest update replaced
  (``replaced_media``), and every image no other (not erased) post still shows or showed — its
  file and thumbnail under ``MEDIA_DIR``, its ``media`` row, its signals (OCR, NSFW,
  near-duplicate cluster) and its copies in export folders;
- ``text``: the post's text, author and metadata, its post-level signals, the text of its
  verdicts (description, OCR reading, rationale, consistency reason, tags, parse notes, error,
  raw output, and the input hashes that would let a guess at the text be confirmed) and the notes
  of its review events (moderators quote posts in them);
- ``raw_output``: the verdicts' raw model output only.

What stays: the post row as a tombstone (id, source, external id — so that a re-ingest of the same
record is "already present" instead of bringing the content back — platform and ingest times,
status, the current verdict's category and violation) with ``purged_at`` and ``purge_event_id``
(the audit row saying who, when, why and what kinds went); the verdicts' judgement and provenance
(violation, category, severity, confidence, sentiment, consistency, provider, model, prompt
version, tokens, latency); the review events without their notes; ``post_label``. So decision
history, metrics and agreement stay countable.

A purge (:func:`purge`, ``python -m review purge``, the admin page) erases every kind and needs a
reason; retention (:func:`apply_retention`, ``python -m review retention``) erases the kinds whose
setting (days after the post's decision) has run out, on decided posts only. Both go through
:func:`_erase`, in one write transaction with their audit row (``purge`` or ``retention``); a dry
run does the same work and rolls it back. What is already gone is not counted again, so running
either twice changes nothing the second time. Files (images, thumbnails, export copies) are
deleted only after the commit: a crash in between leaves unreferenced files, which
``python -m review media gc`` removes, never a row that points at a missing file. A store file is
deleted by the rule ``media gc`` applies, taken at the start of the erasure: only when it is older
than ``media.GC_MIN_AGE`` then (and still at the moment of deleting it), since a running ingest
may have written or reused it (``media.write_image`` refreshes its time) for a row it has not
committed yet; a newer one is left for ``media gc`` (``Erasure.left_for_gc``).

What is left of a post, by kind, is one rule in SQL (:func:`_has`), used both to choose the posts
a retention run has work for (outside the write transaction) and to re-check them inside it.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
import stat
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, or_, select, update
from sqlalchemy import delete as sql_delete
from sqlalchemy.orm import Session, sessionmaker

from db.models import (
    MAX_ID,
    AuditEvent,
    Export,
    Media,
    Post,
    PostLabel,
    PostMedia,
    PostStatus,
    ReplacedMedia,
    ReviewEvent,
    Signal,
    Verdict,
    as_id,
)
from db.session import SQLITE_BEGIN_OPTION, db_text, rows_changed
from review import audit
from review.auth import Actor, Permission, require_live
from review.config import Settings
from review.errors import ReviewError

CHUNK = 500  # ids per statement (SQLite and Postgres cap a statement's parameters)
ERASED_HASH = "erased"  # a verdict's input_hash once its text is erased: matches no input, so no cache hit
MAX_REASON = 1000
MAX_LISTED_IDS = 10_000  # post ids kept in one audit row's details (the tombstones point at the row anyway)


class Kind(enum.StrEnum):
    MEDIA = "media"
    TEXT = "text"
    RAW_OUTPUT = "raw_output"


ALL_KINDS = frozenset(Kind)


class ReasonMissing(ReviewError):
    """A purge without a reason: nothing is erased."""


@dataclass
class Erasure:
    """What an erasure did (or, for a dry run, would do)."""

    dry_run: bool
    kinds: list[str]
    erased: list[int] = field(default_factory=list)  # posts with something removed
    already: dict[int, datetime | None] = field(default_factory=dict)  # nothing left: post → when it was purged
    not_found: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    export_folders: list[str] = field(default_factory=list)  # data files still holding erased posts
    unchecked_exports: list[str] = field(default_factory=list)  # folders whose manifest could not be read
    event_id: int | None = None
    files: list[Path] = field(default_factory=list)  # store files and export copies deleted (dry run: to delete)
    file_errors: list[str] = field(default_factory=list)  # deletions that failed after the commit
    left_for_gc: list[Path] = field(default_factory=list)  # unreferenced store files too recent to delete now

    def summary(self) -> str:
        c = self.counts
        n = len(self.erased)
        parts = [f"{n} post{'' if n == 1 else 's'} {'to erase' if self.dry_run else 'erased'}"]
        for key, label in (
            ("texts", "texts"),
            ("verdicts", "verdicts' texts"),
            ("raw_outputs", "raw outputs"),
            ("notes", "review notes"),
            ("media_links", "image links"),
            ("media", "images"),
            ("media_signals", "image signals"),
            ("files", "files"),
            ("export_images", "exported image copies"),
        ):
            if c.get(key):
                parts.append(f"{c[key]} {label}")
        if c.get("media_shared"):
            parts.append(f"{c['media_shared']} images kept (other posts show them)")
        if self.left_for_gc:
            parts.append(f"{len(self.left_for_gc)} files left for `media gc` (used within the last hour)")
        if self.already:
            parts.append(f"{len(self.already)} already erased")
        if self.not_found:
            parts.append(f"{len(self.not_found)} not found")
        return ", ".join(parts)


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield list(ids[start : start + CHUNK])


def check_reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not text:
        raise ReasonMissing("a purge needs a reason (--reason TEXT): who asked for it, or why; nothing was erased")
    if len(text) > MAX_REASON:
        raise ReviewError(f"the reason may have at most {MAX_REASON} characters")
    return text


# ---------------------------------------------------------------------------------------------
# Which posts


def resolve_posts(
    session: Session,
    *,
    post_ids: Iterable[int] = (),
    external: Iterable[tuple[str, str]] = (),
    author: str | None = None,
    source: str | None = None,
) -> tuple[list[int], list[str]]:
    """The post ids named by ids, (source, external id) pairs or an author (optionally within a
    source), in id order without repeats, and what was named but not found."""
    found: set[int] = set()
    missing: list[str] = []
    wanted = list(dict.fromkeys(post_ids))
    missing += [f"post {i}" for i in wanted if not 0 < i <= MAX_ID]
    for part in _chunks([i for i in wanted if 0 < i <= MAX_ID]):
        hits = set(session.scalars(select(Post.id).where(Post.id.in_(part))))
        found |= hits
        missing += [f"post {i}" for i in part if i not in hits]
    for src, ext in dict.fromkeys(external):
        hit = None
        if _storable(src, ext):
            hit = session.scalar(select(Post.id).where(Post.source == src, Post.external_id == ext))
        if hit is None:
            missing.append(f"{src}:{ext}")
        else:
            found.add(hit)
    if author is not None and _storable(author, source or ""):
        query = select(Post.id).where(Post.author == author)
        if source:
            query = query.where(Post.source == source)
        found |= set(session.scalars(query))
    return sorted(found), missing


def _storable(*names: str) -> bool:
    """Whether each of ``names`` could be stored text: one holding a NUL or a lone surrogate
    (pasted or typed into the page, undecodable bytes on the command line) matches no post, and
    Postgres would refuse it as a parameter. Not cleaned and compared instead: an exact name
    chooses what is erased."""
    return all(db_text(name) == name for name in names)


_ID_SEPARATORS = re.compile(r"[\s,;]+")


def parse_ids(text: str, origin: str | None = None) -> list[int]:
    """Post ids in ``text``: numbers, one a line or separated by spaces, commas or semicolons;
    ``#`` starts a comment to the end of its line. A bad one is an error naming its line (in
    ``origin``, a file name, when given). The one parser of the command line's ``--posts-file``
    and the admin page's box."""
    ids = []
    for number, line in enumerate(text.splitlines(), start=1):
        for token in _ID_SEPARATORS.split(line.split("#", 1)[0]):
            if not token:
                continue
            post_id = as_id(token)
            if post_id is None:
                where = f"{origin}:{number}" if origin else f"line {number}"
                raise ReviewError(f"{where}: not a post id: {token[:40]!r} (numbers, one a line or separated by "
                                  "commas)")  # fmt: skip
            ids.append(post_id)
    return ids


def read_ids_file(path: Path) -> list[int]:
    """Post ids from a file, as :func:`parse_ids` reads them."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReviewError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_ids(text, origin=str(path))


def author_digest(author: str) -> str:
    """What the audit log keeps of an erased author: the SHA-256 of the name (UTF-8), never the
    name itself (the log is append-only). Whoever holds the name can check that it was erased."""
    return hashlib.sha256(author.encode("utf-8", "surrogatepass")).hexdigest()


def parse_external(value: str) -> tuple[str, str]:
    """``SOURCE:ID`` (split at the first colon: external ids may hold colons)."""
    source, sep, external_id = value.partition(":")
    if not sep or not source or not external_id:
        raise ReviewError(f"not SOURCE:ID: {value!r}")
    return source, external_id


# ---------------------------------------------------------------------------------------------
# The mechanism


def _has(kind: Kind) -> ColumnElement[bool]:
    """SQL, about the row of ``Post`` in the query: the post still holds something of ``kind``.
    The one rule of what is left; what :func:`_erase_media`, :func:`_erase_text` and
    :func:`_erase_raw` remove makes it false."""
    if kind is Kind.MEDIA:  # its images, and those an ingest update replaced
        return or_(exists().where(PostMedia.post_id == Post.id), exists().where(ReplacedMedia.post_id == Post.id))
    if kind is Kind.RAW_OUTPUT:
        return exists().where(Verdict.post_id == Post.id, Verdict.raw_output.is_not(None))
    return or_(
        Post.text != "",
        Post.author.is_not(None),
        Post.meta != {},
        exists().where(Verdict.post_id == Post.id, Verdict.input_hash != ERASED_HASH),
        exists().where(ReviewEvent.post_id == Post.id, ReviewEvent.note.is_not(None)),
    )


def _left(session: Session, ids: list[int], kinds: frozenset[Kind]) -> set[int]:
    """Those of ``ids`` that still hold something of ``kinds``."""
    left = or_(*(_has(kind) for kind in sorted(kinds)))
    out: set[int] = set()
    for part in _chunks(ids):
        out |= set(session.scalars(select(Post.id).where(Post.id.in_(part), left)))
    return out


@dataclass
class _Work:
    counts: dict[str, int] = field(default_factory=dict)
    lone: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # media id → sha256, path, thumb
    media_posts: set[int] = field(default_factory=set)  # posts whose images went
    text_posts: set[int] = field(default_factory=set)  # posts whose text went
    store_files: list[tuple[str, Path]] = field(default_factory=list)  # (sha256, file under MEDIA_DIR)
    export_files: list[Path] = field(default_factory=list)  # copies of erased images in export folders

    def add(self, key: str, n: int | None) -> None:
        self.counts[key] = self.counts.get(key, 0) + int(n or 0)


def _erase_media(session: Session, ids: list[int], work: _Work) -> None:
    """Unlink ``ids``' images, those an ingest update replaced (``replaced_media``) too; an image
    that no post outside ``ids`` shows, or showed before an update, goes with its signals.
    Called once for every post losing its images, whatever else it loses: a post that keeps
    its images (due for its text or raw output only) keeps the image too."""
    erasing = set(ids)
    media_ids: set[int] = set()
    for link in (PostMedia, ReplacedMedia):
        for part in _chunks(ids):
            media_ids |= set(session.scalars(select(link.media_id).where(link.post_id.in_(part))))
    shared: set[int] = set()
    for link in (PostMedia, ReplacedMedia):
        for part in _chunks(sorted(media_ids)):
            for media_id, post_id in session.execute(
                select(link.media_id, link.post_id).where(link.media_id.in_(part))
            ):  # fmt: skip
                if post_id not in erasing:
                    shared.add(media_id)
    lone = sorted(media_ids - shared)
    work.add("media_shared", len(shared))
    for part in _chunks(ids):
        work.add("media_links", rows_changed(session, sql_delete(PostMedia).where(PostMedia.post_id.in_(part))))
        work.add("media_links", rows_changed(session, sql_delete(ReplacedMedia).where(ReplacedMedia.post_id.in_(part))))
    for part in _chunks(lone):
        for media_id, sha, path, thumb in session.execute(
            select(Media.id, Media.sha256, Media.path, Media.thumb_path).where(Media.id.in_(part))
        ):
            work.lone[media_id] = (sha, path, thumb)
        work.add("media_signals", rows_changed(session, sql_delete(Signal).where(Signal.media_id.in_(part))))
        work.add("media", rows_changed(session, sql_delete(Media).where(Media.id.in_(part))))


def _erase_text(session: Session, ids: list[int], work: _Work) -> None:
    for part in _chunks(ids):
        full = [
            post_id
            for post_id, text, author, meta in session.execute(
                select(Post.id, Post.text, Post.author, Post.meta).where(Post.id.in_(part))
            )
            if text or author is not None or meta
        ]
        if full:
            session.execute(update(Post).where(Post.id.in_(full)).values(text="", author=None, meta={}))
        work.add("texts", len(full))
        work.add("raw_outputs", _count_raw(session, part))
        work.add(
            "verdicts",
            rows_changed(
                session,
                update(Verdict)
                .where(Verdict.post_id.in_(part), Verdict.input_hash != ERASED_HASH)
                .values(description=None, ocr_text=None, rationale=None, raw_output=None, consistency_reason=None,
                        tags=[], parse_notes=[], error=None, input_hash=ERASED_HASH, text_hash=None),
            ),
        )  # fmt: skip
        _clear_raw(session, part)  # raw output left on a verdict erased earlier (none, unless set by hand)
        work.add(
            "notes",
            rows_changed(
                session,
                update(ReviewEvent)
                .where(ReviewEvent.post_id.in_(part), ReviewEvent.note.is_not(None))
                .values(note=None),
            ),
        )


def _count_raw(session: Session, part: list[int]) -> int:
    query = select(func.count(Verdict.id)).where(Verdict.post_id.in_(part), Verdict.raw_output.is_not(None))
    return session.scalar(query) or 0


def _clear_raw(session: Session, part: list[int]) -> int:
    """Clear the raw output of these posts' verdicts; how many verdicts had one."""
    return rows_changed(
        session,
        update(Verdict).where(Verdict.post_id.in_(part), Verdict.raw_output.is_not(None)).values(raw_output=None),
    )


def _erase_raw(session: Session, ids: list[int], work: _Work) -> None:
    for part in _chunks(ids):
        work.add("raw_outputs", _clear_raw(session, part))


def _apply(session: Session, plan: dict[frozenset[Kind], list[int]], work: _Work) -> list[int]:
    """Erase each group of posts' kinds; the posts that had something removed. The images of
    every group go in one step, so that an image shown by posts of two groups is judged by all
    the posts that lose it, and kept while a post that keeps its images shows it."""
    touched: set[int] = set()
    with_media: set[int] = set()
    for kinds, ids in plan.items():
        left = _left(session, ids, kinds)
        if not left:
            continue
        touched |= left
        todo = sorted(left)
        if Kind.MEDIA in kinds:
            with_media |= _left(session, todo, frozenset({Kind.MEDIA}))
        if Kind.TEXT in kinds:
            with_text = sorted(_left(session, todo, frozenset({Kind.TEXT})))
            _erase_text(session, with_text, work)
            work.text_posts |= set(with_text)
        elif Kind.RAW_OUTPUT in kinds:
            _erase_raw(session, todo, work)
    if with_media:
        _erase_media(session, sorted(with_media), work)
        work.media_posts |= with_media
    return sorted(touched)


def _lock(session: Session, ids: list[int]) -> None:
    """Postgres: hold the posts' rows, so that a scoring worker or a decision waits for the erasure
    (and then finds its lease or claim gone). SQLite's write transaction already excludes them."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for part in _chunks(ids):
        session.execute(select(Post.id).where(Post.id.in_(part)).order_by(Post.id).with_for_update())


def _exports(session: Session, work: _Work, result: Erasure) -> None:
    """Export folders the desk knows of that hold erased posts: the copies of erased images to
    delete (after the commit), and the folders whose data files still hold the posts' text (or,
    parquet, their images' bytes) for an operator to delete or export again."""
    from review.export import image_name  # here: the export module is heavy to load for the command line

    gone = work.media_posts | work.text_posts
    if not gone:
        return
    folders = list(dict.fromkeys(session.scalars(select(Export.output_path).order_by(Export.id))))
    for folder in folders:
        root = Path(folder)
        manifest = root / "manifest.json"
        if not root.is_dir():
            continue  # deleted already
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            ids = {int(i) for split in (data.get("post_ids") or {}).values() for i in split}
            fmt = str(data.get("format", ""))
        except (OSError, ValueError, TypeError, AttributeError):
            result.unchecked_exports.append(folder)
            continue
        if not ids & gone:
            continue
        if ids & work.text_posts or (fmt == "parquet" and ids & work.media_posts):
            result.export_folders.append(folder)
        for sha, path, _thumb in work.lone.values():
            copy = root / image_name(sha, path)
            if copy.is_file():
                work.export_files.append(copy)
                work.add("export_images", 1)


def _erase(
    sessions: sessionmaker[Session],
    actor: Actor,
    settings: Settings,
    plan: dict[frozenset[Kind], list[int]],
    *,
    action: audit.Action,
    subject: str,
    dry_run: bool,
    details: dict[str, Any],
    now: datetime,
    result: Erasure,
) -> Erasure:
    """The one mechanism: erase ``plan``'s kinds of its posts, record the audit row with what
    went, make the posts whose text or media went tombstones (for a purge, every named post not
    purged before, even one that held nothing), commit (or, dry run, roll back), then delete the
    files that ``media gc`` would delete at the erasure's start (see the module)."""
    from review.media import GC_MIN_AGE  # here: the media module is heavy to load for the command line

    cutoff = time.time() - GC_MIN_AGE.total_seconds()  # taken before anything is read
    ids = sorted({post_id for group in plan.values() for post_id in group})
    work = _Work()
    with sessions() as session:
        tx = session.begin()
        try:
            session.connection(execution_options={SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            actor = require_live(session, actor, Permission.PURGE)
            _lock(session, ids)
            touched = set(_apply(session, plan, work))
            tombstones = work.media_posts | work.text_posts
            # a purge names its posts: say which held nothing any more (retention chose only posts
            # with something left, and what it no longer finds is not news)
            rest = sorted(set(ids) - touched) if action == audit.Action.PURGE else []
            for part in _chunks(rest):
                for post_id, purged_at in session.execute(select(Post.id, Post.purged_at).where(Post.id.in_(part))):
                    if purged_at is None:
                        touched.add(post_id)  # nothing to erase, yet asked to: a tombstone all the same
                        tombstones.add(post_id)
                    else:
                        result.already[post_id] = purged_at
            result.erased = sorted(touched)
            work.counts["posts"] = len(touched)
            for sha, path, thumb in work.lone.values():
                for rel in (path, thumb):
                    file = settings.media_dir / rel
                    if (when := _mtime(file)) is None:
                        continue
                    if when > cutoff:  # an ingest may be about to refer to it again
                        result.left_for_gc.append(file)
                        work.add("files_left_for_gc", 1)
                    else:
                        work.store_files.append((sha, file))
                        work.add("files", 1)
            _exports(session, work, result)
            result.counts = dict(sorted(work.counts.items()))
            if touched and not dry_run:
                listed = result.erased[:MAX_LISTED_IDS]
                event = audit.record(
                    session, actor, action, subject, **details, kinds=result.kinds, counts=result.counts,
                    post_ids=listed, post_ids_total=len(touched), export_folders=result.export_folders,
                    unchecked_exports=result.unchecked_exports,
                )  # fmt: skip
                result.event_id = event.id
                for part in _chunks(sorted(tombstones)):
                    session.execute(
                        update(Post)
                        .where(Post.id.in_(part))
                        .values(purged_at=now, purge_event_id=event.id, claimed_by_id=None, lease_expires_at=None,
                                score_lease_owner=None, score_lease_expires_at=None, updated_at=now)
                        .execution_options(synchronize_session=False)
                    )  # fmt: skip
                tx.commit()
            else:
                tx.rollback()
        except BaseException:
            if tx.is_active:
                tx.rollback()
            raise
    if dry_run:
        result.files = [f for _sha, f in work.store_files] + work.export_files
    elif touched:
        _delete_files(sessions, work, result, cutoff)
    return result


def _mtime(path: Path) -> float | None:
    """The modification time of a regular file (links are not followed); None if there is none."""
    try:
        info = path.lstat()
    except OSError:
        return None
    return info.st_mtime if stat.S_ISREG(info.st_mode) else None


def _delete_files(sessions: sessionmaker[Session], work: _Work, result: Erasure, cutoff: float) -> None:
    """After the commit. A store file stays where a media row with its sha256 exists again (the
    same bytes ingested since the erasure began: that row needs it), and where it was written or
    reused after ``cutoff`` (an ingest that has not committed yet may need it: ``media gc``
    removes it later if not)."""
    shas = sorted({sha for sha, _f in work.store_files})
    back: set[str] = set()
    with sessions() as session:
        for start in range(0, len(shas), CHUNK):
            back |= set(session.scalars(select(Media.sha256).where(Media.sha256.in_(shas[start : start + CHUNK]))))
    doomed = []
    for sha, path in work.store_files:
        if sha in back:
            continue
        when = _mtime(path)
        if when is not None and when > cutoff:
            result.left_for_gc.append(path)
        elif when is not None:
            doomed.append(path)
    for path in doomed + work.export_files:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            result.file_errors.append(f"{path}: {exc.strerror or exc}")
        else:
            result.files.append(path)


# ---------------------------------------------------------------------------------------------
# Purge


def purge(
    sessions: sessionmaker[Session],
    actor: Actor,
    settings: Settings,
    post_ids: Sequence[int],
    *,
    reason: str,
    dry_run: bool = False,
    not_found: Sequence[str] = (),
    author: str | None = None,
    now: datetime | None = None,
) -> Erasure:
    """Erase every kind of content of ``post_ids`` (see the module), with ``reason`` in the audit
    row. Posts with nothing left are reported in ``Erasure.already`` and left as they are.

    ``author``: the name the posts were chosen by, if they were. The audit row, which nothing
    erases, keeps the post ids, the counts and :func:`author_digest` of the name, never the name
    or the ``not_found`` names (source and external ids): only how many were not found."""
    text = check_reason(reason)
    with sessions() as session:
        require_live(session, actor, Permission.PURGE)
    ids = sorted(set(post_ids))
    result = Erasure(dry_run=dry_run, kinds=sorted(ALL_KINDS), not_found=list(not_found))
    if not ids:
        return result
    details: dict[str, Any] = {"reason": text, "not_found": len(not_found)}
    if author is not None:
        details["author_sha256"] = author_digest(author)
        subject = f"author sha256:{details['author_sha256'][:16]}"
    else:
        subject = f"post {ids[0]}" if len(ids) == 1 else f"{len(ids)} posts"
    return _erase(sessions, actor, settings, {ALL_KINDS: ids}, action=audit.Action.PURGE, subject=subject,
                  dry_run=dry_run, details=details, now=now or datetime.now(UTC), result=result)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Retention


def retention_days(settings: Settings) -> dict[Kind, int]:
    """Days after a post's decision that each kind is kept (0: for ever)."""
    return {
        Kind.MEDIA: settings.retain_media_days,
        Kind.TEXT: settings.retain_text_days,
        Kind.RAW_OUTPUT: settings.retain_raw_output_days,
    }


def due(session: Session, settings: Settings, now: datetime) -> dict[frozenset[Kind], list[int]]:
    """Decided posts grouped by the kinds whose retention has run out for them (their latest
    standing decision, ``post_label.decided_at``, is older than the setting) and of which they
    still hold something: what was erased before is not read again, and the write transaction
    that follows holds only the posts with work to do."""
    days = {kind: d for kind, d in retention_days(settings).items() if d > 0}
    if not days:
        return {}
    kinds = sorted(days)
    due_for = {kind: and_(PostLabel.decided_at < now - timedelta(days=days[kind]), _has(kind)) for kind in kinds}
    rows = session.execute(
        select(PostLabel.post_id, *(case((due_for[kind], 1), else_=0) for kind in kinds))
        .join(Post, Post.id == PostLabel.post_id)
        .where(
            Post.status == PostStatus.DECIDED,
            PostLabel.decided_at < now - timedelta(days=min(days.values())),
            or_(*due_for.values()),
        )
        .order_by(PostLabel.post_id)
    ).all()
    plan: dict[frozenset[Kind], list[int]] = {}
    for post_id, *flags in rows:
        group = frozenset(kind for kind, flag in zip(kinds, flags, strict=True) if flag)
        if group:
            plan.setdefault(group, []).append(post_id)
    return plan


def apply_retention(
    sessions: sessionmaker[Session],
    actor: Actor,
    settings: Settings,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
) -> Erasure:
    """Erase what the retention settings no longer keep, by the purge's mechanism, with one
    ``retention`` audit row holding the settings and the counts (none when nothing went)."""
    now = now or datetime.now(UTC)
    days = {str(k): d for k, d in retention_days(settings).items()}
    with sessions() as session:
        require_live(session, actor, Permission.PURGE)
        plan = due(session, settings, now)
    kinds = sorted({str(k) for group in plan for k in group})
    result = Erasure(dry_run=dry_run, kinds=kinds)
    if not plan:
        return result
    return _erase(sessions, actor, settings, plan, action=audit.Action.RETENTION, subject="retention",
                  dry_run=dry_run, details={"days": days}, now=now, result=result)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Reading tombstones


@dataclass(frozen=True)
class Tombstone:
    post_id: int
    purged_at: datetime
    action: str  # purge or retention
    actor: str
    kinds: tuple[str, ...]
    reason: str | None  # a purge's reason (retention has none)


def tombstones(session: Session, post_ids: Sequence[int]) -> dict[int, Tombstone]:
    """The erased posts among ``post_ids`` with the audit row of their latest erasure, and the
    kinds of content that are gone from each (a retention run names every kind it erased on any
    post; a post may have lost only some of them)."""
    out: dict[int, Tombstone] = {}
    for part in _chunks(list(post_ids)):
        rows = session.execute(
            select(Post.id, Post.purged_at, AuditEvent.action, AuditEvent.actor_name, AuditEvent.details)
            .outerjoin(AuditEvent, AuditEvent.id == Post.purge_event_id)
            .where(Post.id.in_(part), Post.purged_at.is_not(None))
        ).all()
        erased = [r[0] for r in rows]
        left = {kind: _left(session, erased, frozenset({kind})) for kind in Kind}
        for post_id, purged_at, action, name, details in rows:
            details = details or {}
            reason = details.get("reason")
            kinds = tuple(k for k in sorted(details.get("kinds") or ()) if k in set(Kind) and post_id not in left[k])
            out[post_id] = Tombstone(post_id, purged_at, action or "purge", name or "", kinds,
                                     reason if isinstance(reason, str) else None)  # fmt: skip
    return out


def recent(session: Session, actor: Actor, limit: int = 20) -> list[dict[str, Any]]:
    """The latest purges and retention runs from the audit log, newest first."""
    require_live(session, actor, Permission.PURGE)
    rows = session.scalars(
        select(AuditEvent)
        .where(or_(AuditEvent.action == audit.Action.PURGE, AuditEvent.action == audit.Action.RETENTION))
        .order_by(AuditEvent.id.desc())
        .limit(limit)
    )
    out = []
    for e in rows:
        d = e.details or {}
        counts = d.get("counts") or {}
        out.append({
            "id": e.id, "when": e.created_at, "by": e.actor_name, "action": e.action, "subject": e.subject or "",
            "reason": d.get("reason") or "", "kinds": ", ".join(d.get("kinds") or []), "posts": counts.get("posts", 0),
            "images": counts.get("media", 0), "export folders": "\n".join(d.get("export_folders") or []),
        })  # fmt: skip
    return out


__all__ = [
    "ALL_KINDS",
    "Erasure",
    "Kind",
    "ReasonMissing",
    "Tombstone",
    "apply_retention",
    "due",
    "purge",
    "recent",
    "resolve_posts",
    "tombstones",
]

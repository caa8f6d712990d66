"""Storing validated records: ``Ingestor`` runs records through validation, the duplicate checks
(in the run and in the database), image paths, the images (read, decoded, written to the media
store in a thread pool) and one write transaction per chunk of ``CHUNK_SIZE`` records, redone
record by record in savepoints when another process stored some of the same posts meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from db.models import Media, Post, PostMedia, PostReport, PostStatus
from db.session import writing
from review.config import Settings
from review.errors import IngestError, MediaError, MissingImageError
from review.ingest.changes import Change, RecordImages, differences, replace_content, stored_content
from review.ingest.records import (
    MISSING_IMAGES_KEY,
    IngestReport,
    PreparedRecord,
    RawRecord,
    RecordOutcome,
    Rejection,
    named,
    unexpected,
    validate,
    with_value,
)
from review.media import StoredImage, check_image_size, prepare_image, read_image_file, write_image
from review.text import one_line, shown

CHUNK_SIZE = 200  # records per transaction
MISSING_IMAGES = ("reject", "skip")  # --missing-images: what becomes of a record with an image file not found
MISSING_HINT = " (--missing-images skip stores such a post with the images there are)"


@dataclass(frozen=True)
class StorePolicy:
    """What a run does with records that cannot be stored just as they stand (the operator's
    choice; the defaults change nothing stored): ``missing_images`` "reject" refuses a record
    with an image file that is not there, "skip" stores the post with the images that exist and
    keeps the missing names on it (``metadata.missing_images``, shown to its moderator);
    ``update`` replaces the content of posts stored before when the record differs and nobody
    has decided on them (review/ingest/changes.py); without it a difference is only reported."""

    missing_images: str = "reject"
    update: bool = False

    def __post_init__(self) -> None:
        if self.missing_images not in MISSING_IMAGES:
            raise IngestError(
                f"--missing-images {one_line(self.missing_images, 40)!r}: name one of {', '.join(MISSING_IMAGES)}"
            )


def _resolve_images(prep: PreparedRecord, allow_absolute: bool) -> str | None:
    attached = prep.raw.attachments
    if attached is not None:  # images that came with the record: names, never paths
        missing = [name for name in prep.record.images if name not in attached]
        if missing:
            return f"image {missing[0]!r}: no image of that name came with the record"
        return None
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


def _store_images(prep: PreparedRecord, settings: Settings, skip_missing: bool = False) -> None:
    """Runs in a worker thread: validate every image of one record, then store them all (a
    record with a bad image leaves no file behind). ``skip_missing``: an image file that is not
    there is left out and named in ``prep.missing`` (``--missing-images skip``); an image that
    is there but bad still refuses the record."""
    prepared = []
    attached = prep.raw.attachments
    for i, name in enumerate(prep.record.images):
        try:
            if attached is not None:
                data = attached[name]
                check_image_size(len(data), settings.max_image_bytes)
            else:
                data = read_image_file(prep.image_paths[i], settings.max_image_bytes)
            prepared.append(
                prepare_image(data, max_pixels=settings.max_image_pixels, thumbnail_size=settings.thumbnail_size)
            )
        except MissingImageError as exc:
            if not skip_missing:
                prep.error = f"image {name!r}: {exc}{MISSING_HINT}"
                return
            prep.missing.append(name)
        except MediaError as exc:
            prep.error = f"image {name!r}: {exc}"
            return
        except Exception as exc:  # a decoder bug must cost one record, not the batch
            prep.error = f"image {name!r}: {unexpected(exc)}"
            return
    if prep.missing and not prepared and not prep.record.text.strip():
        prep.error = "none of its images was found and it has no text: there is nothing to review"
        return
    try:
        prep.stored = [write_image(image, settings.media_dir) for image in prepared]
    except OSError as exc:  # a full disk, a store that is not writable
        prep.error = f"could not be written to the media store ({exc.strerror or exc})"
    except Exception as exc:
        prep.error = unexpected(exc)


def _key_of(raw: RawRecord) -> tuple[str, str] | None:
    """A refused record's (source, external_id) as it came, when it names its id as text."""
    source, external_id = named(raw.data or {})
    return None if external_id is None else (source or "", external_id)


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


class Ingestor:
    """One ingest run over any number of inputs: ``run(records)`` per input, one ``report`` for
    all (duplicates are told apart across the inputs of the run)."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: Settings,
        *,
        default_source: str | None,
        allow_absolute_paths: bool,
        workers: int,
        track: bool = False,
        token_id: int | None = None,
        date_format: str | None = None,
        soft_fields: bool = False,
        policy: StorePolicy | None = None,
        by: int | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.settings = settings
        self.default_source = default_source
        self.date_format = date_format  # strptime format of created_at, when the operator names one
        self.soft_fields = soft_fields  # a bad optional field: left empty with a warning (files), not a rejection
        self.allow_absolute = allow_absolute_paths
        self.workers = min(max(1, workers), 16)
        self.report = IngestReport()
        self.seen: dict[tuple[str, str], tuple[str, str]] = {}  # key → (location, fingerprint)
        self.rejected_keys: set[tuple[str, str]] = set()
        self.position = 0  # records read so far; orders the rejections
        self.media_cache: dict[str, int] = {}
        self.track = track  # keep each record's outcome in the report (the API's answer)
        self.token_id = token_id  # the API token whose batch this is: its records' reports name it
        self.stored_ids: dict[tuple[str, str], int] = {}  # posts this run created, for its repeats
        self.policy = policy or StorePolicy()
        self.by = by  # the account whose run this is, on the update events (None: the command line)

    def warn(self, message: str) -> None:
        self.report.warnings.append(one_line(message))

    def _outcome(
        self,
        order: int,
        status: str,
        key: tuple[str, str] | None,
        *,
        post_id: int | None = None,
        reason: str | None = None,
    ) -> None:
        if self.track:
            source, external_id = key if key else (None, None)
            self.report.outcomes.append(RecordOutcome(order, status, source, external_id, post_id, reason))

    def reject(self, order: int, location: str, reason: str, key: tuple[str, str] | None = None) -> None:
        rejection = Rejection(location, reason, order)
        self.report.rejected.append(rejection)
        self._outcome(order, "rejected", key, reason=rejection.reason)

    def reject_prep(self, prep: PreparedRecord, reason: str) -> None:
        key = (prep.record.source, prep.record.external_id)
        self.reject(prep.order, prep.raw.location, reason, key)
        self.rejected_keys.add(key)

    def present(self, order: int, key: tuple[str, str], post_id: int | None, reason: str | None = None) -> None:
        """An already-present record; ``reason``: why a record with other content changed nothing."""
        self.report.already_present += 1
        self._outcome(order, "already_present", key, post_id=post_id, reason=reason)

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
        self.report.outcomes.sort(key=lambda o: o.order)

    def _chunk(self, chunk: list[RawRecord], pool: ThreadPoolExecutor) -> None:
        fresh: list[PreparedRecord] = []
        repeats: list[tuple[int, RawRecord, tuple[str, str], str]] = []
        for raw in chunk:
            self.position += 1
            order = self.position
            if raw.data is None:
                self.reject(order, raw.location, raw.error or "no record")
                continue
            try:
                prep = validate(raw, self.settings, self.default_source, self.date_format, self.soft_fields)
            except Exception as exc:  # one record's surprise must not cost the chunk
                prep = unexpected(exc)
            if isinstance(prep, str):
                self.reject(order, raw.location, prep, _key_of(raw))
                continue
            prep.order = order
            for warning in prep.warnings:
                self.warn(f"{raw.location}: {warning}")
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
                    key,
                )

        with self.session_factory() as session:
            existing = self._existing_keys(session, [(p.record.source, p.record.external_id) for p in fresh])
        todo = []
        known: list[tuple[PreparedRecord, int, str | None]] = []  # stored before: (record, post id, image error)
        for prep in fresh:
            key = (prep.record.source, prep.record.external_id)
            try:
                error = _resolve_images(prep, self.allow_absolute)
            except Exception as exc:
                error = unexpected(exc)
            if key in existing:
                known.append((prep, existing[key], error))
                continue
            if error:
                self.reject_prep(prep, error)
                continue
            todo.append(prep)
        updates = self._compare(known, pool)

        skip = self.policy.missing_images == "skip"
        list(pool.map(lambda p: _store_images(p, self.settings, skip), [*todo, *(u.prep for u in updates)]))

        ready = []
        for prep in todo:
            if prep.error:
                self.reject_prep(prep, prep.error)
                continue
            self.warn_missing(prep)
            ready.append(prep)
        if ready:
            self._store(ready)
        if updates:
            self._update(updates)

        for order, raw, key, first_location in repeats:
            if key in self.rejected_keys:
                self.reject(order, raw.location, f"repeats {first_location}, which was rejected", key)
            else:
                self.present(order, key, self.stored_ids.get(key))
                self.warn(f"{raw.location}: repeats {first_location} exactly; stored once")

    def _compare(self, known: list[tuple[PreparedRecord, int, str | None]], pool: ThreadPoolExecutor) -> list[_Update]:
        """Records of posts stored before: those with the same content are already present;
        those that differ are reported, and returned for an update when the policy asks for one
        and the post may take it (review/ingest/changes.py). An erased post's images are not read."""
        if not known:
            return []
        with self.session_factory() as session:
            stored = stored_content(session, [post_id for _, post_id, _ in known])
        max_bytes, skip = self.settings.max_image_bytes, self.policy.missing_images == "skip"

        def read(item: tuple[PreparedRecord, int, str | None]) -> RecordImages | str | None:
            content = stored.get(item[1])
            if content is None or content.erased:
                return None
            return item[2] or _record_images(item[0], max_bytes, skip)

        now = datetime.now(UTC)
        updates = []
        for (prep, post_id, _), images in zip(known, pool.map(read, known), strict=True):
            key = (prep.record.source, prep.record.external_id)
            location = prep.raw.location
            unreadable = images if isinstance(images, str) else None
            compared = images if isinstance(images, RecordImages) else None
            content = stored.get(post_id)
            changed = [] if content is None else differences(prep.record, compared, content, prep.emptied)
            if unreadable:
                self.warn(f"{location}: " + with_value("images not compared with the stored post", unreadable))
            if content is None or not changed:
                self.present(prep.order, key, post_id)
                continue
            if self.policy.update or content.erased:  # an erased post says so, whatever the policy
                why = content.kept_because(now) or (unreadable and "not updated, as its images cannot all be read")
            else:
                why = "kept the stored content (--update replaces the content of a post nobody has decided)"
            if why:
                self.keep(prep, post_id, changed, why)
                continue
            updates.append(_Update(prep, post_id, changed))
        return updates

    def warn_missing(self, prep: PreparedRecord) -> None:
        """A warning for each image of a stored record that was not found (``--missing-images skip``)."""
        for name in prep.missing:
            reason = "image not found; the post is stored without it (--missing-images skip)"
            self.warn(f"{prep.raw.location}: " + with_value(reason, name))

    def keep(self, prep: PreparedRecord, post_id: int, changed: list[str], why: str) -> None:
        """A record with other content than its stored post, which keeps its own: a warning, and
        its outcome says why."""
        self.report.kept += 1
        reason = with_value(f"differs from the stored post; {why}", ", ".join(changed))
        self.warn(f"{prep.raw.location}: {reason}")
        self.present(prep.order, (prep.record.source, prep.record.external_id), post_id, reason)

    def _update(self, updates: list[_Update]) -> None:
        """Replace the content of the posts in ``updates`` in one transaction, each in a
        savepoint, in post id order (concurrent writers lock posts in the same order)."""
        now = datetime.now(UTC)
        ready = []
        for item in updates:
            if item.prep.error:
                self.reject_prep(item.prep, f"{item.prep.error}; the stored post {item.post_id} was not updated")
            else:
                ready.append(item)
        ready.sort(key=lambda item: item.post_id)
        with writing(self.session_factory) as session:
            done = [self._update_one(session, item, now) for item in ready]
        for item, change in sorted(zip(ready, done, strict=True), key=lambda pair: pair[0].prep.order):
            key = (item.prep.record.source, item.prep.record.external_id)
            if change.replaced:
                self.warn_missing(item.prep)
                self.report.updated += 1
                self.report.updated_ids.append(item.post_id)
                self._outcome(item.prep.order, "updated", key, post_id=item.post_id)
            elif change.kept:  # the post changed hands (or status) since it was compared
                self.keep(item.prep, item.post_id, change.changed, change.kept)
            else:  # another run gave it this content meanwhile
                self.present(item.prep.order, key, item.post_id)

    def _update_one(self, session: Session, item: _Update, now: datetime) -> Change:
        prep = item.prep

        def media() -> list[tuple[int, str]]:
            ids = self._media_ids(session, prep.stored)
            return [(ids[img.sha256], name) for img, name in zip(prep.stored, _kept_names(prep), strict=True)]

        # the images as stored (with skip, those missing now may differ from when they were compared)
        images = RecordImages(tuple(img.sha256 for img in prep.stored), tuple(prep.missing))
        for _attempt in range(3):
            cache_before = dict(self.media_cache)
            try:
                with session.begin_nested():
                    return replace_content(
                        session, item.post_id, prep.record, images, _metadata(prep), media, ignore=prep.emptied,
                        location=prep.raw.location, by=self.by, now=now,
                    )  # fmt: skip
            except IntegrityError:  # an image another process stored meanwhile: found on the next try
                self.media_cache = cache_before
        raise IngestError(f"{prep.raw.location}: could not be updated after 3 attempts (concurrent writers)")

    @staticmethod
    def _existing_keys(session: Session, keys: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The stored posts among ``keys``: key → post id."""
        found: dict[tuple[str, str], int] = {}
        for start in range(0, len(keys), 400):
            part = keys[start : start + 400]
            if part:
                rows = session.execute(
                    select(Post.source, Post.external_id, Post.id).where(
                        tuple_(Post.source, Post.external_id).in_(part)
                    )
                )
                found.update({(r.source, r.external_id): r.id for r in rows})
        return found

    def _store(self, ready: list[PreparedRecord]) -> None:
        """Insert a chunk in one transaction with batched statements; if another process stored
        some of the same posts or images meanwhile, redo the chunk record by record."""
        cache_before = dict(self.media_cache)
        results: list[Post | None]
        try:
            with writing(self.session_factory) as session:
                results = list(self._insert_batch(session, ready))
        except (IntegrityError, OperationalError) as exc:
            if isinstance(exc, OperationalError) and not _is_deadlock(exc):
                raise
            self.media_cache = cache_before  # ids from the rolled-back transaction are void
            with writing(self.session_factory) as session:
                results = [self._insert_one(session, prep) for prep in ready]
        for prep, post in zip(ready, results, strict=True):
            key = (prep.record.source, prep.record.external_id)
            if post is None:  # another process stored it meanwhile
                self.present(prep.order, key, None)
                continue
            self.report.added += 1
            self.report.post_ids.append(post.id)
            self.stored_ids[key] = post.id
            self._outcome(prep.order, "created", key, post_id=post.id)

    def _insert_batch(self, session: Session, ready: list[PreparedRecord]) -> list[Post]:
        # Rows go in sorted by their unique keys, so that concurrent writers take locks in the
        # same order (no deadlocks on Postgres).
        self._media_ids(session, [img for prep in ready for img in prep.stored])
        ordered = sorted(ready, key=lambda p: (p.record.source, p.record.external_id))
        posts = {id(prep): self._post_row(prep) for prep in ordered}
        session.add_all(posts.values())
        session.flush()
        return [posts[id(prep)] for prep in ready]

    def _media_ids(self, session: Session, images: list[StoredImage]) -> dict[str, int]:
        """The media rows of ``images`` (sha256 → id), added where there are none yet. Each is
        looked up in this transaction, those cached from earlier chunks too: a purge
        (review/purge.py) may have removed their rows since."""
        wanted = {img.sha256: img for img in images}
        if wanted:
            for sha in wanted:
                self.media_cache.pop(sha, None)
            rows = session.execute(select(Media.sha256, Media.id).where(Media.sha256.in_(list(wanted))))
            self.media_cache.update({sha: media_id for sha, media_id in rows})
            new_media = [_media_row(wanted[sha]) for sha in sorted(wanted) if sha not in self.media_cache]
            session.add_all(new_media)
            session.flush()
            self.media_cache.update({m.sha256: m.id for m in new_media})
        return {sha: self.media_cache[sha] for sha in wanted}

    def _insert_one(self, session: Session, prep: PreparedRecord) -> Post | None:
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

    def _post_row(self, prep: PreparedRecord) -> Post:
        rec = prep.record
        post = Post(
            source=rec.source,
            external_id=rec.external_id,
            text=rec.text,
            author=rec.author,
            created_at=rec.created_at,
            meta=_metadata(prep),
            status=PostStatus.UNSCORED,
        )
        if rec.reports:  # a new post: its reports only count (review/reports.py has the rest of the rule)
            post.report_count = sum(r.count for r in rec.reports)
            post.reports = [
                PostReport(
                    kind=r.kind,
                    reason=r.reason,
                    count=r.count,
                    status_at_arrival=PostStatus.UNSCORED,
                    token_id=self.token_id,
                )  # fmt: skip
                for r in rec.reports
            ]
        post.media_links = [
            PostMedia(position=i, media_id=self.media_cache[img.sha256], original_name=name[-255:])
            for i, (img, name) in enumerate(zip(prep.stored, _kept_names(prep), strict=True))
        ]
        return post


@dataclass(frozen=True)
class _Update:
    """A record that differed from its stored post, which may take its content, and what differed
    then (the update compares again)."""

    prep: PreparedRecord
    post_id: int
    changed: list[str]


def _kept_names(prep: PreparedRecord) -> list[str]:
    """The names of the record's images that were stored (all but those missing, with skip)."""
    missing = set(prep.missing)
    return [name for name in prep.record.images if name not in missing]


def _metadata(prep: PreparedRecord) -> dict[str, Any]:
    """The post's metadata as stored: the record's, and the names of the images it lacks."""
    if not prep.missing:
        return prep.record.metadata
    return {**prep.record.metadata, MISSING_IMAGES_KEY: list(prep.missing)}


def _record_images(prep: PreparedRecord, max_bytes: int, skip_missing: bool) -> RecordImages | str:
    """Runs in a worker thread: the record's images (resolved) as they would be stored, to
    compare with a stored post's, or why one cannot be read."""
    attached = prep.raw.attachments
    blobs, missing = [], []
    for i, name in enumerate(prep.record.images):
        try:
            blobs.append(attached[name] if attached is not None else read_image_file(prep.image_paths[i], max_bytes))
        except MissingImageError as exc:
            if not skip_missing:
                return f"image {name!r}: {exc}"
            missing.append(name)
        except MediaError as exc:
            return f"image {name!r}: {exc}"
    return RecordImages.of(blobs, missing)

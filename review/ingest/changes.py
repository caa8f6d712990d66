"""A record for a post stored before: does its content differ, and may ``--update`` replace it?

The content compared is what a moderator sees of a post: its text, author, platform time and
images (their bytes, by sha256, in order; their file names do not count; with ``--missing-images
skip``, the names of those not found too). Metadata and reports are not compared. An image of
the record that cannot be read (gone since the first ingest while missing images are refused, or
a bad file) leaves the images uncompared, and such a record never replaces anything; an optional
field the record's value left empty (a date in another format) is not compared either.

Only a post nobody has decided may take new content: live, waiting in ``review.status.UPDATABLE``
(unscored or queued), with no standing decision (a decided post that reports sent back to the
queue keeps what its moderator saw) and no moderator's live claim. :func:`replace_content` is the
update itself, in the caller's transaction: it locks the post, reads it again and compares again
(what was read before the transaction may have changed), and only then writes. The post takes the
record's content; the image links it had go to ``replaced_media`` with the ``update`` event, whose
note says what changed and keeps the text, author, time and metadata it replaced (erasure clears
the note and follows ``replaced_media``: review/purge.py); the event names the newest verdict,
which stops being current (``review.verdicts``), and the post goes back to the scorer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from db.models import EventAction, Media, Post, PostMedia, ReplacedMedia, ReviewEvent, Verdict
from review import events
from review.events import NewEvent
from review.ingest.records import MISSING_IMAGES_KEY, PostRecord, missing_images
from review.labels import standing_decisions
from review.status import UPDATABLE
from review.text import one_line

NOTE_TEXT_CHARS = 2000  # of the replaced text (and metadata, as JSON) kept in the update event's note


@dataclass(frozen=True)
class StoredContent:
    """What is stored of a post, as compared with a record, and whether it may be replaced."""

    post_id: int
    text: str
    author: str | None
    created_at: datetime | None
    metadata: dict[str, Any]
    images: tuple[tuple[str, str | None], ...]  # (sha256, the name it came under), in order
    missing: tuple[str, ...]  # the names of images not found when it was stored (--missing-images skip)
    status: str
    claimed_until: datetime | None  # a moderator's claim (live when after now)
    erased: bool
    decided: bool  # a standing decision (confirm / overturn) on it, whatever its status now

    def kept_because(self, now: datetime) -> str | None:
        """Why an update may not replace this post's content now; None when it may."""
        if self.erased:
            return "the stored post was erased, and an erased post is never restored"
        if self.status not in UPDATABLE:
            return f"the stored post is {self.status.replace('_', ' ')}: its decision stands on what the moderator saw"
        if self.decided:
            return "the stored post was decided before reports sent it back: that decision stands on what was seen"
        if self.claimed_until is not None and self.claimed_until > now:
            return "a moderator is reviewing the stored post now (ingest again with --update once it is released)"
        return None


@dataclass(frozen=True)
class RecordImages:
    """A record's images as they would be stored: the sha256 of those read, in order, and the
    names of those not found (skipped with ``--missing-images skip``; none otherwise)."""

    hashes: tuple[str, ...]
    missing: tuple[str, ...] = ()

    @classmethod
    def of(cls, blobs: Iterable[bytes], missing: Iterable[str] = ()) -> RecordImages:
        return cls(tuple(hashlib.sha256(data).hexdigest() for data in blobs), tuple(missing))


@dataclass(frozen=True)
class Change:
    """What :func:`replace_content` found and did: the fields that differ (none: the post has
    the record's content already) and why it kept the stored content (None: replaced)."""

    changed: list[str]
    kept: str | None = None

    @property
    def replaced(self) -> bool:
        return bool(self.changed) and self.kept is None


def stored_content(session: Session, post_ids: Iterable[int], *, lock: bool = False) -> dict[int, StoredContent]:
    """The stored content of ``post_ids``, by post id; ``lock``: their rows locked for an update
    (Postgres; SQLite's writing transaction holds the database)."""
    ids = list(post_ids)
    out: dict[int, StoredContent] = {}
    for start in range(0, len(ids), 400):
        part = ids[start : start + 400]
        query = select(
            Post.id, Post.text, Post.author, Post.created_at, Post.meta, Post.status, Post.claimed_by_id,
            Post.lease_expires_at, Post.purged_at,
        ).where(Post.id.in_(part))  # fmt: skip
        posts = session.execute(query.with_for_update(of=Post) if lock else query).all()
        images: dict[int, list[tuple[str, str | None]]] = {post_id: [] for post_id in part}
        for post_id, sha, name in session.execute(
            select(PostMedia.post_id, Media.sha256, PostMedia.original_name)
            .join(Media, Media.id == PostMedia.media_id)
            .where(PostMedia.post_id.in_(part))
            .order_by(PostMedia.post_id, PostMedia.position)
        ):
            images[post_id].append((sha, name))
        decided = set(
            session.scalars(select(ReviewEvent.post_id).where(ReviewEvent.post_id.in_(part), standing_decisions()))
        )
        for post in posts:
            out[post.id] = StoredContent(
                post_id=post.id,
                text=post.text,
                author=post.author,
                created_at=post.created_at,
                metadata=post.meta if isinstance(post.meta, dict) else {},
                images=tuple(images[post.id]),
                missing=tuple(missing_images(post.meta)),
                status=post.status,
                claimed_until=post.lease_expires_at if post.claimed_by_id is not None else None,
                erased=post.purged_at is not None,
                decided=post.id in decided,
            )
    return out


def differences(
    record: PostRecord, images: RecordImages | None, stored: StoredContent, ignore: Collection[str] = ()
) -> list[str]:
    """The fields in which ``record`` differs from ``stored``: text, author, created_at, images
    (``images``: None when they could not be read, and then not compared; ``ignore``: the
    optional fields the record's value left empty, not compared)."""
    changed = []
    if record.text != stored.text:
        changed.append("text")
    if "author" not in ignore and (record.author or None) != (stored.author or None):
        changed.append("author")
    if "created_at" not in ignore and _utc(record.created_at) != _utc(stored.created_at):
        changed.append("created_at")
    if images is not None and (
        images.hashes != tuple(sha for sha, _ in stored.images) or images.missing != stored.missing
    ):
        changed.append("images")
    return changed


def replace_content(
    session: Session,
    post_id: int,
    record: PostRecord,
    images: RecordImages,
    metadata: dict[str, Any],
    media_of: Callable[[], Sequence[tuple[int, str]]],
    *,
    ignore: Collection[str] = (),
    location: str,
    by: int | None,
    now: datetime,
) -> Change:
    """Give ``post_id`` the record's content if it differs and the post may take it: its row
    locked, read and compared again in this transaction. ``images``: the record's images as
    stored; ``media_of()``, called only once the update is sure, gives their media rows (id, name)
    in order; ``metadata``: as it is to be stored; ``ignore``: optional fields left as they are
    (the record's value for them was left empty)."""
    stored = stored_content(session, [post_id], lock=True).get(post_id)
    if stored is None:
        return Change([], None)
    changed = differences(record, images, stored, ignore)
    if not changed:
        return Change([], None)
    kept = stored.kept_because(now)
    if kept:
        return Change(changed, kept)
    values: dict[str, Any] = {"text": record.text, "author": record.author, "created_at": record.created_at}
    for name in ignore:
        values.pop(name, None)
    session.execute(
        update(Post)
        .where(Post.id == post_id)
        .values(
            **values,
            meta=metadata,
            # the verdict was about the old content: none is current until the scorer answers again
            verdict_id=None,
            verdict_category=None,
            verdict_violation=None,
            claimed_by_id=None,  # an expired claim on the old content
            lease_expires_at=None,
            score_lease_owner=None,  # a worker scoring the old content stores nothing (review/scoring.py)
            score_lease_expires_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    newest = session.scalar(select(func.max(Verdict.id)).where(Verdict.post_id == post_id))
    note = update_note(stored, changed, location, metadata)
    event = events.write(session, NewEvent(post_id, by, EventAction.UPDATE, now, note=note, verdict_id=newest))
    old_links = session.execute(
        select(PostMedia.position, PostMedia.media_id, PostMedia.original_name).where(PostMedia.post_id == post_id)
    ).all()
    session.add_all(
        ReplacedMedia(event_id=event.id, position=position, post_id=post_id, media_id=media_id, original_name=name)
        for position, media_id, name in old_links
    )
    session.execute(delete(PostMedia).where(PostMedia.post_id == post_id))
    session.add_all(
        PostMedia(post_id=post_id, position=i, media_id=media_id, original_name=name[-255:])
        for i, (media_id, name) in enumerate(media_of())
    )
    return Change(changed, None)


def update_note(stored: StoredContent, changed: Sequence[str], location: str, metadata: dict[str, Any]) -> str:
    """The update event's note: where the new content came from, what changed, and the content
    it replaced (the text and the metadata, as JSON, cut to NOTE_TEXT_CHARS; images by name and
    the start of their sha256, all of them kept in ``replaced_media``)."""
    before = []
    if "text" in changed:
        before.append(f"text: {_cut(stored.text)!r}" if stored.text else "text: (none)")
    if "author" in changed:
        before.append(f"author: {stored.author!r}" if stored.author else "author: (none)")
    if "created_at" in changed:
        before.append(f"created_at: {stored.created_at.isoformat() if stored.created_at else '(none)'}")
    if "images" in changed:
        names = ", ".join(f"{one_line(name or '?', 120)} ({sha[:12]})" for sha, name in stored.images)
        missing = ", ".join(one_line(name, 120) for name in stored.missing)
        before.append(f"images: {names or '(none)'}" + (f"; not found then: {missing}" if missing else ""))
    old_meta, new_meta = _platform_metadata(stored.metadata), _platform_metadata(metadata)
    if old_meta != new_meta:
        before.append(f"metadata: {_cut(json.dumps(old_meta, ensure_ascii=False, sort_keys=True))}")
    return f"content replaced by ingest from {one_line(location, 200)} ({', '.join(changed)} changed); before: " + (
        "; ".join(before)
    )


def _platform_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata without the names of missing images (the images' part of the note has them)."""
    return {key: value for key, value in metadata.items() if key != MISSING_IMAGES_KEY}


def _cut(text: str) -> str:
    return text if len(text) <= NOTE_TEXT_CHARS else text[:NOTE_TEXT_CHARS] + " …"


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

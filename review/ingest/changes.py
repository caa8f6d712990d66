"""A record for a post stored before: does its content differ, and may ``--update`` replace it?

The content compared is what a moderator sees of a post: its text, author, platform time and
images (their bytes, by sha256, in order; their file names do not count; with ``--missing-images
skip``, the names of those not found too). Metadata and reports are not compared. An image of
the record that cannot be read (gone since the first ingest while missing images are refused, or
a bad file) leaves the images uncompared, and such a record never replaces anything.

:func:`replace_content` is the update itself, in the caller's transaction: on the condition that
the post is still live, undecided (``review.status.UPDATABLE``) and held by no moderator's live
claim, the post takes the record's content, the old verdict stops being its current one (the
post goes back to the scorer), and an ``update`` event in the post's history says what changed
and keeps what it replaced, in its note (erasure clears notes with the rest: review/purge.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from db.models import LIVE_POST, EventAction, Media, Post, PostMedia
from db.session import rows_changed
from review import events
from review.events import NewEvent
from review.ingest.records import PostRecord, missing_images
from review.status import UPDATABLE
from review.text import one_line

NOTE_TEXT_CHARS = 2000  # of the replaced text kept in the update event's note


@dataclass(frozen=True)
class StoredContent:
    """What is stored of a post, as compared with a record, and whether it may be replaced."""

    post_id: int
    text: str
    author: str | None
    created_at: datetime | None
    images: tuple[tuple[str, str | None], ...]  # (sha256, the name it came under), in order
    missing: tuple[str, ...]  # the names of images not found when it was stored (--missing-images skip)
    status: str
    claimed_until: datetime | None  # a moderator's claim (live when after now)
    erased: bool

    def kept_because(self, now: datetime) -> str | None:
        """Why an update may not replace this post's content now; None when it may."""
        if self.erased:
            return "the stored post was erased, and an erased post is never restored"
        if self.status not in UPDATABLE:
            return f"the stored post is {self.status.replace('_', ' ')}: its decision stands on what the moderator saw"
        if self.claimed_until is not None and self.claimed_until > now:
            return "a moderator is reviewing the stored post now (ingest again with --update once it is released)"
        return None


def stored_content(session: Session, post_ids: Iterable[int]) -> dict[int, StoredContent]:
    """The stored content of ``post_ids``, by post id."""
    ids = list(post_ids)
    out: dict[int, StoredContent] = {}
    for start in range(0, len(ids), 400):
        part = ids[start : start + 400]
        images: dict[int, list[tuple[str, str | None]]] = {post_id: [] for post_id in part}
        for post_id, sha, name in session.execute(
            select(PostMedia.post_id, Media.sha256, PostMedia.original_name)
            .join(Media, Media.id == PostMedia.media_id)
            .where(PostMedia.post_id.in_(part))
            .order_by(PostMedia.post_id, PostMedia.position)
        ):
            images[post_id].append((sha, name))
        for post in session.execute(
            select(Post.id, Post.text, Post.author, Post.created_at, Post.meta, Post.status, Post.claimed_by_id,
                   Post.lease_expires_at, Post.purged_at).where(Post.id.in_(part))
        ):  # fmt: skip
            out[post.id] = StoredContent(
                post_id=post.id,
                text=post.text,
                author=post.author,
                created_at=post.created_at,
                images=tuple(images[post.id]),
                missing=tuple(missing_images(post.meta)),
                status=post.status,
                claimed_until=post.lease_expires_at if post.claimed_by_id is not None else None,
                erased=post.purged_at is not None,
            )
    return out


@dataclass(frozen=True)
class RecordImages:
    """A record's images as they would be stored: the sha256 of those read, in order, and the
    names of those not found (skipped with ``--missing-images skip``; none otherwise)."""

    hashes: tuple[str, ...]
    missing: tuple[str, ...] = ()

    @classmethod
    def of(cls, blobs: Iterable[bytes], missing: Iterable[str] = ()) -> RecordImages:
        return cls(tuple(hashlib.sha256(data).hexdigest() for data in blobs), tuple(missing))


def differences(record: PostRecord, images: RecordImages | None, stored: StoredContent) -> list[str]:
    """The fields in which ``record`` differs from ``stored``: text, author, created_at, images
    (``images``: None when they could not be read, and then not compared)."""
    changed = []
    if record.text != stored.text:
        changed.append("text")
    if (record.author or None) != (stored.author or None):
        changed.append("author")
    if _utc(record.created_at) != _utc(stored.created_at):
        changed.append("created_at")
    if images is not None and (
        images.hashes != tuple(sha for sha, _ in stored.images) or images.missing != stored.missing
    ):
        changed.append("images")
    return changed


def replace_content(
    session: Session,
    stored: StoredContent,
    record: PostRecord,
    metadata: dict[str, object],
    media: Sequence[tuple[int, str]],
    changed: Sequence[str],
    *,
    location: str,
    by: int | None,
    now: datetime,
) -> bool:
    """Give the post ``record``'s content (``media``: (media id, name) in order; ``metadata`` as
    it is to be stored) and write the ``update`` event; False, and nothing written, when the post
    is no longer free to update (decided, claimed or erased since it was read)."""
    moved = rows_changed(
        session,
        update(Post)
        .where(
            Post.id == stored.post_id,
            LIVE_POST,
            Post.status.in_([str(s) for s in UPDATABLE]),
            or_(Post.claimed_by_id.is_(None), Post.lease_expires_at <= now),
        )
        .values(
            text=record.text,
            author=record.author,
            created_at=record.created_at,
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
        .execution_options(synchronize_session=False),
    )
    if moved != 1:
        return False
    session.execute(delete(PostMedia).where(PostMedia.post_id == stored.post_id))
    session.add_all(
        PostMedia(post_id=stored.post_id, position=i, media_id=media_id, original_name=name[-255:])
        for i, (media_id, name) in enumerate(media)
    )
    note = update_note(stored, changed, location)
    events.write(session, NewEvent(stored.post_id, by, EventAction.UPDATE, now, note=note))
    return True


def update_note(stored: StoredContent, changed: Sequence[str], location: str) -> str:
    """The update event's note: where the new content came from, what changed, and the content
    it replaced (the text cut to NOTE_TEXT_CHARS; images by name and the start of their sha256)."""
    before = []
    if "text" in changed:
        text = stored.text if len(stored.text) <= NOTE_TEXT_CHARS else stored.text[:NOTE_TEXT_CHARS] + " …"
        before.append(f"text: {text!r}" if text else "text: (none)")
    if "author" in changed:
        before.append(f"author: {stored.author!r}" if stored.author else "author: (none)")
    if "created_at" in changed:
        before.append(f"created_at: {stored.created_at.isoformat() if stored.created_at else '(none)'}")
    if "images" in changed:
        names = ", ".join(f"{one_line(name or '?', 120)} ({sha[:12]})" for sha, name in stored.images)
        missing = ", ".join(one_line(name, 120) for name in stored.missing)
        before.append(f"images: {names or '(none)'}" + (f"; not found then: {missing}" if missing else ""))
    return f"content replaced by ingest from {one_line(location, 200)} ({', '.join(changed)} changed); before: " + (
        "; ".join(before)
    )


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

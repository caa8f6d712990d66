"""Read-only post listing for the post browser: filters, text search, keyset paging.

Pages are ordered newest-ingested first by post id, and paged by id (keyset), so a page costs
the same on the first and the thousandth page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from db.models import Media, Post, PostMedia


@dataclass(frozen=True)
class PostFilter:
    search: str = ""  # case-insensitive substring of text, external id or author
    source: str | None = None
    status: str | None = None

    def apply(self, query: Select) -> Select:  # type: ignore[type-arg]
        if self.search.strip():
            needle = self.search.strip()
            query = query.where(
                or_(
                    Post.text.icontains(needle, autoescape=True),
                    Post.external_id.icontains(needle, autoescape=True),
                    Post.author.icontains(needle, autoescape=True),
                )
            )
        if self.source:
            query = query.where(Post.source == self.source)
        if self.status:
            query = query.where(Post.status == self.status)
        return query


@dataclass(frozen=True)
class MediaRow:
    thumb_path: str
    path: str
    mime: str
    width: int
    height: int
    frames: int


@dataclass(frozen=True)
class PostRow:
    id: int
    source: str
    external_id: str
    text: str
    author: str | None
    created_at: datetime | None
    ingested_at: datetime
    status: str
    media: list[MediaRow] = field(default_factory=list)


@dataclass(frozen=True)
class PostPage:
    rows: list[PostRow]
    has_newer: bool  # a page before this one exists
    has_older: bool  # a page after this one exists

    @property
    def first_id(self) -> int | None:
        return self.rows[0].id if self.rows else None

    @property
    def last_id(self) -> int | None:
        return self.rows[-1].id if self.rows else None


def list_posts(
    session: Session,
    flt: PostFilter,
    *,
    older_than: int | None = None,
    newer_than: int | None = None,
    limit: int = 20,
) -> PostPage:
    """One page of posts, newest first. Pass the last id of a page as ``older_than`` for the
    next page, or the first id as ``newer_than`` for the previous one."""
    query = flt.apply(select(Post))
    if newer_than is not None:
        query = query.where(Post.id > newer_than).order_by(Post.id.asc())
    else:
        if older_than is not None:
            query = query.where(Post.id < older_than)
        query = query.order_by(Post.id.desc())
    posts = list(session.scalars(query.limit(limit + 1)))
    more = len(posts) > limit
    posts = posts[:limit]
    if newer_than is not None:
        posts.reverse()
    media = _media_for(session, [p.id for p in posts])
    rows = [
        PostRow(
            id=p.id,
            source=p.source,
            external_id=p.external_id,
            text=p.text,
            author=p.author,
            created_at=p.created_at,
            ingested_at=p.ingested_at,
            status=p.status,
            media=media.get(p.id, []),
        )
        for p in posts
    ]
    if newer_than is not None:
        has_newer, has_older = more, bool(rows) and _exists(session, flt, older_than=rows[-1].id)
    else:
        has_newer = bool(rows) and _exists(session, flt, newer_than=rows[0].id)
        has_older = more
    return PostPage(rows=rows, has_newer=has_newer, has_older=has_older)


def _exists(session: Session, flt: PostFilter, *, older_than: int | None = None, newer_than: int | None = None) -> bool:
    query = flt.apply(select(Post.id))
    if older_than is not None:
        query = query.where(Post.id < older_than)
    if newer_than is not None:
        query = query.where(Post.id > newer_than)
    return session.scalar(query.limit(1)) is not None


def _media_for(session: Session, post_ids: list[int]) -> dict[int, list[MediaRow]]:
    if not post_ids:
        return {}
    rows = session.execute(
        select(PostMedia.post_id, Media.thumb_path, Media.path, Media.mime, Media.width, Media.height, Media.frames)
        .join(Media, Media.id == PostMedia.media_id)
        .where(PostMedia.post_id.in_(post_ids))
        .order_by(PostMedia.post_id, PostMedia.position)
    )
    out: dict[int, list[MediaRow]] = {}
    for r in rows:
        out.setdefault(r.post_id, []).append(MediaRow(r.thumb_path, r.path, r.mime, r.width, r.height, r.frames))
    return out


def count_posts(session: Session, flt: PostFilter) -> int:
    return session.scalar(flt.apply(select(func.count(Post.id)))) or 0


def facet_counts(session: Session) -> dict[str, dict[str, int]]:
    """Posts per source and per status, for the filter widgets."""
    sources = session.execute(select(Post.source, func.count()).group_by(Post.source).order_by(Post.source))
    statuses = session.execute(select(Post.status, func.count()).group_by(Post.status).order_by(Post.status))
    return {"source": {s: n for s, n in sources}, "status": {s: n for s, n in statuses}}

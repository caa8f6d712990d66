"""Read-only post listing for the post browser: filters, text search, keyset paging.

Pages are ordered newest-ingested first by post id, and paged by id (keyset), so a page costs
the same on the first and the thousandth page. Each post comes with its latest verdict and,
per image, its signals (OCR text, NSFW score, near-duplicate cluster and its size) and whether
it is shown blurred. Both readers take the :class:`~review.visibility.Viewer`: a verdict the
viewer may not see (a blind second review) is left out here, with ``verdict_hidden`` set, and
the blur of its images does not name the verdict's category.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from db.models import Media, Post, PostMedia
from db.session import db_text
from review.ingest.records import missing_images
from review.policy import Policy, load_policy
from review.signals.nsfw import blur_reason
from review.signals.runner import load_media_signals
from review.verdicts import current_verdicts, is_usable
from review.visibility import HIDDEN_BLUR, Viewer, sights


@dataclass(frozen=True)
class PostFilter:
    """What people type or paste is compared without the characters no stored text holds (a NUL,
    lone surrogates: ``db.session.db_text``); Postgres would refuse the query otherwise."""

    search: str = ""  # case-insensitive substring of text, external id or author
    source: str | None = None
    status: str | None = None

    def apply(self, query: Select) -> Select:
        needle = db_text(self.search).strip()
        if needle:
            query = query.where(
                or_(
                    Post.text.icontains(needle, autoescape=True),
                    Post.external_id.icontains(needle, autoescape=True),
                    Post.author.icontains(needle, autoescape=True),
                )
            )
        if self.source:
            query = query.where(Post.source == db_text(self.source))
        if self.status:
            query = query.where(Post.status == db_text(self.status))
        return query


@dataclass(frozen=True)
class MediaRow:
    thumb_path: str
    path: str
    mime: str
    width: int
    height: int
    frames: int
    ocr_text: str = ""
    nsfw: float | None = None
    similar_posts: int = 0  # other posts with an image in its near-duplicate cluster
    blur: str | None = None  # why it is blurred until revealed (None: shown plainly)
    signal_errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class VerdictRow:
    provider: str
    model_id: str
    prompt_version: str
    parse_status: str
    violation: bool | None
    category: str | None
    severity: int | None
    confidence: float | None
    rationale: str | None
    error: str | None
    cache_hit: bool
    id: int = 0
    description: str | None = None
    image_text_consistency: str | None = None
    consistency_reason: str | None = None
    sentiment: str | None = None
    tags: tuple[str, ...] = ()
    created_at: datetime | None = None
    model_precision: str | None = None  # float32, bfloat16, int8-dynamic, int8-bnb; None: not recorded

    @property
    def usable(self) -> bool:
        return is_usable(self.parse_status)

    @property
    def provenance(self) -> str:
        """Where the verdict came from, in one line, e.g. "transformers · Qwen/Qwen3-VL-2B-Instruct ·
        int8-dynamic · prompt moderation@1a2b3c4d5e6f": the precision only when recorded, so that a
        lead can tell an int8 verdict from a full-precision one."""
        source = "baseline rules, not a model" if self.provider == "baseline" else self.provider
        parts = [source, self.model_id, self.model_precision, f"prompt {self.prompt_version}"]
        cached = " · reused from the duplicate cache" if self.cache_hit else ""
        return " · ".join(p for p in parts if p) + cached

    @property
    def badge(self) -> str:
        """One line for a table cell, e.g. "⚠ fraud_spam 0.95 · baseline"."""
        who = " · baseline" if self.provider == "baseline" else ""
        if not self.usable:
            return f"✗ model failure ({self.parse_status}){who}"
        label = f"⚠ {self.category}" if self.violation else "✓ no violation"
        return f"{label} {self.confidence:.2f}{who}"


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
    verdict: VerdictRow | None = None  # None: not scored, or hidden from this viewer (``verdict_hidden``)
    verdict_hidden: bool = False  # the viewer may not see it until the post's second review is done
    missing_images: list[str] = field(default_factory=list)  # named by its record, not found (ingest skip)


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
    viewer: Viewer,
    flt: PostFilter,
    *,
    older_than: int | None = None,
    newer_than: int | None = None,
    limit: int = 20,
    policy: Policy | None = None,
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
    rows = _rows(session, viewer, posts, policy)
    if newer_than is not None:
        has_newer, has_older = more, bool(rows) and _exists(session, flt, older_than=rows[-1].id)
    else:
        has_newer = bool(rows) and _exists(session, flt, newer_than=rows[0].id)
        has_older = more
    return PostPage(rows=rows, has_newer=has_newer, has_older=has_older)


def get_posts(
    session: Session, viewer: Viewer, post_ids: list[int], policy: Policy | None = None, *, reviewing: bool = False
) -> dict[int, PostRow]:
    """The posts ``post_ids`` (those that exist) with their verdicts and media, by id.
    ``reviewing``: the post under review on the viewer's review desk (``review.visibility``)."""
    posts = list(session.scalars(select(Post).where(Post.id.in_(post_ids))))
    return {row.id: row for row in _rows(session, viewer, posts, policy, reviewing=reviewing)}


def _rows(
    session: Session, viewer: Viewer, posts: list[Post], policy: Policy | None, *, reviewing: bool = False
) -> list[PostRow]:
    ids = [p.id for p in posts]
    verdicts = _current_verdicts(session, ids)
    hidden = {
        post_id for post_id, seen in sights(session, viewer, ids, reviewing=reviewing).items() if seen.verdict_hidden
    }
    media = _media_for(session, ids, verdicts, policy or load_policy())
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
            verdict=verdicts.get(p.id),
            missing_images=missing_images(p.meta),
        )
        for p in posts
    ]
    return [withheld(row) if row.id in hidden else row for row in rows]


def withheld(row: PostRow) -> PostRow:
    """``row`` without its verdict, for a viewer who may not see it (``review.visibility``): no
    verdict, and blurred images that do not say which category blurred them."""
    media = [replace(m, blur=HIDDEN_BLUR) if m.blur is not None else m for m in row.media]
    return replace(row, verdict=None, verdict_hidden=True, media=media)


def _exists(session: Session, flt: PostFilter, *, older_than: int | None = None, newer_than: int | None = None) -> bool:
    query = flt.apply(select(Post.id))
    if older_than is not None:
        query = query.where(Post.id < older_than)
    if newer_than is not None:
        query = query.where(Post.id > newer_than)
    return session.scalar(query.limit(1)) is not None


def _current_verdicts(session: Session, post_ids: list[int]) -> dict[int, VerdictRow]:
    return {
        post_id: VerdictRow(
            provider=v.provider,
            model_id=v.model_id,
            prompt_version=v.prompt_version,
            parse_status=v.parse_status,
            violation=v.violation,
            category=v.category,
            severity=v.severity,
            confidence=v.confidence,
            rationale=v.rationale,
            error=v.error,
            cache_hit=v.cache_hit,
            id=v.id,
            description=v.description,
            image_text_consistency=v.image_text_consistency,
            consistency_reason=v.consistency_reason,
            sentiment=v.sentiment,
            tags=tuple(v.tags or ()),
            created_at=v.created_at,
            model_precision=v.model_precision,
        )
        for post_id, v in current_verdicts(session, post_ids).items()
    }


def _media_for(
    session: Session, post_ids: list[int], verdicts: dict[int, VerdictRow], policy: Policy
) -> dict[int, list[MediaRow]]:
    if not post_ids:
        return {}
    rows = list(
        session.execute(
            select(
                PostMedia.post_id,
                Media.id,
                Media.thumb_path,
                Media.path,
                Media.mime,
                Media.width,
                Media.height,
                Media.frames,
                Media.dup_cluster,
            )  # fmt: skip
            .join(Media, Media.id == PostMedia.media_id)
            .where(PostMedia.post_id.in_(post_ids))
            .order_by(PostMedia.post_id, PostMedia.position)
        )
    )
    signals = load_media_signals(session, [r.id for r in rows])
    clusters = {r.dup_cluster for r in rows if r.dup_cluster is not None}
    sizes: dict[int, int] = {}
    if clusters:
        query = (
            select(Media.dup_cluster, func.count(func.distinct(PostMedia.post_id)))
            .join(PostMedia, PostMedia.media_id == Media.id)
            .where(Media.dup_cluster.in_(clusters))
            .group_by(Media.dup_cluster)
        )
        sizes = {cluster: n for cluster, n in session.execute(query) if cluster is not None}
    out: dict[int, list[MediaRow]] = {}
    for r in rows:
        found = signals[r.id]
        verdict = verdicts.get(r.post_id)
        category = verdict.category if verdict is not None and verdict.usable else None
        out.setdefault(r.post_id, []).append(
            MediaRow(
                r.thumb_path,
                r.path,
                r.mime,
                r.width,
                r.height,
                r.frames,
                ocr_text=found.ocr_text,
                nsfw=found.nsfw,
                similar_posts=max(0, sizes.get(r.dup_cluster, 1) - 1),
                blur=blur_reason(found.nsfw, category, policy),
                signal_errors=found.errors,
            )  # fmt: skip
        )
    return out


def count_posts(session: Session, flt: PostFilter) -> int:
    return session.scalar(flt.apply(select(func.count(Post.id)))) or 0


def facet_counts(session: Session) -> dict[str, dict[str, int]]:
    """Posts per source and per status, for the filter widgets."""
    sources = session.execute(select(Post.source, func.count()).group_by(Post.source).order_by(Post.source))
    statuses = session.execute(select(Post.status, func.count()).group_by(Post.status).order_by(Post.status))
    return {"source": {s: n for s, n in sources}, "status": {s: n for s, n in statuses}}

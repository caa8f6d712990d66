"""A post as the model is shown it: its text, its images in order with the signals read in them
(:func:`load_inputs`, for the scoring worker and follow-up questions), and the text as the
duplicate cache and the export compare it (:func:`normalise_text`).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Media, Post, PostMedia
from review.inference.base import PostSignals
from review.signals.runner import load_media_signals


def normalise_text(text: str) -> str:
    """The text as the cache compares it: NFKC, whitespace collapsed, case folded."""
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold()


class PostImage(NamedTuple):
    media_id: int
    sha256: str
    path: str  # under MEDIA_DIR
    phash: str
    dup_cluster: int | None  # near-duplicate cluster (None until the signals step ran)
    ocr_text: str = ""  # from the signals step ("" when none was read or not run yet)


@dataclass(frozen=True)
class PostInput:
    post_id: int
    text: str
    media: list[PostImage]  # in order
    signals: PostSignals = field(default_factory=PostSignals)


def load_inputs(session: Session, post_ids: list[int]) -> list[PostInput]:
    posts = {p.id: p for p in session.scalars(select(Post).where(Post.id.in_(post_ids)))}
    rows = list(
        session.execute(
            select(PostMedia.post_id, Media.id, Media.sha256, Media.path, Media.phash, Media.dup_cluster)
            .join(Media, Media.id == PostMedia.media_id)
            .where(PostMedia.post_id.in_(post_ids))
            .order_by(PostMedia.post_id, PostMedia.position)
        )
    )
    found = load_media_signals(session, [r.id for r in rows])
    media: dict[int, list[PostImage]] = {}
    for r in rows:
        image = PostImage(r.id, r.sha256, r.path, r.phash, r.dup_cluster, found[r.id].ocr_text)
        media.setdefault(r.post_id, []).append(image)
    out = []
    for pid in post_ids:
        if pid in posts:
            images = media.get(pid, [])
            signals = PostSignals(
                text=posts[pid].text,
                ocr_texts=[m.ocr_text for m in images],
                nsfw_scores=[found[m.media_id].nsfw for m in images],
                missing=sum(m.dup_cluster is None for m in images),
            )
            out.append(PostInput(pid, posts[pid].text, images, signals))
    return out

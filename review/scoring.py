"""The scoring worker: claim unscored posts, reuse cached verdicts, ask the model, store verdicts.

Several workers (processes, machines) can share one database: each claims a batch of posts
with a lease (``post.score_lease_owner`` / ``score_lease_expires_at``; on Postgres with
``FOR UPDATE SKIP LOCKED``, on SQLite inside a ``BEGIN IMMEDIATE`` transaction). A worker that
dies (even ``kill -9``) leaves no half-written post: each post's verdict row and its status
change are one transaction, and its unfinished posts are claimed again when the lease ends.
A run that finds no free post while others are still leased (by a live worker or a dead one
whose lease has not ended) says how many and until when (``ScoreStats.leased_elsewhere``).

When the database goes away (a Postgres restart, a cut connection), the worker waits for it
with growing pauses (``db.session.retry_transient``, ``retry_wait`` seconds in all) and goes on
where it was: the batch whose verdicts were not saved is claimed again by the same worker (its
own leases count as free to it) and scored again; past the wait, the error is raised and the
CLI prints one line.

Every post ends with a verdict row: a parsed verdict (``ok`` / ``repaired``), or the raw output
and the reason it could not be used (``failed``), or the provider's error (``error``). Either
way the post moves to the moderators' queue; failures are marked and sorted first.

The duplicate cache: a post whose images (by sha256, in order) and normalised text were already
judged by the same model, adapter and prompt version reuses that verdict (a new row with
``cache_hit`` and ``cached_from_id``); with ``near_duplicates`` on, images within a perceptual
hash distance do too.
"""

from __future__ import annotations

import copy
import hashlib
import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from PIL import Image
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from db.models import LIVE_POST, Post, PostStatus, Verdict
from db.session import lease_rows, outage_reason, retry_transient, rows_changed, worker_name, writing
from review.config import Settings
from review.errors import MediaError
from review.inference.base import Generation, ModelRequest, PrecisionChanged, Provider
from review.inference.parsing import ParseResult, parse
from review.inference.schema import verdict_json_schema
from review.inputs import PostImage, PostInput, load_inputs, normalise_text
from review.media import load_normalised
from review.policy import Policy, load_policy
from review.priority import queue_priority
from review.prompts import moderation_prompt
from review.status import SCORED, next_status
from review.verdicts import is_usable, point_at, usable_sql

SCORE_LEASE = timedelta(minutes=10)


@dataclass
class ScoreStats:
    scored: int = 0  # verdicts stored (all kinds)
    model_calls: int = 0
    cache_hits: int = 0
    near_duplicate_hits: int = 0
    failed: int = 0  # parse failures and provider errors
    lost_leases: int = 0  # posts another worker finished first
    statuses: dict[str, int] = field(default_factory=dict)
    leased_elsewhere: int = 0  # at the end: unscored posts still leased by other workers (live or dead)
    leases_end: datetime | None = None  # when the last of those leases ends
    database_waits: int = 0  # pauses while the database was unreachable

    def summary(self) -> str:
        return (
            f"{self.scored} scored ({self.model_calls} newly answered, {self.cache_hits} from the cache"
            + (f" incl. {self.near_duplicate_hits} near-duplicates" if self.near_duplicate_hits else "")
            + f"), {self.failed} failed"
        )


# --------------------------------------------------------------------------------------------
# Leases


def lease_batch(sessions: sessionmaker[Session], worker: str, limit: int, lease: timedelta = SCORE_LEASE) -> list[int]:
    """Claim up to ``limit`` unscored posts whose lease is free, expired or already this
    worker's (a batch whose verdicts an outage kept from being saved); oldest first."""
    now = datetime.now(UTC)
    free = and_(
        Post.status == PostStatus.UNSCORED,
        LIVE_POST,  # an erased post has nothing left to score
        or_(
            Post.score_lease_expires_at.is_(None),
            Post.score_lease_expires_at < now,
            Post.score_lease_owner == worker,
        ),
    )
    with writing(sessions) as session:
        return lease_rows(
            session, Post.id, free, Post.id, limit, score_lease_owner=worker, score_lease_expires_at=now + lease
        )


def leased_elsewhere(session: Session, worker: str, now: datetime | None = None) -> tuple[int, datetime | None]:
    """Unscored posts whose lease another worker holds now: how many, and when the last lease ends."""
    now = now or datetime.now(UTC)
    count, last = session.execute(
        select(func.count(Post.id), func.max(Post.score_lease_expires_at)).where(
            Post.status == PostStatus.UNSCORED,
            LIVE_POST,
            Post.score_lease_expires_at >= now,
            or_(Post.score_lease_owner.is_(None), Post.score_lease_owner != worker),
        )
    ).one()
    return int(count or 0), last


def release_batch(sessions: sessionmaker[Session], worker: str, post_ids: list[int]) -> None:
    """Give back claimed posts that were not scored (on Ctrl-C or an error)."""
    if not post_ids:
        return
    with writing(sessions) as session:
        session.execute(
            update(Post)
            .where(Post.id.in_(post_ids), Post.score_lease_owner == worker, Post.status == PostStatus.UNSCORED)
            .values(score_lease_owner=None, score_lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )


# --------------------------------------------------------------------------------------------
# Inputs and the cache


def _hash(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ModelKey:
    """Everything about the model side that makes two verdicts comparable."""

    provider: str
    model_id: str
    model_revision: str | None
    adapter: str | None
    prompt_version: str
    precision: str | None = None  # the weights' precision, when the provider knows it

    def text_hash(self, post: PostInput) -> str:
        # an int8 verdict is no cached answer for a float32 run: the precision is part of the key
        # (when known; the verdicts of providers that cannot tell keep the key they had)
        model = (self.model_id, self.precision) if self.precision else self.model_id
        return _hash(self.provider, model, self.model_revision, self.adapter, self.prompt_version,
                     normalise_text(post.text))  # fmt: skip

    def input_hash(self, post: PostInput) -> str:
        return _hash(self.text_hash(post), [m.sha256 for m in post.media])

    def provenance(self, post: PostInput) -> dict[str, object]:
        """The columns every verdict row of ``post`` made under this key carries."""
        return {
            "post_id": post.post_id,
            "provider": self.provider,
            "model_id": self.model_id,
            "model_revision": self.model_revision,
            "model_precision": self.precision,
            "adapter": self.adapter,
            "prompt_version": self.prompt_version,
            "input_hash": self.input_hash(post),
            "text_hash": self.text_hash(post),
        }


def _hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def _squash(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split()).casefold()


def near_images(ours: list[PostImage], theirs: list[PostImage], max_distance: int) -> bool:
    """Two posts' images (in order) are the same pictures: each pair is in one near-duplicate
    cluster or within ``max_distance`` bits of perceptual hash, and the text read in them is the
    same (a repost that adds a caption bar "加微信 …" is a different post)."""
    return len(ours) == len(theirs) and all(
        ((a.dup_cluster is not None and a.dup_cluster == b.dup_cluster) or _hamming(a.phash, b.phash) <= max_distance)
        and _squash(a.ocr_text) == _squash(b.ocr_text)
        for a, b in zip(ours, theirs, strict=True)
    )


def find_cached(
    session: Session, key: ModelKey, post: PostInput, near_duplicates: bool, max_distance: int
) -> tuple[Verdict | None, bool]:
    """A usable earlier verdict for the same input: (verdict, found by near-duplicate)."""
    usable = usable_sql()
    exact = session.scalars(
        select(Verdict).where(Verdict.input_hash == key.input_hash(post), usable).order_by(Verdict.id).limit(1)
    ).first()
    if exact is not None or not near_duplicates or not post.media:
        return exact, False
    candidates = session.scalars(
        select(Verdict).where(Verdict.text_hash == key.text_hash(post), usable).order_by(Verdict.id).limit(50)
    )
    for candidate in candidates:
        found = load_inputs(session, [candidate.post_id])
        if found and near_images(post.media, found[0].media, max_distance):
            return candidate, True
    return None, False


# --------------------------------------------------------------------------------------------
# Storing


def _store(session: Session, worker: str, row: Verdict) -> bool:
    """Insert a verdict and move its post to the queue (by the status table: only an unscored post
    takes a verdict), if this worker still holds the post. Returns False (and writes nothing)
    when another worker finished the post first."""
    # the post's row, locked (Postgres; SQLite holds the write lock): a report cannot slip in unboosted
    reports = session.scalar(select(Post.report_count).where(Post.id == row.post_id).with_for_update()) or 0
    moved = rows_changed(
        session,
        update(Post)
        .where(Post.id == row.post_id, Post.status == PostStatus.UNSCORED, LIVE_POST, Post.score_lease_owner == worker)
        .values(
            status=next_status(PostStatus.UNSCORED, SCORED),
            priority=queue_priority(row, reports),
            score_lease_owner=None,
            score_lease_expires_at=None,
            updated_at=datetime.now(UTC),
        )
        .execution_options(synchronize_session=False),
    )
    if moved != 1:
        return False
    session.add(row)
    session.flush()  # the row's id
    point_at(session, row)
    return True


def verdict_row(post: PostInput, key: ModelKey, generation: Generation, result: ParseResult | None) -> Verdict:
    common = {
        **key.provenance(post),
        "raw_output": generation.text,
        "latency_ms": generation.latency_ms,
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.completion_tokens,
    }
    if result is None:  # the provider failed: nothing to parse
        return Verdict(**common, parse_status="error", error=generation.error, tags=[], parse_notes=[])
    notes = list(result.notes)
    if generation.finish_reason == "length":
        notes.append("the answer reached the token limit")
    if result.verdict is None:
        return Verdict(**common, parse_status="failed", error=result.error, tags=[], parse_notes=notes)
    v = result.verdict
    return Verdict(
        **common,
        parse_status=result.status,
        parse_notes=notes,
        violation=v.violation,
        category=v.category,
        severity=v.severity,
        confidence=v.confidence,
        image_text_consistency=v.image_text_consistency.label,
        consistency_reason=v.image_text_consistency.reason,
        sentiment=v.sentiment,
        tags=v.tags,
        ocr_text=v.ocr_text,
        description=v.description,
        rationale=v.rationale,
    )


def copy_of(cached: Verdict, post: PostInput, key: ModelKey) -> Verdict:
    """A new verdict row for ``post`` that reuses ``cached`` (and says so)."""
    fields = {  # fmt: skip
        c: getattr(cached, c)
        for c in (
            "violation",
            "category",
            "severity",
            "confidence",
            "image_text_consistency",
            "consistency_reason",
            "sentiment",
            "tags",
            "ocr_text",
            "description",
            "rationale",
            "raw_output",
            "parse_status",
            "parse_notes",
            "error",
        )
    }
    return Verdict(
        **key.provenance(post),
        cache_hit=True,
        cached_from_id=cached.id,
        latency_ms=0.0,
        prompt_tokens=0,
        completion_tokens=0,
        **fields,
    )


# --------------------------------------------------------------------------------------------
# The worker


@dataclass
class Scorer:
    sessions: sessionmaker[Session]
    settings: Settings
    provider: Provider
    batch_size: int = 4
    lease: timedelta = SCORE_LEASE
    near_duplicates: bool = False
    max_phash_distance: int = 8
    max_new_tokens: int = 768
    ocr_hints: bool = False  # give the model the OCR text of the images (part of the prompt version)
    retry_wait: float = 120.0  # seconds in all to wait for an unreachable database before giving up
    worker: str = field(default_factory=worker_name)
    policy: Policy = field(default_factory=load_policy)
    stats: ScoreStats = field(default_factory=ScoreStats)

    def _images(self, post: PostInput) -> list[Image.Image] | str:
        images = []
        folder, limit = Path(self.settings.media_dir), self.settings.max_image_pixels
        for image in post.media:
            try:
                images.append(load_normalised(folder, image.path, limit))
            except MediaError as exc:
                return f"image {image.path}: {exc}"
        return images

    def score_batch(self, post_ids: list[int]) -> None:
        with self.sessions() as session:
            posts = load_inputs(session, post_ids)
        schema = verdict_json_schema(self.policy)
        todo: list[tuple[PostInput, ModelKey, ModelRequest]] = []
        twins: dict[str, list[tuple[PostInput, ModelKey, bool]]] = {}  # (near) duplicates in this batch
        done: list[Verdict] = []
        with self.sessions() as session:
            for post in posts:
                prompt = moderation_prompt(post.text, len(post.media), policy=self.policy,
                                           ocr_hints="\n\n".join(t for t in post.signals.ocr_texts if t),
                                           use_ocr_hints=self.ocr_hints)  # fmt: skip
                # A provider that reads no prompt (the baseline) names its own version.
                version = self.provider.prompt_version or prompt.version
                key = ModelKey(self.provider.name, self.provider.model_id, self.provider.model_revision,
                               self.provider.adapter, version, self.provider.precision)  # fmt: skip
                cached, near = find_cached(session, key, post, self.near_duplicates, self.max_phash_distance)
                if cached is not None:
                    done.append(copy_of(cached, post, key))
                    self.stats.cache_hits += 1
                    self.stats.near_duplicate_hits += near
                    continue
                twin = self._twin_in_batch(post, key, todo)
                if twin is not None:
                    twins[twin[0]].append((post, key, twin[1]))
                    continue
                images = self._images(post)
                if isinstance(images, str):
                    done.append(verdict_row(post, key, Generation(text=None, error=images), None))
                    continue
                request = ModelRequest(prompt, images, schema, self.max_new_tokens, post.signals)
                todo.append((post, key, request))
                twins[key.input_hash(post)] = []
        if todo:
            generations = self.provider.generate([request for _, _, request in todo])
            self.stats.model_calls += len(todo)
            for (post, key, _), generation in zip(todo, generations, strict=True):
                result = None if generation.error else parse(generation.text, self.policy)
                done.append(verdict_row(post, key, generation, result))
        retry: list[int] = []  # near twins of an unusable answer: their own call, in a later batch
        with writing(self.sessions) as session:
            for row in done:
                if self._store(session, row):
                    session.flush()  # the row's id, for the copies made from it
                    # Exact twins had the very same input: under greedy decoding the model would
                    # answer the same, so they share the answer (a failure too) instead of a second
                    # call. Near twins share only a usable answer, as the cache does.
                    for post, key, near in twins.get(row.input_hash, []):
                        if near and not is_usable(row.parse_status):
                            retry.append(post.post_id)
                        elif self._store(session, copy_of(row, post, key)):
                            self.stats.cache_hits += 1
                            self.stats.near_duplicate_hits += near
        release_batch(self.sessions, self.worker, retry)

    def _twin_in_batch(
        self, post: PostInput, key: ModelKey, todo: list[tuple[PostInput, ModelKey, ModelRequest]]
    ) -> tuple[str, bool] | None:
        """(input hash, near) of a post already in this batch's model call whose answer this post
        can share: the same input, or (near-duplicates on) the same text and images within the
        distance."""
        for other, other_key, _ in todo:
            if other_key.input_hash(other) == key.input_hash(post):
                return other_key.input_hash(other), False
        if not self.near_duplicates or not post.media:
            return None
        for other, other_key, _ in todo:
            if other_key.text_hash(other) == key.text_hash(post) and near_images(
                post.media, other.media, self.max_phash_distance
            ):
                return other_key.input_hash(other), True
        return None

    def _store(self, session: Session, row: Verdict) -> bool:
        if not _store(session, self.worker, row):
            self.stats.lost_leases += 1
            return False
        self.stats.scored += 1
        self.stats.failed += not is_usable(row.parse_status)
        self.stats.statuses[row.parse_status] = self.stats.statuses.get(row.parse_status, 0) + 1
        return True

    def run(
        self,
        limit: int | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        on_batch: Callable[[int], None] | None = None,
    ) -> ScoreStats:
        """Score until no unscored post is left (or ``limit`` posts, or ``should_stop()``). When
        none is left to claim, ``stats.leased_elsewhere`` counts the posts other workers still
        hold. An unreachable database is waited for (``retry_wait`` seconds in all, from its
        first failure to its return)."""
        handled = 0
        while not should_stop() and (limit is None or handled < limit):
            want = self.batch_size if limit is None else min(self.batch_size, limit - handled)
            ids = retry_transient(partial(self._lease_and_score, want), max_wait=self.retry_wait,
                                  on_wait=self._waiting)  # fmt: skip
            if not ids:
                with self.sessions() as session:
                    self.stats.leased_elsewhere, self.stats.leases_end = leased_elsewhere(session, self.worker)
                break
            handled += len(ids)
            if on_batch:
                on_batch(len(ids))
        return self.stats

    def _waiting(self, _reason: str, _seconds: float) -> None:
        self.stats.database_waits += 1

    def _lease_and_score(self, want: int) -> list[int]:
        """One batch: claim, score, store. Safe to run again after an outage: nothing of a batch
        whose transaction failed is counted, and its posts stay this worker's to claim again."""
        ids = lease_batch(self.sessions, self.worker, want, self.lease)
        if not ids:
            return ids
        before = copy.deepcopy(self.stats)
        try:
            try:
                self.score_batch(ids)
            except PrecisionChanged:
                # Out of memory in the first batch: the model was loaded again in int8. The batch
                # again from the start, so that its cache keys and verdicts name the new precision
                # (and what it counted under the old one is not counted twice).
                self.stats = copy.deepcopy(before)
                self.score_batch(ids)
        except BaseException as exc:
            self.stats = before
            if isinstance(exc, Exception) and outage_reason(exc) is not None:
                raise  # no release: the database is gone, and the retry claims these posts again
            try:
                release_batch(self.sessions, self.worker, ids)
            except Exception as second:  # the first error is the one to report
                if outage_reason(second) is None:
                    raise
            raise
        return ids

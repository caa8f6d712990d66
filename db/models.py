"""The data model of the review desk (SQLAlchemy 2.0, typed ``Mapped[]`` columns).

The schema changes only through Alembic migrations in ``db/migrations/``; a test checks that
these models and the migrations agree. See ``docs/ARCHITECTURE.md`` for how each table is used.

Conventions:
- every timestamp is stored in UTC and comes back timezone-aware (``UTCDateTime``);
- JSON columns are JSONB on Postgres and JSON (text) on SQLite;
- ``verdict`` and ``review_event`` rows are never updated or deleted after insert.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite drops the offset otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; attach a timezone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


# Integer primary keys: BIGINT on Postgres (millions of events), INTEGER on SQLite so that the
# column is the rowid alias and autoincrements.
BigID = BigInteger().with_variant(Integer(), "sqlite")
MAX_ID = 2**63 - 1  # the largest BigID (BIGINT)


def as_id(text: str) -> int | None:
    """A row id as a person or a link writes it (ASCII digits, within BIGINT), or None: "²" and
    "٣" are digits to ``str.isdigit`` but not to ``int``, and a longer number overflows the column."""
    text = text.strip()
    if not (0 < len(text) <= 19 and text.isascii() and text.isdigit()) or int(text) > MAX_ID:
        return None
    return int(text)


JSONType = JSON().with_variant(JSONB(), "postgresql")

# Stable constraint names, so that migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class PostStatus(enum.StrEnum):
    """Where a post is in the flow: a projection of its verdicts and review events, by the table in
    review/status.py. "In review" is a live claim (``claimed_by_id`` and its lease), not a status."""

    UNSCORED = "unscored"
    QUEUED = "queued"
    DECIDED = "decided"
    ESCALATED = "escalated"
    SECOND_REVIEW = "second_review"  # decided, and drawn for a blind check by another moderator


class Role(enum.StrEnum):
    MODERATOR = "moderator"
    LEAD = "lead"
    ADMIN = "admin"


class EventAction(enum.StrEnum):
    CLAIM = "claim"
    RELEASE = "release"
    CONFIRM = "confirm"
    OVERTURN = "overturn"
    ESCALATE = "escalate"
    SKIP = "skip"
    REOPEN = "reopen"  # undo of a decision
    REQUEUE = "requeue"  # reports on a decided post sent it back to the queue (review/reports.py); no user
    # ingest --update replaced an undecided post's content (review/ingest/store.py); the note says
    # what changed and keeps what it replaced; its user: who ran the ingest (None: the command line)
    UPDATE = "update"


def _in(values: type[enum.StrEnum]) -> str:
    return ", ".join(f"'{v.value}'" for v in values)


class User(Base):
    __tablename__ = "app_user"  # "user" is a reserved word in Postgres

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))  # None: single sign-on only
    role: Mapped[str] = mapped_column(String(16), default=Role.MODERATOR)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Display preferences (review.auth.Preferences): blur of flagged images, greyscale.
    preferences: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

    __table_args__ = (CheckConstraint(f"role IN ({_in(Role)})", name="role"),)


CLAIMED = sql_text("claimed_by_id IS NOT NULL")


class Post(Base):
    __tablename__ = "post"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # on the platform
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=PostStatus.UNSCORED)
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    # Live moderator claim (lease); the events table holds the history of claims.
    claimed_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Scoring worker claim (lease): which worker is scoring the post, until when.
    score_lease_owner: Mapped[str | None] = mapped_column(String(64))
    score_lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The current (latest) verdict, set by scoring; its category and violation when it is usable
    # (NULL: unscored or a model failure), kept here so that queue filters use an index.
    verdict_id: Mapped[int | None] = mapped_column(BigInteger)
    verdict_category: Mapped[str | None] = mapped_column(String(64))
    verdict_violation: Mapped[bool | None] = mapped_column(Boolean)
    # While status is second_review: the moderator whose decision is being checked (never the checker).
    first_decider_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    # Erasure (review/purge.py): when the post's content was removed, and the audit event that
    # says who did it, why and what kinds of data went. The row stays as a tombstone, so that its
    # review events, labels and counts remain.
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    purge_event_id: Mapped[int | None] = mapped_column(ForeignKey("audit_event.id"))
    # Reports from the platform (review/reports.py): the sum of their counts, kept here for the
    # queue's priority and the Review page; the ``post_report`` rows hold each one.
    report_count: Mapped[int] = mapped_column(Integer, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    media_links: Mapped[list[PostMedia]] = relationship(
        back_populates="post", order_by="PostMedia.position", cascade="all, delete-orphan"
    )
    # the reports it came with (ingest writes them with the post; review/reports.py adds later ones)
    reports: Mapped[list[PostReport]] = relationship(order_by="PostReport.id", cascade="save-update")

    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        CheckConstraint(f"status IN ({_in(PostStatus)})", name="status"),
        # The review queue: next post by status, then priority (highest first), then age; the
        # same order within a category or a violation flag of the current verdict (filters).
        Index("ix_post_queue", "status", sql_text("priority DESC"), "id"),
        Index("ix_post_queue_category", "status", "verdict_category", sql_text("priority DESC"), "id"),
        Index("ix_post_queue_violation", "status", "verdict_violation", sql_text("priority DESC"), "id"),
        Index("ix_post_created_at", "created_at"),
        Index("ix_post_ingested_at", "ingested_at"),
        # a moderator's live claim, after a reload; partial: nearly every post has none, and a
        # full index with one value everywhere is one the planner rightly ignores
        Index("ix_post_claimed_by_id", "claimed_by_id", sqlite_where=CLAIMED, postgresql_where=CLAIMED),
    )


# The one "live post" rule: a post not erased (review/purge.py). An erased post keeps the status
# it had, so every query for work still to do (the queue, claims, decisions, undo, scoring, the
# backlog and unscored counts) adds this condition; here, beside the column, because every module
# that asks already imports Post from here (review.queue cannot be imported by review.scoring).
LIVE_POST = Post.purged_at.is_(None)


class Media(Base):
    """One image file, stored once under MEDIA_DIR by the sha256 of its bytes."""

    __tablename__ = "media"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(String(255))  # relative to MEDIA_DIR
    thumb_path: Mapped[str] = mapped_column(String(255))  # relative to MEDIA_DIR
    mime: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)  # after EXIF orientation
    height: Mapped[int] = mapped_column(Integer)
    frames: Mapped[int] = mapped_column(Integer, default=1)  # > 1 for animations
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    phash: Mapped[str] = mapped_column(String(16))  # 64-bit perceptual hash, hex
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set by the signals step (review/signals/runner.py): the phash without uniform edge bands
    # (caption bars; NULL when none was found), those of its four corner crops (comma-separated),
    # its colour signature, and the near-duplicate cluster (the id of the cluster's first image;
    # NULL: not computed yet).
    content_phash: Mapped[str | None] = mapped_column(String(16))
    corner_phashes: Mapped[str | None] = mapped_column(String(67))
    colour_signature: Mapped[str | None] = mapped_column(String(96))
    dup_cluster: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_media_phash", "phash"), Index("ix_media_dup_cluster", "dup_cluster", "id"))


class PostMedia(Base):
    __tablename__ = "post_media"

    post_id: Mapped[int] = mapped_column(ForeignKey("post.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id"))
    original_name: Mapped[str | None] = mapped_column(String(255))  # as named in the input

    post: Mapped[Post] = relationship(back_populates="media_links")
    media: Mapped[Media] = relationship()

    __table_args__ = (Index("ix_post_media_media_id", "media_id"),)


class ReplacedMedia(Base):
    """An image link that an ingest update replaced (review/ingest/changes.py), kept with the
    ``update`` event that replaced it: the post's history names what the post showed before, and
    erasing the post (review/purge.py) erases these images too."""

    __tablename__ = "replaced_media"

    event_id: Mapped[int] = mapped_column(ForeignKey("review_event.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)  # as it was in post_media
    post_id: Mapped[int] = mapped_column(ForeignKey("post.id", ondelete="RESTRICT"))
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id"))
    original_name: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        Index("ix_replaced_media_post_id", "post_id"),
        Index("ix_replaced_media_media_id", "media_id"),
    )


class Signal(Base):
    """A cheap signal about one image: OCR text, NSFW score, duplicate cluster…"""

    __tablename__ = "signal"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id"))
    kind: Mapped[str] = mapped_column(String(32))
    value: Mapped[Any] = mapped_column(JSONType)
    producer: Mapped[str] = mapped_column(String(64))
    producer_version: Mapped[str] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_signal_media_kind", "media_id", "kind"),)


class Verdict(Base):
    """One model judgement of one post. Never updated; a re-score inserts a new row."""

    __tablename__ = "verdict"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("post.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Provenance: enough to reproduce the verdict.
    provider: Mapped[str] = mapped_column(String(32))
    model_id: Mapped[str] = mapped_column(String(255))
    model_revision: Mapped[str | None] = mapped_column(String(64))
    adapter: Mapped[str | None] = mapped_column(String(255))
    # The weights' precision as the provider ran them ("float32", "bfloat16", "int8-dynamic",
    # "int8-bnb"); None when it cannot tell (a server's model, the rules) or before 0011.
    model_precision: Mapped[str | None] = mapped_column(String(32))
    prompt_version: Mapped[str] = mapped_column(String(64))
    input_hash: Mapped[str] = mapped_column(String(64))  # images + text + model + precision + prompt
    text_hash: Mapped[str | None] = mapped_column(String(64))  # text + model + prompt (near-duplicate cache)
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False)
    cached_from_id: Mapped[int | None] = mapped_column(ForeignKey("verdict.id"))  # the verdict reused
    # The verdict itself; NULL when the output could not be parsed.
    violation: Mapped[bool | None] = mapped_column(Boolean)
    category: Mapped[str | None] = mapped_column(String(64))
    severity: Mapped[int | None] = mapped_column(Integer)
    confidence: Mapped[float | None] = mapped_column(Float)
    image_text_consistency: Mapped[str | None] = mapped_column(String(16))
    consistency_reason: Mapped[str | None] = mapped_column(Text)
    sentiment: Mapped[str | None] = mapped_column(String(16))
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    ocr_text: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    rationale: Mapped[str | None] = mapped_column(Text)
    # How it went.
    raw_output: Mapped[str | None] = mapped_column(Text)
    parse_status: Mapped[str] = mapped_column(String(16))  # ok / repaired / failed / error
    parse_notes: Mapped[list[str]] = mapped_column(JSONType, default=list)  # repairs made to the output
    error: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_verdict_post_id", "post_id", "id"),
        Index("ix_verdict_input_hash", "input_hash"),
        Index("ix_verdict_text_hash", "text_hash"),
        Index("ix_verdict_model_prompt", "model_id", "prompt_version"),
        Index("ix_verdict_created_at", "created_at"),
    )


UNDOES = sql_text("undoes_id IS NOT NULL")


class ReviewEvent(Base):
    """An append-only moderator action. Never updated or deleted."""

    __tablename__ = "review_event"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    # RESTRICT: a post with review history cannot be deleted; review/purge.py erases its content
    # and keeps the row (a tombstone) instead.
    post_id: Mapped[int] = mapped_column(ForeignKey("post.id", ondelete="RESTRICT"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    action: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The verdict that was on screen when the moderator acted (metrics compare against it).
    verdict_id: Mapped[int | None] = mapped_column(ForeignKey("verdict.id"))
    # The human label, for confirm / overturn (one by one or in bulk).
    label_violation: Mapped[bool | None] = mapped_column(Boolean)
    label_category: Mapped[str | None] = mapped_column(String(64))
    label_severity: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(Text)
    time_spent_ms: Mapped[int | None] = mapped_column(Integer)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # for claims
    bulk_id: Mapped[str | None] = mapped_column(String(36))
    # For decisions: where the post waited before (queued / escalated); undo restores it.
    status_before: Mapped[str | None] = mapped_column(String(16))
    second_review: Mapped[bool] = mapped_column(Boolean, default=False)  # a decision taken in a second review
    # For a confirm / overturn: the post waits for a (further) second review after it (drawn for
    # one, or more labels wanted), which review/status.py needs to recompute the status. From 0008;
    # a decision undone before 0008 reads FALSE (nothing recorded where it had sent the post).
    to_second_review: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # Client-chosen key: repeating an event with the same key is a no-op.
    idempotency_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    # For a reopen written by undo: the decision it takes back (that label no longer counts).
    undoes_id: Mapped[int | None] = mapped_column(ForeignKey("review_event.id"))

    __table_args__ = (
        CheckConstraint(f"action IN ({_in(EventAction)})", name="action"),
        Index("ix_review_event_post_id", "post_id", "id"),
        Index("ix_review_event_user_created", "user_id", "created_at"),
        Index("ix_review_event_action_created", "action", "created_at"),
        Index("ix_review_event_created_at", "created_at"),
        # the few reopens that take a decision back: read by every post_label refresh
        Index("ix_review_event_undoes_id", "undoes_id", sqlite_where=UNDOES, postgresql_where=UNDOES),
    )


LABEL_CELLS = ("usable", "human_violation", "model_violation", "human_category", "model_category")
# What the accuracy slices group on, in the order of their index (ix_post_label_slices).
LABEL_SLICES = ("model_id", "prompt_version", "provider", "model_precision", "source")


class PostLabel(Base):
    """A projection for the metrics: one row per settled post (decided, or waiting for its second
    review) with its latest human label and the verdict that was on screen for it, copied from
    the events and the verdict so that the accuracy numbers read one narrow table. Rebuilt for
    a post by review/labels.py in the same transaction as every decision or undo on it."""

    __tablename__ = "post_label"

    post_id: Mapped[int] = mapped_column(ForeignKey("post.id", ondelete="CASCADE"), primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("review_event.id"))  # the latest confirm / overturn
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)  # of that event
    decided_day: Mapped[str] = mapped_column(String(10))  # its UTC day, YYYY-MM-DD: trends group on it
    first_decided_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when the post first left the queue
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    raters: Mapped[int] = mapped_column(Integer)  # people with a decision on the post
    human_violation: Mapped[bool] = mapped_column(Boolean)
    human_category: Mapped[str] = mapped_column(String(64))  # "none" for no violation
    verdict_id: Mapped[int | None] = mapped_column(ForeignKey("verdict.id"))
    usable: Mapped[bool] = mapped_column(Boolean)  # the verdict parsed (ok / repaired)
    model_violation: Mapped[bool | None] = mapped_column(Boolean)
    model_category: Mapped[str | None] = mapped_column(String(64))  # "none" for no violation
    confidence: Mapped[float | None] = mapped_column(Float)
    provider: Mapped[str | None] = mapped_column(String(32))
    model_id: Mapped[str | None] = mapped_column(String(255))
    prompt_version: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(64))
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    model_precision: Mapped[str | None] = mapped_column(String(32))  # the verdict's, from 0012 (None: not recorded)

    # Covering indexes, one per kind of metrics query, each led by what that query groups on, so
    # that SQLite reads the groups in order from the index (no sort) and applies the filters to
    # the index entries (no table lookups); Postgres hash-aggregates and may use them for
    # index-only scans.
    __table_args__ = (
        Index(
            "ix_post_label_cells", *LABEL_CELLS, "confidence", "decided_at", "source", "model_id", "prompt_version"
        ),  # fmt: skip
        Index("ix_post_label_days", "decided_day", *LABEL_CELLS, "decided_at", "source", "model_id", "prompt_version"),
        Index("ix_post_label_slices", *LABEL_SLICES, *LABEL_CELLS, "decided_at"),
        Index("ix_post_label_raters", "raters"),
    )


class Export(Base):
    """A training-data export: who made it, from what, and where it went."""

    __tablename__ = "export"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    format: Mapped[str] = mapped_column(String(32))
    filters: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    counts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    output_path: Mapped[str] = mapped_column(Text)


class FinetuneRun(Base):
    """A LoRA training run on an export, and its evaluation."""

    __tablename__ = "finetune_run"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    export_id: Mapped[int | None] = mapped_column(ForeignKey("export.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="running")
    base_model: Mapped[str] = mapped_column(String(255))
    adapter_path: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class AuditEvent(Base):
    """An append-only record of what was done to the desk itself (review/audit.py): accounts,
    sign-ins, ingest runs, exports, purges, retention runs. Database triggers refuse UPDATE and
    DELETE on this table."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Who acted: a user (NULL: the command line, or nobody signed in, e.g. a failed sign-in), and
    # the name as it was then (kept when the account is renamed or gone).
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    actor_name: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))  # e.g. user.create, signin.failed, purge (review.audit.Action)
    subject: Mapped[str | None] = mapped_column(String(255))  # what it was done to: a username, a folder…
    client: Mapped[str | None] = mapped_column(String(64))  # the client's address, for sign-ins
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

    __table_args__ = (
        Index("ix_audit_event_created_at", "created_at"),
        Index("ix_audit_event_action_created", "action", "created_at"),
    )


class LoginThrottle(Base):
    """Failed sign-ins counted per key (review/auth.py): one account from one client, one client
    across accounts, one account from everywhere. A key is locked while ``locked_until`` is in
    the future; ``failures`` count since ``window_started_at``."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ReportKind(enum.StrEnum):
    USER_REPORT = "user_report"  # people on the platform flagged the post
    CLASSIFIER = "classifier"  # a platform's own model flagged it


class PostReport(Base):
    """A report on a post from the platform (review/reports.py): who flagged it, why, how many
    times. Append-only. ``after_event_id`` is the post's latest settling event when it arrived
    (its decision, for a decided post): the re-queue rule counts the reports after a decision by
    it, not by clocks; ``status_at_arrival`` is the post's status then."""

    __tablename__ = "post_report"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("post.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(255), default="")
    count: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_at_arrival: Mapped[str] = mapped_column(String(16))
    after_event_id: Mapped[int | None] = mapped_column(ForeignKey("review_event.id"))
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_token.id"))  # which integration sent it

    __table_args__ = (
        CheckConstraint(f"kind IN ({_in(ReportKind)})", name="kind"),
        CheckConstraint("count >= 1", name="count"),
        Index("ix_post_report_post_id", "post_id", "after_event_id"),
    )


class ApiToken(Base):
    """A platform's credential for the HTTP API (review/tokens.py). Only a hash of the token is
    stored; the token itself is shown once, when it is made."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256, hex
    hint: Mapped[str] = mapped_column(String(16))  # the token's first characters, to tell tokens apart
    scopes: Mapped[str] = mapped_column(String(255))  # comma-separated review.tokens.Scope values
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))  # None: the command line
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookEndpoint(Base):
    """Where decisions are delivered (review/webhooks.py): a URL, the event types it takes, the
    secret that signs them (Standard Webhooks)."""

    __tablename__ = "webhook_endpoint"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(255), default="")
    event_types: Mapped[str] = mapped_column(String(512), default="*")  # comma-separated, or "*"
    secret: Mapped[str] = mapped_column(String(100))  # "whsec_" + base64 of 32 random bytes
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(255))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxEvent(Base):
    """An outgoing event (review/outbox.py), written in the same transaction as the review event
    it tells of. Append-only; also the decision feed (``GET /v1/decisions``). ``payload`` is the
    exact JSON text that is signed and sent (text, not JSON: JSONB would reorder it)."""

    __tablename__ = "outbox_event"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    uid: Mapped[str] = mapped_column(String(40), unique=True)  # the webhook-id, the same on every retry
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)  # the feed's order: commit order (outbox_clock)
    review_event_id: Mapped[int] = mapped_column(ForeignKey("review_event.id", ondelete="RESTRICT"), unique=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("post.id", ondelete="RESTRICT"))
    type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    payload: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_outbox_event_post_id", "post_id", "seq"),)


class OutboxClock(Base):
    """One row: the last ``outbox_event.seq`` handed out. Writers take it under a row lock held
    to commit, so the feed's order is commit order (an id sequence is not: review/outbox.py)."""

    __tablename__ = "outbox_clock"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"  # every retry failed (or the endpoint answered 410 Gone); an admin may redeliver


PENDING_DELIVERY = sql_text("status = 'pending'")


class WebhookDelivery(Base):
    """One outgoing event for one endpoint: the delivery worker's work queue (review/delivery.py).
    Written with the event; leased by a worker while it is being sent."""

    __tablename__ = "webhook_delivery"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("outbox_event.id", ondelete="RESTRICT"))
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoint.id", ondelete="CASCADE"))
    post_id: Mapped[int] = mapped_column(BigInteger)  # the event's, for the per-post order without a join
    seq: Mapped[int] = mapped_column(BigInteger)  # the event's
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))  # one line; never the response body
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dead_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id"),
        CheckConstraint(f"status IN ({_in(DeliveryStatus)})", name="status"),
        # the worker's scan: pending deliveries due, oldest event first; partial: delivered rows
        # pile up and are never scanned
        Index(
            "ix_webhook_delivery_due",
            "next_attempt_at",
            "seq",
            sqlite_where=PENDING_DELIVERY,
            postgresql_where=PENDING_DELIVERY,
        ),
        # the per-post order: is there an earlier pending event of this post for this endpoint?
        Index(
            "ix_webhook_delivery_order",
            "endpoint_id",
            "post_id",
            "seq",
            sqlite_where=PENDING_DELIVERY,
            postgresql_where=PENDING_DELIVERY,
        ),
        Index("ix_webhook_delivery_endpoint_status", "endpoint_id", "status", "id"),
    )


class SessionEnd(enum.StrEnum):
    """Why a sign-in session ended (review/websession.py): the kicked-out user is told which."""

    SIGNED_OUT = "signed_out"
    IDLE = "idle"
    EXPIRED = "expired"  # the absolute limit since sign-in
    DEACTIVATED = "deactivated"
    PASSWORD = "password_changed"
    ROLE = "role_changed"


class WebSession(Base):
    """A signed-in browser (review/websession.py): the server-side half of the app's session
    cookie. The browser holds a random token; only its sha256 is stored. Until the browser has
    fetched its cookie, the row holds a one-time hand-over code (hash) instead."""

    __tablename__ = "web_session"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)  # sha256, hex
    handoff_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    handoff_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    client: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the absolute limit
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (CheckConstraint(f"end_reason IS NULL OR end_reason IN ({_in(SessionEnd)})", name="end_reason"),)

"""Training data from the moderators' decisions, in the formats real trainers read.

Each example is one settled post (``post_label``): the user turn is the prompt the model saw when
it scored the post (the same template, policy and options, so the same prompt version, with the
post's images), the assistant turn is the verdict JSON in the schema the model answers in, with
the moderator's label. By default only disagreements are exported (the label differs from the
verdict on screen, or the model gave no usable verdict: the metrics' own definition and filter,
review/metrics/filters.py); ``include="all"`` takes every settled post.

Formats, written to one folder with the images copied under ``images/`` (relative paths; parquet
holds the image bytes instead):

- ``llamafactory``: ``train.json`` / ``val.json`` (sharegpt ``messages`` with a system turn, and
  ``images``; one ``<image>`` per image) and a ``dataset_info.json`` registering both;
- ``swift``: ``train.jsonl`` / ``val.jsonl`` (ms-swift ``messages`` + ``images``);
- ``qwen``: ``train.json`` / ``val.json`` for the Qwen-VL finetune scripts (``image`` +
  ``conversations`` of ``human`` / ``gpt``; the scripts have no system turn, so the system text
  leads the human turn, after the image placeholders);
- ``parquet``: ``train.parquet`` / ``val.parquet``, one row per example with the image bytes,
  typed for Hugging Face ``datasets`` (``images`` load as PIL images).

Near-duplicates stay on one side of the train / validation split (posts that share an image, a
near-duplicate cluster or their caption form one group; posts whose images have no cluster yet
make the export refuse unless ``allow_ungrouped``), exact duplicates (same images, same text) are
dropped, and ``strip_pii`` replaces handles, e-mail addresses, phone numbers, messenger ids and
links in every text of an example with placeholders (images are copied as they are).

The longest example is measured in tokens as the model reads it (:func:`measure_tokens`: its
chat template, the system, user and assistant text, and each image's tokens) and
``manifest.json`` gives it with a ``cutoff_len`` that fits, which ``TRAINING.md`` passes to the
trainers. ``manifest.json`` records what was exported and how; the ``export`` table records who
exported what, when.

Speed (docs/BENCHMARKS.md): the system prompt is rendered, JSON-encoded and tokenised once per
prompt version; decisions, images and OCR are read 1,000 posts at a time, with Python's cycle
collector paused; the files are streamed (one example at a time, parquet in row groups) while
each image is copied once (by ``cp``, beside the writer) and the tokens are counted in a thread.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import math
import os
import random
import re
import shutil
import subprocess
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cache, partial
from pathlib import Path
from typing import Any, NamedTuple, get_args

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Export, Media, Post, PostLabel, PostMedia, ReviewEvent, Verdict
from db.session import safe_url, writing
from review import audit
from review.auth import Actor, Permission, require_live
from review.config import Settings
from review.errors import ReviewError
from review.inference.hf import MIN_PIXELS
from review.inference.schema import (
    MAX_DESCRIPTION,
    MAX_OCR_TEXT,
    MAX_RATIONALE,
    MAX_REASON,
    MAX_TAG,
    MAX_TAGS,
    Consistency,
    ModelAnswer,
    Sentiment,
)
from review.ingest import Progress  # progress(stage, total) → callback(done), as ingest reports it
from review.inputs import normalise_text
from review.metrics.filters import disagreement, disagrees, label_conditions
from review.policy import Policy, load_policy
from review.prompts import ModerationRenderer
from review.signals.runner import load_media_signals
from review.text import first_line
from review.verdicts import is_usable

FORMATS = ("llamafactory", "swift", "qwen", "parquet")
IMAGE_TOKEN = "<image>"
# The confidence a corrected answer states: a moderator's label is the best evidence there is,
# but moderators agree with each other about 95 % of the time, not always.
HUMAN_CONFIDENCE = 0.95
DATASET_NAME = "review_desk"
CHUNK = 1000  # posts per query (SQLite and Postgres cap the parameters of one statement)
ROW_GROUP = 500  # parquet rows per row group (two groups' image bytes are in memory at a time)
COPY_BATCH = 1000  # images per cp process
# A literal <image> or <video> in a post would be read by trainers as a placeholder with no picture.
PLACEHOLDERS = re.compile(r"<(?=(?:image|video)>)", re.IGNORECASE)
SIGNALS_COMMAND = "python -m review signals"


@dataclass(frozen=True)
class ExportOptions:
    format: str
    include: str = "disagreements"  # or "all"
    since: datetime | None = None  # decisions at or after
    until: datetime | None = None  # decisions before
    categories: tuple[str, ...] = ()  # the human label's category; empty: all
    source: str | None = None
    cap_per_category: int | None = None  # at most this many examples per human category
    val_fraction: float = 0.1
    strip_pii: bool = False
    seed: int = 0
    # export posts whose images have no near-duplicate cluster yet (signals not computed): the
    # split then cannot keep their near duplicates on one side
    allow_ungrouped: bool = False
    model: str | None = None  # whose processor measures the tokens (hub id or folder); None: MODEL

    def check(self, policy: Policy) -> None:
        if self.format not in FORMATS:
            raise ReviewError(f"unknown format {self.format!r}: use one of {', '.join(FORMATS)}")
        if self.include not in ("disagreements", "all"):
            raise ReviewError("include is 'disagreements' or 'all'")
        if not 0 <= self.val_fraction < 1:
            raise ReviewError(f"the validation fraction must be at least 0 and below 1, got {self.val_fraction}")
        if self.cap_per_category is not None and self.cap_per_category < 1:
            raise ReviewError("the cap per category must be at least 1")
        unknown = [c for c in self.categories if c not in policy.ids]
        if unknown:
            raise ReviewError(f"unknown categories {', '.join(unknown)}: the policy has {', '.join(policy.ids)}")

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["since"] = self.since.isoformat() if self.since else None
        out["until"] = self.until.isoformat() if self.until else None
        out["categories"] = list(self.categories)
        return out


class PostImage(NamedTuple):
    sha256: str
    path: str  # under MEDIA_DIR
    width: int
    height: int
    dup_cluster: int | None  # None: the signals step has not seen it yet


@dataclass
class Example:
    post_id: int
    category: str  # the human label's category
    system: str  # the same string object for every example of a prompt version
    user: str  # the user turn's text, after its images
    images: list[str]  # paths under MEDIA_DIR, in order
    image_names: list[str]  # their names in the export, relative to it (images/<sha256>.<ext>)
    answer: str  # the assistant turn: verdict JSON with the moderator's label
    prompt_version: str
    reproduced: bool  # the prompt version equals the one the verdict on screen was made with
    image_sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) of each image
    group: int = 0  # near-duplicate group (posts sharing an image, a cluster or a caption)
    split: str = "train"


@dataclass
class Selection:
    examples: list[Example]
    dropped: Counter[str] = field(default_factory=Counter)
    ungrouped: int = 0  # examples with an image that has no near-duplicate cluster (allowed)

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {"train": {}, "val": {}}
        for split in out:
            tally = Counter(e.category for e in self.examples if e.split == split)
            out[split] = dict(sorted(tally.items()))
        return out


# ---------------------------------------------------------------------------------------------
# Personal data

_PII: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE), "[link]"),
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "[email]"),
    # messenger ids after their cue: WeChat (微信, weixin, wechat), QQ, Telegram, WhatsApp, and the
    # short cues (wx, vx, v, tg, line) only with a colon after them: "v: abc123", "wx：meiyan_8888"
    (
        re.compile(r"(?i)(微信号?|weixin|wechat|qq|telegram|whatsapp)(\s*(?:号|id)?\s*[:：]?\s*)[A-Za-z0-9_\-]{4,}"),
        r"\1\2[id]",
    ),  # fmt: skip
    (re.compile(r"(?i)(?<![A-Za-z])(wx|vx|v|tg|line)(\s*[:：]\s*)[A-Za-z0-9_\-]{4,}"), r"\1\2[id]"),
    (re.compile(r"(?<!\w)@[\w.]{2,}"), "[handle]"),
    # phone numbers: +country, mainland mobiles with or without separators, and other long digit runs
    (
        re.compile(
            r"(?<![\w])(?:\+\d{1,3}[\s-]?)?(?:1[3-9]\d[\s-]?\d{4}[\s-]?\d{4}|\d{3,4}[\s-]\d{3,4}[\s-]\d{3,4})(?!\d)"
        ),
        "[phone]",
    ),  # fmt: skip
]


def strip_pii(text: str) -> str:
    """``text`` with handles, e-mail addresses, phone numbers, messenger ids and links replaced by
    placeholders ([handle], [email], [phone], [id], [link]), so the example keeps its shape."""
    for pattern, replacement in _PII:
        text = pattern.sub(replacement, text)
    return text


# ---------------------------------------------------------------------------------------------
# Choosing the examples


def _query(opts: ExportOptions) -> Select:
    """One row per settled post: its label, the deciding event's severity and note, the verdict
    on screen (columns prefixed ``v_``, NULL without one) and the post's text; latest decision
    first. Columns, not ORM objects: building 100,000 objects cost more than the rest of the
    selection."""
    # an erased post (review/purge.py) is no training data
    conditions: list[ColumnElement[bool]] = [Post.purged_at.is_(None)]
    if opts.include == "disagreements":  # the metrics' definition: review/metrics/filters.py
        conditions.append(disagreement())
    conditions += label_conditions(since=opts.since, until=opts.until, source=opts.source, categories=opts.categories)
    columns = [
        PostLabel.post_id, PostLabel.verdict_id, PostLabel.human_violation, PostLabel.human_category,
        PostLabel.model_violation, PostLabel.model_category, ReviewEvent.label_severity, ReviewEvent.note, Post.text,
        Verdict.prompt_version.label("v_prompt_version"), Verdict.parse_status.label("v_parse_status"),
        Verdict.provider.label("v_provider"), Verdict.description.label("v_description"),
        Verdict.ocr_text.label("v_ocr_text"), Verdict.image_text_consistency.label("v_consistency"),
        Verdict.consistency_reason.label("v_consistency_reason"), Verdict.sentiment.label("v_sentiment"),
        Verdict.tags.label("v_tags"), Verdict.rationale.label("v_rationale"),
    ]  # fmt: skip
    return (
        select(*columns)
        .join(ReviewEvent, ReviewEvent.id == PostLabel.event_id)
        .join(Post, Post.id == PostLabel.post_id)
        .outerjoin(Verdict, Verdict.id == PostLabel.verdict_id)
        .where(*conditions)
        .order_by(PostLabel.decided_at.desc(), PostLabel.post_id.desc())
    )


def _images(
    session: Session, post_ids: list[int], read: dict[int, str]
) -> tuple[dict[int, list[PostImage]], dict[int, str]]:
    """The images of ``post_ids`` (at most ``CHUNK``: statement parameter limits) in order, and
    the OCR text of each post (its images' latest OCR signals, joined as scoring joins them).
    ``read`` keeps each image's OCR text across calls: read once however many posts show it."""
    rows = session.execute(
        select(PostMedia.post_id, Media.id, Media.sha256, Media.path, Media.width, Media.height, Media.dup_cluster)
        .join(Media, Media.id == PostMedia.media_id)
        .where(PostMedia.post_id.in_(post_ids))
        .order_by(PostMedia.post_id, PostMedia.position)
    ).all()
    new = list(dict.fromkeys(r.id for r in rows if r.id not in read))
    read.update((media_id, found.ocr_text) for media_id, found in load_media_signals(session, new).items())
    media: dict[int, list[PostImage]] = {}
    texts: dict[int, list[str]] = {}
    for r in rows:
        media.setdefault(r.post_id, []).append(PostImage(r.sha256, r.path, r.width, r.height, r.dup_cluster))
        texts.setdefault(r.post_id, []).append(read[r.id])
    ocr = {post_id: "\n\n".join(t for t in parts if t) for post_id, parts in texts.items()}
    return media, ocr


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Python's cycle collector off while the export builds its 100,000s of objects (none of them
    in a cycle): each full collection walks every object built so far, which took a third of
    the selection's time. Back on afterwards."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _digest(text: str) -> bytes:
    """A 128-bit digest standing in for a long key (normalised texts) in the sets of the selection."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def select_examples(session: Session, actor: Actor, opts: ExportOptions, policy: Policy | None = None,
                    progress: Progress | None = None) -> Selection:  # fmt: skip
    """The examples ``opts`` asks for, split, without writing anything (also the page's preview).

    Refuses when an example's images have no near-duplicate cluster yet (the signals step has
    not run on them), unless ``opts.allow_ungrouped``. The decisions are read ``CHUNK`` at a
    time, each chunk's images and OCR with them."""
    actor = require_live(session, actor, Permission.EXPORT)
    policy = policy or load_policy()
    opts.check(policy)
    query = _query(opts)
    plain = ModerationRenderer(policy=policy)
    hinted = ModerationRenderer(use_ocr_hints=True, policy=policy)
    answers = _Answers(policy, opts.strip_pii)
    selection = Selection([])
    seen: set[bytes] = set()
    keys: dict[int, list[tuple[str, object]]] = {}
    ungrouped: set[int] = set()
    read: dict[int, str] = {}
    tick = None
    if progress:
        total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
        tick = progress("examples", total)
    with _gc_paused():  # reading, rendering and grouping 100,000s of objects
        done = 0
        for part in session.execute(query.execution_options(yield_per=CHUNK)).partitions():
            media, ocr = _images(session, [r.post_id for r in part], read)
            for row in part:  # latest decision first: a duplicate keeps the latest
                images = media.get(row.post_id, [])
                normalised = normalise_text(row.text or "")
                key = _digest("\0".join([str(len(images)), *(m.sha256 for m in images), normalised]))
                if key in seen:
                    selection.dropped["exact duplicates"] += 1
                    continue
                seen.add(key)
                selection.examples.append(_example(row, images, ocr.get(row.post_id, ""), plain, hinted, answers))
                keys[row.post_id] = _group_keys(images, normalised)
                if any(m.dup_cluster is None for m in images):
                    ungrouped.add(row.post_id)
            done += len(part)
            if tick:
                tick(done)
    if opts.cap_per_category:
        selection.examples = _capped(selection, opts.cap_per_category, opts.seed)
    selection.ungrouped = sum(e.post_id in ungrouped for e in selection.examples)
    if selection.ungrouped and not opts.allow_ungrouped:
        raise ReviewError(
            f"{selection.ungrouped} of the {len(selection.examples)} examples have images without a near-duplicate "
            f"cluster (the signals step has not run on them), so the split cannot keep their near duplicates on one "
            f"side: run `{SIGNALS_COMMAND}` first, or export without that grouping (--allow-ungrouped; on the Export "
            "page, 'Allow images without near-duplicate clusters')"
        )
    with _gc_paused():
        _split(selection.examples, keys, opts.val_fraction, opts.seed)
    return selection


def _group_keys(images: list[PostImage], normalised: str) -> list[tuple[str, object]]:
    keys: list[tuple[str, object]] = [("image", m.sha256) for m in images]  # the same file
    keys += [("cluster", m.dup_cluster) for m in images if m.dup_cluster is not None]  # near copies
    if len(normalised) >= 8:  # the same caption on other pictures (a campaign)
        keys.append(("text", _digest(normalised)))
    return keys


def _capped(selection: Selection, cap: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    by_category: dict[str, list[Example]] = {}
    for e in selection.examples:
        by_category.setdefault(e.category, []).append(e)
    kept = []
    for _, examples in sorted(by_category.items()):
        if len(examples) > cap:
            selection.dropped["over the cap per category"] += len(examples) - cap
            examples = rng.sample(examples, cap)
        kept.extend(examples)
    return sorted(kept, key=lambda e: e.post_id)


def _split(examples: list[Example], keys: dict[int, list[tuple[str, object]]], val_fraction: float, seed: int) -> None:
    """Group posts that share an image, a near-duplicate cluster or their text (union-find), then
    put whole groups in the validation split, in a seeded order, until it holds ``val_fraction``
    of the examples."""
    parent = {e.post_id: e.post_id for e in examples}

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    first_with: dict[tuple[str, object], int] = {}
    for e in examples:
        for key in keys[e.post_id]:
            other = first_with.setdefault(key, e.post_id)
            if other != e.post_id:
                parent[root(e.post_id)] = root(other)
    groups: dict[int, list[Example]] = {}
    for e in examples:
        e.group = root(e.post_id)
        groups.setdefault(e.group, []).append(e)
    want = math.ceil(val_fraction * len(examples)) if val_fraction > 0 and len(groups) > 1 else 0
    order = sorted(groups, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    chosen: list[int] = []
    taken = 0
    for g in order:
        if taken >= want:
            break
        if taken + len(groups[g]) > want * 1.5:
            continue  # a big group would overshoot: leave it to train
        chosen.append(g)
        taken += len(groups[g])
    if want and not chosen:  # every group is big: the smallest one
        chosen.append(min(order, key=lambda g: len(groups[g])))
    for g in chosen:
        for e in groups[g]:
            e.split = "val"


def image_name(sha256: str, path: str) -> str:
    """An image's name in an export folder, relative to it (review/purge.py finds copies by it)."""
    return f"images/{sha256}{os.path.splitext(path)[1].lower() or '.jpg'}"


def _example(row: Any, images: list[PostImage], ocr: str, plain: ModerationRenderer, hinted: ModerationRenderer,
             answers: _Answers) -> Example:  # fmt: skip
    # the prompt the verdict was made with: the same template and options give the same version
    version = row.v_prompt_version if row.verdict_id is not None else None
    renderer = hinted if version == hinted.version and version != plain.version else plain
    # else: scored by the baseline rules, or with a template or policy since changed: today's plain prompt
    reproduced = version == renderer.version
    user = renderer.user(row.text or "", len(images), ocr)
    return Example(row.post_id, row.human_category, renderer.system, answers.clean(user), [m.path for m in images],
                   [image_name(m.sha256, m.path) for m in images],
                   answers.answer(row, ocr), renderer.version, reproduced,
                   [(m.width, m.height) for m in images])  # fmt: skip


_CONSISTENCY = frozenset(get_args(Consistency))
_SENTIMENT = frozenset(get_args(Sentiment))
_to_json = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(…, ensure_ascii=False), without its set-up


class _Answers:
    """The verdict JSON the model should have given, for each row: its own description, reading
    and tags where it had a usable verdict, the moderator's violation, category and severity, and
    a rationale that fits the label (the model's when the moderator agreed, else the note or the
    policy)."""

    def __init__(self, policy: Policy, pii: bool) -> None:
        self.policy = policy
        self.pii = pii
        self.definitions = {c.id: f"Moderator's label: {c.label()}. {c.definition}" for c in policy.category}

    def clean(self, text: str) -> str:
        return PLACEHOLDERS.sub("<\u200b", strip_pii(text) if self.pii else text)

    def answer(self, row: Any, ocr: str) -> str:
        clean = self.clean
        has_verdict = row.verdict_id is not None
        usable = has_verdict and is_usable(row.v_parse_status)
        agreed = not disagrees(usable, row.human_violation, row.human_category, row.model_violation, row.model_category)
        # the model's own reading of the post, where a model gave one (the baseline's is rule output)
        usable = usable and row.v_provider != "baseline"
        category = row.human_category
        if agreed and usable:
            rationale = row.v_rationale or ""
        elif row.note:
            rationale = row.note
        else:  # the policy's definition, or only the id of a category since removed from the policy
            rationale = self.definitions.get(category) or f"Moderator's label: {category}."
        # the fields in the order of ModelAnswer (the schema the model answers in), each within
        # its bounds; checked by the model itself only when a stored value is not one it allows
        answer = {
            "description": clean((row.v_description if usable else "") or "")[:MAX_DESCRIPTION],
            "ocr_text": clean((row.v_ocr_text if usable else None) or ocr)[:MAX_OCR_TEXT],
            "violation": bool(row.human_violation),
            "category": category,
            "severity": 0 if category == "none" else max(1, min(3, row.label_severity or 2)),
            "confidence": HUMAN_CONFIDENCE,
            "image_text_consistency": {
                "label": (row.v_consistency if usable else None) or "not_applicable",
                "reason": clean((row.v_consistency_reason if usable else "") or "")[:MAX_REASON],
            },
            "sentiment": (row.v_sentiment if usable else None) or "neutral",
            "tags": [clean(t)[:MAX_TAG] for t in ((row.v_tags if usable else None) or [])][:MAX_TAGS],
            "rationale": clean(rationale)[:MAX_RATIONALE],
        }
        if answer["image_text_consistency"]["label"] not in _CONSISTENCY or answer["sentiment"] not in _SENTIMENT:
            answer = ModelAnswer.model_validate(answer).model_dump()  # raises, naming the field
        return _to_json(answer)


# ---------------------------------------------------------------------------------------------
# Measuring the examples in tokens

CUTOFF_STEP = 256  # cutoff_len: the longest example plus the margin, rounded up to a multiple of this
CUTOFF_MARGIN = 32  # tokens: trainers' chat templates differ from the model's by a few (a BOS, an empty think block)
# UTF-8 bytes of example text the tokenizer may read to prove which example is the longest; past
# that the longest is given as an upper bound (about 10 s of tokenising on one core of the
# benchmark machine; docs/BENCHMARKS.md).
EXACT_BUDGET = 12_000_000
_BATCH = 512  # examples tokenised together
# Private-use characters standing in for an example's user text and answer in a rendering of the
# chat template: no template or tokenizer normaliser changes them.
_USER, _ANSWER = "\ue000user\ue000", "\ue001answer\ue001"
# Without the model's processor: Qwen's chat format (ChatML), as the bound counts it.
_CHATML = ("<|im_start|>system\n", "<|im_end|>\n<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n",
           "<|im_end|>\n")  # fmt: skip
_QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
# The pre-tokenizer of Qwen2/2.5/3 (and, with \p{N}{1,3}, Llama 3): text is split by this pattern,
# then byte-level BPE runs on each piece. No match of it spans a space followed by a non-space,
# or a line break followed by a non-space, and none looks further than that (the lookahead of
# \s+(?!\S) is satisfied by the space either way), so the text can be cut there and its pieces
# counted apart and remembered (words and template lines repeat across examples). NFC, the
# normaliser, composes nothing across such a cut.
_QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_BYTE_LEVEL_PATTERNS = {_QWEN_PATTERN, _QWEN_PATTERN.replace(r"\p{N}|", r"\p{N}{1,3}|")}
_SAFE_CUTS = re.compile(r"(?= \S)|(?<=\n)(?=\S)")


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """The size a Qwen-VL image processor resizes an image to (transformers' ``smart_resize`` of
    ``qwen2_vl``, which Qwen3-VL's processor uses with 16-pixel patches merged 2×2, so factor 32):
    each side rounded to a multiple of ``factor``, then scaled (aspect kept) into the pixel range."""
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def image_tokens(width: int, height: int, patch: int, merge: int, min_pixels: int, max_pixels: int) -> int:
    """The tokens one image becomes: one per ``merge``×``merge`` patches of ``patch`` pixels of
    the resized image (Qwen3-VL: one per 32×32 pixels)."""
    factor = patch * merge
    h_bar, w_bar = smart_resize(height, width, factor, min_pixels, max_pixels)
    return (h_bar // factor) * (w_bar // factor)


@dataclass
class TokenReport:
    """What :func:`measure_tokens` found: the longest example in tokens and how it was counted."""

    max_tokens: int  # the longest example, or an upper bound of it when not exact
    exact: bool  # max_tokens is the processor's count of the longest example
    method: str  # "processor": the model's chat template and tokenizer; "utf-8 bound": no processor
    model: str
    longest_post_id: int | None
    min_pixels: int
    max_pixels: int
    system_tokens: dict[str, int] = field(default_factory=dict)  # the system prompt of each version
    tokenised_bytes: int = 0  # example text the tokenizer read (after the cache of repeated parts)
    note: str | None = None  # why the processor was not used, or why the maximum is a bound

    @property
    def cutoff_len(self) -> int:
        return math.ceil((self.max_tokens + CUTOFF_MARGIN) / CUTOFF_STEP) * CUTOFF_STEP

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "cutoff_len": self.cutoff_len, "margin": CUTOFF_MARGIN, "step": CUTOFF_STEP}


@cache
def load_processor(model: str) -> tuple[Any, str | None]:
    """The model's processor loaded as review/finetune.py loads it (``AutoProcessor`` by hub id
    or folder), or None and the reason it cannot be (once per process)."""
    from review.inference.base import ModelUnavailable
    from review.inference.hf import check_loadable

    try:
        check_loadable(model)
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(model)
    except ModelUnavailable as exc:
        return None, str(exc)
    except (OSError, ValueError, ImportError) as exc:
        return None, f"cannot load the processor of {model!r}: {first_line(exc)}"
    if getattr(processor, "image_processor", None) is None or not hasattr(processor, "apply_chat_template"):
        return None, f"{model!r} has no image processor and chat template (not a vision-language model)"
    return processor, None


class _Layout(NamedTuple):
    """An example's chat-template rendering cut at the tokenizer's special tokens: the tokens of
    the parts that hold no message text (the system turn, the role headers, the image
    placeholders; counted once), and the parts that hold the user text or the answer (with the
    sentinels; counted per example). A tokenizer splits its input at special tokens before
    anything else, so the counts of the parts add up to the count of the whole."""

    const: int
    units: tuple[str, ...]
    unit_bytes: tuple[int, ...]  # UTF-8 bytes of each unit without its sentinels


class _ProcessorCounter:
    """Exact counts with the model's own chat template and tokenizer."""

    method = "processor"

    def __init__(self, processor: Any, min_pixels: int, max_pixels: int) -> None:
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        image_processor = processor.image_processor
        self.patch = int(getattr(image_processor, "patch_size", 16))
        self.merge = int(getattr(image_processor, "merge_size", 2))
        self.image_token = getattr(processor, "image_token", "<|image_pad|>")
        self.min_pixels, self.max_pixels = min_pixels, max_pixels
        added = list(self.tokenizer.added_tokens_decoder.values())
        plain = [t.content for t in added if not (t.lstrip or t.rstrip or t.single_word)]
        # the added tokens, longest first: the tokenizer splits its input at them before anything else
        self.cut = re.compile("(" + "|".join(re.escape(s) for s in sorted(plain, key=len, reverse=True)) + ")")
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        self._encode = backend.encode_batch if backend is not None else None
        cuttable = backend is not None and len(plain) == len(added) and _cuttable(backend)
        self.cuts = _SAFE_CUTS if cuttable else None
        self.normalise: Callable[[str], str] | None = None  # for the bound: the text the BPE sees
        if cuttable and backend is not None:  # NFC or nothing: Python's NFC is much faster than tokenizers' per call
            self.normalise = None if backend.normalizer is None else partial(unicodedata.normalize, "NFC")
        elif backend is not None and backend.normalizer is not None:
            self.normalise = backend.normalizer.normalize_str
        self.extra = len(self.tokenizer("")["input_ids"])  # what the tokenizer adds to every text (a BOS)
        self.counts: dict[str, int] = {}
        self.read = 0
        self.layouts: dict[tuple[int, int], _Layout] = {}
        self.images: dict[tuple[int, int], int] = {}

    def count(self, texts: list[str]) -> list[int]:
        """Tokens of each text (no special tokens added): the sum of its pieces' (cut where the
        pre-tokenizer cuts anyway, see _BYTE_LEVEL_PATTERNS), each tokenised once per run."""
        pieces = [self.pieces(t) for t in texts]
        counts = self.counts
        new = list(dict.fromkeys(p for parts in pieces for p in parts if p not in counts))
        if new:
            if self._encode is not None:
                found = [len(e) for e in self._encode(new, add_special_tokens=False)]
            else:
                found = [len(ids) for ids in self.tokenizer(new, add_special_tokens=False)["input_ids"]]
            counts.update(zip(new, found, strict=True))
            self.read += sum(len(t.encode()) for t in new)
        return [sum(map(counts.__getitem__, parts)) for parts in pieces]

    def pieces(self, text: str) -> list[str]:
        """``text`` cut at its added tokens (each one a piece), and between them where the
        pre-tokenizer cuts anyway (:data:`_SAFE_CUTS`, only for the patterns known to allow it)."""
        if self.cuts is None:
            return [text] if text else []
        out: list[str] = []
        for i, part in enumerate(self.cut.split(text)):
            if i % 2:
                out.append(part)  # an added token
            elif part:
                out.extend(p for p in self.cuts.split(part) if p)
        return out

    def bytes_bound(self, text: str) -> int:
        """At least the tokens of ``text`` (a piece between special tokens): a byte-level BPE
        token covers at least one byte of the normalised text; one more for a prefix space."""
        return len((self.normalise(text) if self.normalise else text).encode()) + 1

    def image(self, width: int, height: int) -> int:
        key = (width, height)
        if key not in self.images:
            self.images[key] = image_tokens(width, height, self.patch, self.merge, self.min_pixels, self.max_pixels)
        return self.images[key]

    def messages(self, system: str, n_images: int, user: str, answer: str) -> list[dict[str, Any]]:
        """The chat as review/finetune.py renders an example (images before the user's text)."""
        images: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
        return [
            {"role": "system", "content": [{"type": "text", "text": system}]},
            {"role": "user", "content": [*images, {"type": "text", "text": user}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ]

    def layout(self, system: str, n_images: int) -> _Layout:
        key = (id(system), n_images)  # one system string object per prompt version
        if key not in self.layouts:
            text = self.processor.apply_chat_template(self.messages(system, n_images, _USER, _ANSWER), tokenize=False)
            if text.count(_USER) != 1 or text.count(_ANSWER) != 1 or text.count(self.image_token) != n_images:
                raise _Unsupported("its chat template changes the message text")
            pieces = self.cut.split(text)
            const = self.extra + sum(1 for p in pieces[1::2])  # each special token is one token
            plain = [p for p in pieces[0::2] if p and _USER not in p and _ANSWER not in p]
            const += sum(self.count(plain))
            units = tuple(p for p in pieces[0::2] if _USER in p or _ANSWER in p)
            unit_bytes = tuple(len(u.replace(_USER, "").replace(_ANSWER, "").encode()) for u in units)
            self.layouts[key] = _Layout(const, units, unit_bytes)
        return self.layouts[key]

    def fixed(self, e: Example) -> int:
        """The example's tokens that need no tokenising: the layout's constant and the images."""
        return self.layout(e.system, len(e.images)).const + sum(self.image(w, h) - 1 for w, h in e.image_sizes)

    def bound(self, e: Example) -> int:
        layout = self.layout(e.system, len(e.images))
        user, answer = self.bytes_bound(e.user), self.bytes_bound(e.answer)
        return self.fixed(e) + sum(b + (user if _USER in u else 0) + (answer if _ANSWER in u else 0)
                                   for u, b in zip(layout.units, layout.unit_bytes, strict=True))  # fmt: skip

    def exact(self, examples: list[Example]) -> list[int]:
        texts: list[str] = []
        for e in examples:
            for u in self.layout(e.system, len(e.images)).units:
                texts.append(u.replace(_USER, e.user).replace(_ANSWER, e.answer))
        counts = iter(self.count(texts))
        return [self.fixed(e) + sum(next(counts) for _ in self.layout(e.system, len(e.images)).units) for e in examples]

    def whole(self, e: Example) -> int:
        """The example rendered and tokenised whole, as the processor does it (the check of the
        sum of the parts)."""
        text = self.processor.apply_chat_template(self.messages(e.system, len(e.images), e.user, e.answer),
                                                  tokenize=False)  # fmt: skip
        ids = self.tokenizer(text)["input_ids"]
        return len(ids) + sum(self.image(w, h) - 1 for w, h in e.image_sizes)

    def system_tokens(self, system: str) -> int:
        return self.count([system])[0]


def _cuttable(backend: Any) -> bool:
    """Whether ``backend`` (a ``tokenizers.Tokenizer``) is a byte-level BPE with one of the
    pre-tokenizer patterns whose safe cuts :data:`_SAFE_CUTS` finds, and NFC or no normaliser."""
    try:
        pre = json.loads(backend.pre_tokenizer.__getstate__()) if backend.pre_tokenizer else {}
        norm = json.loads(backend.normalizer.__getstate__()) if backend.normalizer else None
    except (AttributeError, TypeError, ValueError):
        return False
    if norm not in (None, {"type": "NFC"}) or pre.get("type") != "Sequence" or len(pre.get("pretokenizers", [])) != 2:
        return False
    split, byte_level = pre["pretokenizers"]
    return (
        split.get("type") == "Split"
        and split.get("pattern", {}).get("Regex") in _BYTE_LEVEL_PATTERNS
        and split.get("behavior") == "Isolated"
        and not split.get("invert")
        and byte_level.get("type") == "ByteLevel"
        and not byte_level.get("use_regex")
        and not byte_level.get("add_prefix_space")
    )


class _Unsupported(Exception):
    """The processor renders examples in a way the part-wise count does not follow."""


class _ByteBound:
    """Without the model's processor: an upper bound in Qwen's chat format. The text is counted
    in UTF-8 bytes (Qwen's byte-level BPE gives every token at least one byte of the NFC text)
    and each image with Qwen-VL's resize rule at 14- and 16-pixel patches, the larger count."""

    method = "utf-8 bound"

    def __init__(self, min_pixels: int, max_pixels: int) -> None:
        self.min_pixels, self.max_pixels = min_pixels, max_pixels
        self.systems: dict[int, int] = {}
        self.read = 0

    @staticmethod
    def _bytes(text: str) -> int:
        return len(unicodedata.normalize("NFC", text).encode())

    def image(self, width: int, height: int) -> int:
        return max(image_tokens(width, height, patch, 2, self.min_pixels, self.max_pixels) for patch in (14, 16))

    def bound(self, e: Example) -> int:
        if id(e.system) not in self.systems:
            self.systems[id(e.system)] = self._bytes(e.system) + sum(len(p.encode()) for p in _CHATML)
        return (self.systems[id(e.system)] + self._bytes(e.user) + self._bytes(e.answer)
                + sum(len(_QWEN_IMAGE.encode()) - 1 + self.image(w, h) for w, h in e.image_sizes))  # fmt: skip

    def system_tokens(self, system: str) -> int:
        return self._bytes(system)


def measure_tokens(examples: list[Example], model: str, min_pixels: int, max_pixels: int,
                   processor: Any = None, budget: int | None = None) -> TokenReport:  # fmt: skip
    """The longest example in tokens as ``model`` reads it: its chat template around the system,
    user and assistant text, and each image's tokens (from the stored width and height with the
    processor's resize rule, ``min_pixels``..``max_pixels`` per image as the desk's provider and
    finetune give them).

    Exact with the model's processor (``processor``, or loaded by ``model``): the system prompt
    and the template's own text are tokenised once per prompt version and image count, the user
    text and answer of each example in batches, remembered when repeated. Examples are taken in
    the order of an upper bound of their length (the exact parts plus the bytes of their text),
    and the search stops when no example left can be longer than the longest found; when the
    tokenizer has read ``budget`` bytes first, the maximum is given as an upper bound (not
    exact). Without a processor, every count is that upper bound in Qwen's chat format."""
    budget = EXACT_BUDGET if budget is None else budget
    note = None
    if processor is None:
        processor, note = load_processor(model)
    counter: _ProcessorCounter | _ByteBound
    if processor is not None:
        counter = _ProcessorCounter(processor, min_pixels, max_pixels)
        try:
            return _search(examples, counter, model, budget)
        except _Unsupported as exc:
            note = f"the processor of {model!r} cannot be measured part by part: {exc}"
    counter = _ByteBound(min_pixels, max_pixels)
    report = _search(examples, counter, model, budget)
    report.note = note
    return report


def _search(examples: list[Example], counter: _ProcessorCounter | _ByteBound, model: str, budget: int) -> TokenReport:
    systems = {id(e.system): (e.prompt_version, e.system) for e in examples}
    report = TokenReport(0, counter.method == "processor", counter.method, model, None, counter.min_pixels,
                         counter.max_pixels,
                         {version: counter.system_tokens(system) for version, system in systems.values()})  # fmt: skip
    if not examples:
        return report
    bounds = [counter.bound(e) for e in examples]
    order = sorted(range(len(examples)), key=lambda i: -bounds[i])
    if not isinstance(counter, _ProcessorCounter):
        report.max_tokens, report.longest_post_id = bounds[order[0]], examples[order[0]].post_id
        return report
    best, longest = -1, order[0]
    done = 0
    while done < len(order) and bounds[order[done]] > best:
        if counter.read >= budget:  # not proven: no example left is longer than the largest bound left
            report.exact = False
            counted = f"the longest of the {done:,} counted exactly is {best:,} tokens" if done else "none counted"
            report.note = (f"the tokenizer's budget of {budget:,} bytes ran out before the longest example was "
                           f"found ({counted}); {len(order) - done:,} others are bounded by their bytes")  # fmt: skip
            if bounds[order[done]] > best:
                best, longest = bounds[order[done]], order[done]
            break
        batch = order[done : done + _BATCH]
        for i, n in zip(batch, counter.exact([examples[i] for i in batch]), strict=True):
            if n > best:
                best, longest = n, i
        done += len(batch)
    if report.exact:
        whole = counter.whole(examples[longest])
        if whole != best:  # the parts did not add up to the whole: never seen; the bound is safe
            raise _Unsupported(f"post {examples[longest].post_id} counts {whole} tokens whole, {best} by parts")
    report.max_tokens, report.longest_post_id, report.tokenised_bytes = best, examples[longest].post_id, counter.read
    return report


# ---------------------------------------------------------------------------------------------
# Writing


def _messages(e: Example) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": e.system},
        {"role": "user", "content": IMAGE_TOKEN * len(e.images) + e.user},
        {"role": "assistant", "content": e.answer},
    ]


class _Encoder:
    """Each example as the JSON text ``json.dumps(item, ensure_ascii=False)`` gives, with the
    system prompt's JSON string encoded once per prompt version (it is most of every example)."""

    def __init__(self) -> None:
        self.systems: dict[int, str] = {}

    def system(self, e: Example) -> str:
        found = self.systems.get(id(e.system))
        if found is None:
            found = self.systems[id(e.system)] = json.dumps(e.system, ensure_ascii=False)
        return found

    def messages_item(self, e: Example) -> str:
        """``{"messages": [...], "images": [...]}`` (LLaMA-Factory sharegpt, ms-swift)."""
        user = json.dumps(IMAGE_TOKEN * len(e.images) + e.user, ensure_ascii=False)
        return (f'{{"messages": [{{"role": "system", "content": {self.system(e)}}}, '
                f'{{"role": "user", "content": {user}}}, '
                f'{{"role": "assistant", "content": {json.dumps(e.answer, ensure_ascii=False)}}}], '
                f'"images": {json.dumps(e.image_names, ensure_ascii=False)}}}')  # fmt: skip

    def qwen_item(self, e: Example) -> str:
        """The Qwen-VL finetune scripts' item: the system text leads the human turn (JSON string
        escaping works character by character, so the encoded parts join into the encoded whole)."""
        placeholders = json.dumps("".join(f"{IMAGE_TOKEN}\n" for _ in e.images), ensure_ascii=False)[:-1]
        rest = json.dumps(f"\n\n{e.user}", ensure_ascii=False)[1:]
        human = placeholders + self.system(e)[1:-1] + rest
        item = (f'{{"id": "post-{e.post_id}", "conversations": [{{"from": "human", "value": {human}}}, '
                f'{{"from": "gpt", "value": {json.dumps(e.answer, ensure_ascii=False)}}}]')  # fmt: skip
        if len(e.images) == 1:
            item += f', "image": {json.dumps(e.image_names[0], ensure_ascii=False)}'
        elif e.images:
            item += f', "image": {json.dumps(e.image_names, ensure_ascii=False)}'
        return item + "}"


def _write_lines(path: Path, lines: Iterator[str], array: bool) -> None:
    """One example per line: JSON Lines, or (``array``) a JSON array with one item per line."""
    with path.open("w", encoding="utf-8", buffering=1 << 20) as fh:
        if not array:
            for line in lines:
                fh.write(line)
                fh.write("\n")
            return
        fh.write("[")
        first = True
        for line in lines:
            fh.write("\n" if first else ",\n")
            fh.write(line)
            first = False
        fh.write("\n]\n")


def _copy_images(examples: list[Example], out: Path, media_dir: Path) -> None:
    """Copy each distinct image once into ``out/images``. Files whose name in the store is their
    name in the export (the store's own ``<sha256>.<ext>``) are copied by ``cp``, many per
    process, so the copying runs beside the writer without waiting on the interpreter's lock
    (in Python, 10,000 small copies beside a busy writer thread took 10 s: each system call
    queued for the lock); the rest, or everything where there is no ``cp``, by Python."""
    targets: dict[str, str] = {}
    for e in examples:
        for source, name in zip(e.images, e.image_names, strict=True):
            targets.setdefault(name, source)
    if not targets:
        return
    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    cp = shutil.which("cp")
    batch = [s for n, s in targets.items() if os.path.basename(s) == n[len("images/") :]] if cp else []
    for start in range(0, len(batch), COPY_BATCH):
        sources = [str(media_dir / s) for s in batch[start : start + COPY_BATCH]]
        done = subprocess.run([str(cp), "--", *sources, str(folder)], capture_output=True, text=True)
        if done.returncode != 0:
            raise ReviewError(f"copying the images from MEDIA_DIR failed: {done.stderr.strip()[:500]}")
    copied = set(batch)
    for name, source in targets.items():
        if source not in copied:
            try:
                shutil.copyfile(media_dir / source, out / name)
            except FileNotFoundError:
                raise ReviewError(f"the image {source} is missing from MEDIA_DIR ({media_dir})") from None


def write_examples(examples: list[Example], out: Path, fmt: str, media_dir: Path,
                   progress: Progress | None = None) -> list[str]:  # fmt: skip
    """Write the examples of both splits in ``fmt`` under ``out`` (without TRAINING.md); returns
    the files written."""
    files = []
    encoder = _Encoder()
    tick = progress("writing", len(examples)) if progress else None
    written = 0

    def advance(n: int = 1) -> None:
        nonlocal written
        before, written = written, written + n
        if tick and (written // 2000 > before // 2000 or written == len(examples)):
            tick(written)

    def counted(items: Iterator[str]) -> Iterator[str]:
        for item in items:
            yield item
            advance()

    with ThreadPoolExecutor(1) as pool:
        # parquet holds the images' bytes: no second copy of them beside it
        copies = pool.submit(_copy_images, [] if fmt == "parquet" else examples, out, media_dir)
        for split in ("train", "val"):
            part = [e for e in examples if e.split == split]
            if fmt in ("llamafactory", "swift"):
                name = f"{split}.json" if fmt == "llamafactory" else f"{split}.jsonl"
                _write_lines(out / name, counted(encoder.messages_item(e) for e in part), array=fmt == "llamafactory")
            elif fmt == "qwen":
                name = f"{split}.json"
                _write_lines(out / name, counted(encoder.qwen_item(e) for e in part), array=True)
            else:
                name = f"{split}.parquet"
                _write_parquet(out / name, part, media_dir, advance)
            files.append(name)
        copies.result()  # a missing file fails the export here
    if fmt == "llamafactory":
        info = {f"{DATASET_NAME}_{split}": _dataset_info(f"{split}.json") for split in ("train", "val")}
        _write_json_obj(out / "dataset_info.json", info)
        files.append("dataset_info.json")
    return files


def _write_json_obj(path: Path, obj: dict[str, Any]) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _dataset_info(file_name: str) -> dict[str, Any]:
    return {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
            "system_tag": "system",
        },  # fmt: skip
    }


# The columns as Hugging Face ``datasets`` types them (its ``huggingface`` schema metadata):
# ``images`` is a list of Image, so ``load_dataset("parquet", ...)`` gives PIL images.
_STRING = {"dtype": "string", "_type": "Value"}
PARQUET_FEATURES = {
    "id": _STRING,
    "post_id": {"dtype": "int64", "_type": "Value"},
    "category": _STRING,
    "prompt_version": _STRING,
    "messages": [{"role": _STRING, "content": _STRING}],
    "images": [{"_type": "Image"}],
}


def _parquet_schema() -> Any:  # a pyarrow.Schema (pyarrow ships no type information)
    import pyarrow as pa

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    schema = pa.schema([("id", pa.string()), ("post_id", pa.int64()), ("category", pa.string()),
                        ("prompt_version", pa.string()), ("messages", pa.list_(message)),
                        ("images", pa.list_(image))])  # fmt: skip
    return schema.with_metadata({"huggingface": json.dumps({"info": {"features": PARQUET_FEATURES}})})


# Image files are compressed already, and each example's are its own: no dictionary, no
# compression for their bytes (a third of the parquet writing time went to both, for nothing).
_PARQUET_OPTIONS: dict[str, Any] = {
    "use_dictionary": ["category", "prompt_version", "messages.list.element.role"],
    "compression": {
        **dict.fromkeys(
            [
                "id",
                "post_id",
                "category",
                "prompt_version",
                "messages.list.element.role",
                "messages.list.element.content",
                "images.list.element.path",
            ],
            "snappy",
        ),
        "images.list.element.bytes": "none",
    },  # fmt: skip
}


def _write_parquet(path: Path, examples: list[Example], media_dir: Path, advance: Callable[[int], None]) -> None:
    """Row groups of ``ROW_GROUP`` examples, each column built as Arrow arrays (flat values and
    list offsets, not Python dicts); a group is written (by Arrow, which lets go of the
    interpreter's lock) while the next one's images are read, so at most two groups' image bytes
    are in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema()
    message, image = schema.field("messages").type.value_type, schema.field("images").type.value_type
    base = os.path.join(media_dir, "")

    def read(relative: str) -> bytes:
        with open(base + relative, "rb", buffering=0) as fh:
            return fh.readall()

    def table(group: list[Example]) -> Any:
        contents = [text for e in group for text in (e.system, IMAGE_TOKEN * len(e.images) + e.user, e.answer)]
        roles = ["system", "user", "assistant"] * len(group)
        messages = pa.ListArray.from_arrays(
            pa.array(range(0, 3 * len(group) + 1, 3), pa.int32()),
            pa.StructArray.from_arrays([pa.array(roles, pa.string()), pa.array(contents, pa.string())],
                                       fields=list(message)),
        )  # fmt: skip
        offsets = [0]
        for e in group:
            offsets.append(offsets[-1] + len(e.images))
        images = pa.ListArray.from_arrays(
            pa.array(offsets, pa.int32()),
            pa.StructArray.from_arrays([pa.array([read(s) for e in group for s in e.images], pa.binary()),
                                        pa.array([n for e in group for n in e.image_names], pa.string())],
                                       fields=list(image)),
        )  # fmt: skip
        columns = [
            pa.array([f"post-{e.post_id}" for e in group], pa.string()),
            pa.array([e.post_id for e in group], pa.int64()),
            pa.array([e.category for e in group], pa.string()),
            pa.array([e.prompt_version for e in group], pa.string()),
            messages,
            images,
        ]
        return pa.Table.from_arrays(columns, schema=schema)

    with pq.ParquetWriter(path, schema, **_PARQUET_OPTIONS) as writer, ThreadPoolExecutor(1) as pool:
        pending = None
        for start in range(0, max(len(examples), 1), ROW_GROUP):
            group = examples[start : start + ROW_GROUP]
            ready = table(group)
            if pending is not None:
                pending.result()
            pending = pool.submit(writer.write_table, ready)
            advance(len(group))
        if pending is not None:
            pending.result()


# How to train on each format. Formatted with: folder, name (the dataset's), cutoff_len,
# max_tokens, max_pixels and lengths (the paragraph below, filled in).
_LENGTHS = """The longest example is {max_tokens} tokens as {model} reads it (its chat template, the
system prompt, the post, the answer, and each image at most {max_pixels} pixels, the desk's
MODEL_MAX_PIXELS){bound}; `{cutoff_len}` holds every example with a margin (manifest.json:
`max_tokens`, `cutoff_len`, `tokens`). A trainer that gives images more pixels makes longer examples.
"""
_OURS = """
Or with the desk itself (LoRA on the language model only, then base and adapter compared; it
trains on whole examples, images at MODEL_MAX_PIXELS):

    python -m review finetune {folder} --base Qwen/Qwen3-VL-2B-Instruct --out ADAPTER_DIR
    python -m review evaluate {folder} --model Qwen/Qwen3-VL-2B-Instruct --adapter ADAPTER_DIR
"""
HOW_TO_TRAIN = {
    "llamafactory": """# Training on this export with LLaMA-Factory

This folder is a LLaMA-Factory dataset directory: `dataset_info.json` registers `{name}_train` and
`{name}_val` (sharegpt `messages` with a system turn, `images` relative to this folder).
Checked with LLaMA-Factory 0.9.5 (`pip install llamafactory==0.9.5`; scripts/check_trainers.sh
runs this command for two steps on a tiny Qwen3-VL).

    llamafactory-cli train --stage sft --do_train --finetuning_type lora --lora_target all \\
      --model_name_or_path Qwen/Qwen3-VL-2B-Instruct --template qwen3_vl_nothink \\
      --dataset_dir {folder} --dataset {name}_train --eval_dataset {name}_val \\
      --cutoff_len {cutoff_len} --image_max_pixels {max_pixels} \\
      --per_device_train_batch_size 1 --gradient_accumulation_steps 8 --learning_rate 1e-4 \\
      --num_train_epochs 3 --eval_strategy epoch --per_device_eval_batch_size 1 --bf16 \\
      --output_dir ADAPTER_DIR

`qwen3_vl_nothink` is the template of the Qwen3-VL Instruct models (`qwen3_vl` would train an empty
`<think>` block into every answer); LLaMA-Factory's default `cutoff_len` of 2048 cuts through an
example's image tokens and fails on the first batch. LLaMA-Factory enlarges an image smaller than
65,536 pixels to that size (64 tokens), so posts with several tiny images can come out longer than
counted here; `scripts/check_trainers.sh` measures with LLaMA-Factory's own code.

{lengths}"""
    + _OURS,
    "swift": """# Training on this export with ms-swift

`train.jsonl` and `val.jsonl` hold `messages` (system, user with one `<image>` per image, assistant)
and `images`. ms-swift resolves relative image paths against the working directory, so run it
from this folder. Checked with ms-swift 4.6.0 (`pip install ms-swift==4.6.0 qwen-vl-utils==0.0.14`;
scripts/check_trainers.sh runs this command for two steps on a tiny Qwen3-VL).

    cd {folder}
    MAX_PIXELS={max_pixels} swift sft --model Qwen/Qwen3-VL-2B-Instruct --model_type qwen3_vl --use_hf true \\
      --tuner_type lora --target_modules all-linear --freeze_vit true \\
      --dataset train.jsonl --val_dataset val.jsonl --max_length {cutoff_len} \\
      --torch_dtype bfloat16 --per_device_train_batch_size 1 --gradient_accumulation_steps 8 \\
      --learning_rate 1e-4 --num_train_epochs 3 --output_dir ADAPTER_DIR

`--tuner_type` is ms-swift 4's name for what 3.x called `--train_type`. ms-swift silently replaces
an example longer than `--max_length` with another one, and without `MAX_PIXELS` it gives a
Qwen3-VL image up to 16.7 million pixels (16,384 tokens), so both are set to what was counted
here. `--model_type` lets a local folder of the model load whatever its name; `--use_hf` reads
the Hugging Face cache instead of downloading from ModelScope. The adapter is written to
`ADAPTER_DIR/v0-<time>/checkpoint-<step>`.

{lengths}"""
    + _OURS,
    "qwen": """# Training on this export with the Qwen-VL finetune scripts

Register the splits in `qwenvl/data/__init__.py` of the qwen-vl-finetune folder:

    {name}_train = {{"annotation_path": "{folder}/train.json", "data_path": "{folder}"}}
    {name}_val = {{"annotation_path": "{folder}/val.json", "data_path": "{folder}"}}
    data_dict["{name}_train"] = {name}_train
    data_dict["{name}_val"] = {name}_val

then train with `--dataset_use {name}_train --model_max_length {cutoff_len} --max_pixels {max_pixels}`
(their defaults, 512 tokens and 451,584 pixels, would cut every example). These scripts have no
system turn: the desk's system prompt leads each human turn, after the image placeholders.

{lengths}""",
    "parquet": """# Using this export from Python

One row per example: `messages` (system, user with one `<image>` per image, assistant) and
`images`, typed as a list of images for Hugging Face `datasets` (they load as PIL images; the file
holds each one's `bytes`, and as its `path` the name the other formats give it, `images/<sha256>.<ext>`).

    from datasets import load_dataset
    data = load_dataset("parquet", data_files={{"train": "{folder}/train.parquet",
                                                "validation": "{folder}/val.parquet"}})

{lengths}"""
    + _OURS,
}


def training_notes(fmt: str, folder: Path, tokens: TokenReport) -> str:
    """TRAINING.md of an export: how to train on it, with its lengths."""
    bound = "" if tokens.exact else f". That is an upper bound, not a count ({tokens.note or tokens.method})"
    values = {"folder": folder, "name": DATASET_NAME, "cutoff_len": tokens.cutoff_len, "max_tokens": tokens.max_tokens,
              "max_pixels": tokens.max_pixels, "model": tokens.model, "bound": bound}  # fmt: skip
    return HOW_TO_TRAIN[fmt].format(**values, lengths=_LENGTHS.format(**values))


# ---------------------------------------------------------------------------------------------
# The whole export


@dataclass
class ExportResult:
    export_id: int
    out: Path
    manifest: dict[str, Any]


def export(sessions: sessionmaker[Session], actor: Actor, settings: Settings, opts: ExportOptions, out: Path,
           progress: Progress | None = None) -> ExportResult:  # fmt: skip
    """Select, split and write the examples to ``out`` (a new or empty folder), measure them in
    tokens, write the manifest and TRAINING.md, and record the export. ``progress`` reports the
    stages (examples, writing). The role is read again from the database; the export row, its
    audit event (``Action.EXPORT``) and manifest.json are written in one transaction, which
    first checks that no selected post was erased meanwhile (review/purge.py).

    An export that fails leaves no folder behind (what it had written is removed): every export
    folder with data in it is one the ``export`` table names, so a later purge finds it."""
    with sessions() as session:
        actor = require_live(session, actor, Permission.EXPORT)
    out = out.resolve()
    if out.exists() and not out.is_dir():
        raise ReviewError(f"{out} is a file, not a folder: export into a new folder")
    if out.exists() and any(out.iterdir()):
        raise ReviewError(f"{out} is not empty: export into a new folder")
    created = not out.exists()
    try:
        return _export(sessions, actor, settings, opts, out, progress)
    except BaseException:
        _discard(out, created)
        raise


def _discard(out: Path, created: bool) -> None:
    """Remove a failed export's files: the folder if the export made it, else what is in it."""
    if created:
        shutil.rmtree(out, ignore_errors=True)
    elif out.is_dir():
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def _erased_meanwhile(session: Session, post_ids: list[int]) -> list[int]:
    """Those of ``post_ids`` erased since they were selected. Postgres: the rows are read FOR
    SHARE, so a purge of one of them that has not committed yet is waited for (and seen), and one
    that starts now waits for this transaction, then finds its export row and manifest. SQLite:
    the write transaction already excludes a purge."""
    erased: list[int] = []
    ids = sorted(set(post_ids))
    for start in range(0, len(ids), 500):
        rows = session.execute(
            select(Post.id, Post.purged_at)
            .where(Post.id.in_(ids[start : start + 500]))
            .order_by(Post.id)
            .with_for_update(read=True)
        )
        erased += [post_id for post_id, purged_at in rows if purged_at is not None]
    return erased


def _export(sessions: sessionmaker[Session], actor: Actor, settings: Settings, opts: ExportOptions, out: Path,
            progress: Progress | None) -> ExportResult:  # fmt: skip
    model = opts.model or settings.model
    with _gc_paused(), ThreadPoolExecutor(1) as background:  # the processor loads while the examples are read
        loading = background.submit(load_processor, model)
        with sessions() as session:
            selection = select_examples(session, actor, opts, progress=progress)
        if not selection.examples:
            what = "disagreements" if opts.include == "disagreements" else "decided posts"
            raise ReviewError(f"no {what} match: nothing to export")
        processor = loading.result()[0]
        measuring = background.submit(measure_tokens, selection.examples, model, MIN_PIXELS,
                                      settings.model_max_pixels, processor)  # fmt: skip
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReviewError(f"cannot make the export folder {out}: {exc.strerror or exc}") from None
        files = write_examples(selection.examples, out, opts.format, settings.media_dir, progress)
        tokens = measuring.result()
    (out / "TRAINING.md").write_text(training_notes(opts.format, out, tokens), encoding="utf-8")
    files.append("TRAINING.md")
    examples = selection.examples
    manifest: dict[str, Any] = {
        "format": opts.format,
        "created_at": datetime.now(UTC).isoformat(),
        "created_by": actor.username,
        "database": safe_url(settings.database_url),
        "filters": opts.as_json(),
        "examples": len(examples),
        "counts": selection.counts(),
        "dropped": dict(selection.dropped),
        "ungrouped": selection.ungrouped,
        "groups": {
            "train": len({e.group for e in examples if e.split == "train"}),
            "val": len({e.group for e in examples if e.split == "val"}),
        },  # fmt: skip
        "prompt_versions": dict(Counter(e.prompt_version for e in examples)),
        "prompt_not_reproduced": sum(not e.reproduced for e in examples),
        "answer_confidence": HUMAN_CONFIDENCE,
        "images": len({n for e in examples for n in e.image_names}),
        "max_tokens": tokens.max_tokens,
        "cutoff_len": tokens.cutoff_len,
        "tokens": tokens.as_json(),
        "files": [*files, "manifest.json"],
        "post_ids": {s: [e.post_id for e in examples if e.split == s] for s in ("train", "val")},
    }
    with writing(sessions) as session:
        if erased := _erased_meanwhile(session, [e.post_id for e in examples]):
            raise ReviewError(
                f"{len(erased)} of the exported posts (post {erased[0]}{', …' if len(erased) > 1 else ''}) were "
                "erased while the export ran: nothing was exported and its files were removed; run it again"
            )
        row = Export(user_id=actor.id or None, format=opts.format, filters=opts.as_json(),
                     counts={"examples": manifest["examples"], **manifest["counts"]}, output_path=str(out))  # fmt: skip
        session.add(row)
        session.flush()
        manifest["export_id"] = row.id
        audit.record(session, actor, audit.Action.EXPORT, f"export {row.id}", format=opts.format, folder=str(out),
                     examples=manifest["examples"], counts=manifest["counts"], filters=opts.as_json())  # fmt: skip
        # before the commit: a purge that finds the export row finds the manifest listing its posts
        _write_json_obj(out / "manifest.json", manifest)
    return ExportResult(manifest["export_id"], out, manifest)


def new_folder(settings: Settings, fmt: str, now: datetime | None = None) -> Path:
    """A fresh folder under EXPORT_DIR for an export started from the app."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    folder = settings.export_dir / f"{stamp}-{fmt}"
    n = 1
    while folder.exists():
        n += 1
        folder = settings.export_dir / f"{stamp}-{fmt}-{n}"
    return folder


def zip_folder(folder: Path) -> bytes:
    """The export folder as a zip archive (stored paths relative to the folder's parent, so it
    unpacks into one folder)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder.parent).as_posix())
    return buffer.getvalue()


def recent_exports(session: Session, actor: Actor, limit: int = 20) -> list[dict[str, Any]]:
    """The latest exports: id, when, by whom ("(command line)" for the CLI), format, examples, folder."""
    from db.models import User

    require_live(session, actor, Permission.EXPORT)
    rows = session.execute(
        select(Export, User.username).outerjoin(User, User.id == Export.user_id).order_by(Export.id.desc()).limit(limit)
    ).all()
    return [
        {
            "id": e.id,
            "created": e.created_at,
            "by": name or "(command line)",
            "format": e.format,
            "examples": (e.counts or {}).get("examples"),
            "folder": e.output_path,
        }  # fmt: skip
        for e, name in rows
    ]

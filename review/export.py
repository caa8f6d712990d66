"""Training data from the moderators' decisions, in the formats real trainers read.

Each example is one settled post (``post_label``): the user turn is the prompt the model saw when
it scored the post (the same template, policy and options, so the same prompt version, with the
post's images), the assistant turn is the verdict JSON in the schema the model answers in, with
the moderator's label. By default only disagreements are exported (the label differs from the
verdict on screen, or the model gave no usable verdict); ``include="all"`` takes every settled
post.

Formats, written to one folder with the images copied under ``images/`` (relative paths):

- ``llamafactory``: ``train.json`` / ``val.json`` (sharegpt ``messages`` with a system turn, and
  ``images``; one ``<image>`` per image) and a ``dataset_info.json`` registering both;
- ``swift``: ``train.jsonl`` / ``val.jsonl`` (ms-swift ``messages`` + ``images``);
- ``qwen``: ``train.json`` / ``val.json`` for the Qwen-VL finetune scripts (``image`` +
  ``conversations`` of ``human`` / ``gpt``; the scripts have no system turn, so the system text
  leads the human turn, after the image placeholders);
- ``parquet``: ``train.parquet`` / ``val.parquet``, one row per example with the image bytes.

Near-duplicates stay on one side of the train / validation split (posts that share a
near-duplicate cluster form one group), exact duplicates (same images, same text) are dropped,
and ``strip_pii`` replaces handles, e-mail addresses, phone numbers, messenger ids and links in
every text of an example with placeholders (images are copied as they are). ``manifest.json``
records what was exported and how; the ``export`` table records who exported what, when.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
import re
import shutil
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Export, PostLabel, ReviewEvent, Verdict
from db.session import safe_url, writing
from review.auth import Actor, Permission, require
from review.config import Settings
from review.errors import ReviewError
from review.inference.schema import MAX_DESCRIPTION, MAX_OCR_TEXT, MAX_RATIONALE, MAX_REASON, MAX_TAG, MAX_TAGS
from review.inference.schema import Verdict as VerdictAnswer
from review.policy import Policy, load_policy
from review.prompts import moderation_prompt
from review.scoring import USABLE, PostInput, load_inputs, normalise_text

FORMATS = ("llamafactory", "swift", "qwen", "parquet")
IMAGE_TOKEN = "<image>"
# The confidence a corrected answer states: a moderator's label is the best evidence there is,
# but moderators agree with each other about 95 % of the time, not always.
HUMAN_CONFIDENCE = 0.95
DATASET_NAME = "review_desk"
CHUNK = 1000  # posts per query (SQLite and Postgres cap the parameters of one statement)
# A literal <image> or <video> in a post would be read by trainers as a placeholder with no picture.
PLACEHOLDERS = re.compile(r"<(?=(?:image|video)>)", re.IGNORECASE)


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


@dataclass
class Example:
    post_id: int
    category: str  # the human label's category
    system: str
    user: str  # the user turn's text, after its images
    images: list[str]  # paths under MEDIA_DIR, in order
    image_names: list[str]  # their names in the export, relative to it (images/<sha256>.<ext>)
    answer: str  # the assistant turn: verdict JSON with the moderator's label
    prompt_version: str
    reproduced: bool  # the prompt version equals the one the verdict on screen was made with
    group: int = 0  # near-duplicate group (posts sharing a cluster)
    split: str = "train"


@dataclass
class Selection:
    examples: list[Example]
    dropped: Counter[str] = field(default_factory=Counter)

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


def _rows(session: Session, opts: ExportOptions):  # type: ignore[no-untyped-def]
    disagree = or_(
        PostLabel.usable.is_(False),
        PostLabel.human_violation != PostLabel.model_violation,
        PostLabel.human_category != PostLabel.model_category,
    )
    conditions = []
    if opts.include == "disagreements":
        conditions.append(disagree)
    if opts.since is not None:
        conditions.append(PostLabel.decided_at >= opts.since)
    if opts.until is not None:
        conditions.append(PostLabel.decided_at < opts.until)
    if opts.categories:
        conditions.append(PostLabel.human_category.in_(opts.categories))
    if opts.source:
        conditions.append(PostLabel.source == opts.source)
    return session.execute(
        select(PostLabel, ReviewEvent.label_severity, ReviewEvent.note, Verdict)
        .join(ReviewEvent, ReviewEvent.id == PostLabel.event_id)
        .outerjoin(Verdict, Verdict.id == PostLabel.verdict_id)
        .where(and_(*conditions) if conditions else True)
        .order_by(PostLabel.decided_at.desc(), PostLabel.post_id.desc())
    ).all()


def select_examples(session: Session, actor: Actor, opts: ExportOptions, policy: Policy | None = None) -> Selection:
    """The examples ``opts`` asks for, split, without writing anything (also the page's preview)."""
    require(actor, Permission.EXPORT)
    policy = policy or load_policy()
    opts.check(policy)
    rows = _rows(session, opts)
    ids = [r[0].post_id for r in rows]
    inputs = {
        p.post_id: p for start in range(0, len(ids), CHUNK) for p in load_inputs(session, ids[start : start + CHUNK])
    }
    selection = Selection([])
    seen: set[tuple[tuple[str, ...], str]] = set()
    for label, severity, note, verdict in rows:  # latest decision first: a duplicate keeps the latest
        post = inputs[label.post_id]
        key = (tuple(m.sha256 for m in post.media), normalise_text(post.text))
        if key in seen:
            selection.dropped["exact duplicates"] += 1
            continue
        seen.add(key)
        selection.examples.append(_example(post, label, severity, note, verdict, policy, opts.strip_pii))
    if opts.cap_per_category:
        selection.examples = _capped(selection, opts.cap_per_category, opts.seed)
    _split(selection.examples, inputs, opts.val_fraction, opts.seed)
    return selection


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


def _split(examples: list[Example], inputs: dict[int, PostInput], val_fraction: float, seed: int) -> None:
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
        post = inputs[e.post_id]
        keys: list[tuple[str, object]] = [("image", m.sha256) for m in post.media]  # the same file
        keys += [("cluster", m.dup_cluster) for m in post.media if m.dup_cluster is not None]  # near copies
        text = normalise_text(post.text)
        if len(text) >= 8:  # the same caption on other pictures (a campaign)
            keys.append(("text", text))
        for key in keys:
            other = first_with.setdefault(key, e.post_id)
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


def _example(post: PostInput, label: PostLabel, severity: int | None, note: str | None, verdict: Verdict | None,
             policy: Policy, pii: bool) -> Example:  # fmt: skip
    ocr = "\n\n".join(t for t in post.signals.ocr_texts if t)
    # the prompt the verdict was made with: the same template and options give the same version
    rendered = plain = moderation_prompt(post.text, len(post.media), ocr_hints=ocr, policy=policy)
    reproduced = verdict is not None and plain.version == verdict.prompt_version
    if not reproduced:
        hinted = moderation_prompt(post.text, len(post.media), ocr_hints=ocr, use_ocr_hints=True, policy=policy)
        reproduced = verdict is not None and hinted.version == verdict.prompt_version
        # else: scored by the baseline rules, or with a template or policy since changed: today's plain prompt
        rendered = hinted if reproduced else plain
    system = "".join(p["text"] for p in rendered.messages[0]["content"] if p["type"] == "text")
    user = "".join(p["text"] for p in rendered.messages[1]["content"] if p["type"] == "text")

    def clean(text: str) -> str:
        return PLACEHOLDERS.sub("<\u200b", strip_pii(text) if pii else text)

    answer = _answer(label, severity, note, verdict, ocr, policy, clean)
    names = [f"images/{m.sha256}{Path(m.path).suffix.lower() or '.jpg'}" for m in post.media]
    return Example(label.post_id, label.human_category, system, clean(user), [m.path for m in post.media], names,
                   answer, rendered.version, reproduced)  # fmt: skip


def _answer(label: PostLabel, severity: int | None, note: str | None, verdict: Verdict | None, ocr: str,
            policy: Policy, clean: Callable[[str], str]) -> str:  # fmt: skip
    """The verdict JSON the model should have given: its own description, reading and tags where
    it had a usable verdict, the moderator's violation, category and severity, and a rationale
    that fits the label (the model's when the moderator agreed, else the note or the policy)."""
    usable = verdict is not None and verdict.parse_status in USABLE
    agreed = usable and label.human_category == label.model_category and label.human_violation == label.model_violation
    # the model's own reading of the post, where a model gave one (the baseline's is rule output)
    usable = usable and verdict.provider != "baseline"  # type: ignore[union-attr]
    category = label.human_category
    if agreed and usable:
        rationale = verdict.rationale or ""  # type: ignore[union-attr]
    elif note:
        rationale = note
    else:
        known = category in policy.ids
        rationale = (
            f"Moderator's label: {policy.get(category).label()}. {policy.get(category).definition}"
            if known
            else f"Moderator's label: {category}."  # a category since removed from the policy
        )
    consistency = (verdict.image_text_consistency if usable else None) or "not_applicable"
    answer = VerdictAnswer(
        description=clean((verdict.description if usable else "") or "")[:MAX_DESCRIPTION],  # type: ignore[union-attr]
        ocr_text=clean((verdict.ocr_text if usable else None) or ocr)[:MAX_OCR_TEXT],  # type: ignore[union-attr]
        violation=bool(label.human_violation),
        category=category,
        severity=0 if category == "none" else max(1, min(3, severity or 2)),
        confidence=HUMAN_CONFIDENCE,
        image_text_consistency={
            "label": consistency,
            "reason": clean((verdict.consistency_reason if usable else "") or "")[:MAX_REASON],  # type: ignore[union-attr]
        },
        sentiment=(verdict.sentiment if usable else None) or "neutral",  # type: ignore[union-attr]
        tags=[clean(t)[:MAX_TAG] for t in ((verdict.tags if usable else None) or [])][:MAX_TAGS],  # type: ignore[union-attr]
        rationale=clean(rationale)[:MAX_RATIONALE],
    )
    return json.dumps(answer.model_dump(), ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# Writing


def _messages(e: Example) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": e.system},
        {"role": "user", "content": IMAGE_TOKEN * len(e.images) + e.user},
        {"role": "assistant", "content": e.answer},
    ]


def _write_json(path: Path, items: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps(items, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def _write_jsonl(path: Path, items: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")


def write_examples(examples: list[Example], out: Path, fmt: str, media_dir: Path) -> list[str]:
    """Write the examples of both splits in ``fmt`` under ``out``; returns the files written."""
    files = []
    for e in examples:
        for source, name in zip(e.images, e.image_names, strict=True):
            target = out / name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(media_dir / source, target)
    for split in ("train", "val"):
        part = [e for e in examples if e.split == split]
        if fmt == "llamafactory":
            _write_json(out / f"{split}.json", [{"messages": _messages(e), "images": e.image_names} for e in part])
            files.append(f"{split}.json")
        elif fmt == "swift":
            _write_jsonl(out / f"{split}.jsonl", [{"messages": _messages(e), "images": e.image_names} for e in part])
            files.append(f"{split}.jsonl")
        elif fmt == "qwen":
            _write_json(out / f"{split}.json", [_qwen_item(e) for e in part])
            files.append(f"{split}.json")
        else:
            _write_parquet(out / f"{split}.parquet", part, out)
            files.append(f"{split}.parquet")
    if fmt == "llamafactory":
        info = {f"{DATASET_NAME}_{split}": _dataset_info(f"{split}.json") for split in ("train", "val")}
        _write_json_obj(out / "dataset_info.json", info)
        files.append("dataset_info.json")
    (out / "TRAINING.md").write_text(HOW_TO_TRAIN[fmt].format(folder=out, name=DATASET_NAME), encoding="utf-8")
    files.append("TRAINING.md")
    return files


_OURS = """
Or with the desk itself (LoRA on the language model only, then base and adapter compared):

    python -m review finetune {folder} --base Qwen/Qwen3-VL-2B-Instruct --out ADAPTER_DIR
    python -m review evaluate {folder} --model Qwen/Qwen3-VL-2B-Instruct --adapter ADAPTER_DIR
"""
HOW_TO_TRAIN = {
    "llamafactory": """# Training on this export with LLaMA-Factory

This folder is a LLaMA-Factory dataset directory: `dataset_info.json` registers `{name}_train` and
`{name}_val` (sharegpt `messages` with a system turn, `images` relative to this folder).

    llamafactory-cli train --stage sft --do_train --finetuning_type lora \
      --model_name_or_path Qwen/Qwen3-VL-2B-Instruct --template <the template of your model> \
      --dataset_dir {folder} --dataset {name}_train --eval_dataset {name}_val \
      --output_dir ADAPTER_DIR
"""
    + _OURS,
    "swift": """# Training on this export with ms-swift

`train.jsonl` and `val.jsonl` hold `messages` (system, user with one `<image>` per image, assistant)
and `images`. ms-swift resolves relative image paths against the working directory, so run it
from this folder:

    cd {folder}
    swift sft --model Qwen/Qwen3-VL-2B-Instruct --train_type lora --freeze_vit true \
      --dataset train.jsonl --val_dataset val.jsonl --output_dir ADAPTER_DIR
"""
    + _OURS,
    "qwen": """# Training on this export with the Qwen-VL finetune scripts

Register the splits in `qwenvl/data/__init__.py` of the qwen-vl-finetune folder:

    {name}_train = {{"annotation_path": "{folder}/train.json", "data_path": "{folder}"}}
    {name}_val = {{"annotation_path": "{folder}/val.json", "data_path": "{folder}"}}
    data_dict["{name}_train"] = {name}_train
    data_dict["{name}_val"] = {name}_val

then train with `--dataset_use {name}_train`. These scripts have no system turn: the desk's system
prompt leads each human turn, after the image placeholders.
""",
    "parquet": """# Using this export from Python

One row per example: `messages` (system, user with one `<image>` per image, assistant) and
`images` (each with its `bytes` and its original `path`).

    from datasets import load_dataset
    data = load_dataset("parquet", data_files={{"train": "{folder}/train.parquet",
                                                "validation": "{folder}/val.parquet"}})
"""
    + _OURS,
}


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


def _qwen_item(e: Example) -> dict[str, Any]:
    placeholders = "".join(f"{IMAGE_TOKEN}\n" for _ in e.images)
    item: dict[str, Any] = {
        "id": f"post-{e.post_id}",
        "conversations": [
            {"from": "human", "value": f"{placeholders}{e.system}\n\n{e.user}"},
            {"from": "gpt", "value": e.answer},
        ],
    }
    if len(e.images) == 1:
        item["image"] = e.image_names[0]
    elif e.images:
        item["image"] = e.image_names
    return item


def _write_parquet(path: Path, examples: list[Example], out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    schema = pa.schema([("id", pa.string()), ("post_id", pa.int64()), ("category", pa.string()),
                        ("prompt_version", pa.string()), ("messages", pa.list_(message)),
                        ("images", pa.list_(image))])  # fmt: skip
    rows = {
        "id": [f"post-{e.post_id}" for e in examples],
        "post_id": [e.post_id for e in examples],
        "category": [e.category for e in examples],
        "prompt_version": [e.prompt_version for e in examples],
        "messages": [_messages(e) for e in examples],
        "images": [[{"bytes": (out / n).read_bytes(), "path": n} for n in e.image_names] for e in examples],
    }
    pq.write_table(pa.Table.from_pydict(rows, schema=schema), path)


# ---------------------------------------------------------------------------------------------
# The whole export


@dataclass
class ExportResult:
    export_id: int
    out: Path
    manifest: dict[str, Any]


def export(
    sessions: sessionmaker[Session], actor: Actor, settings: Settings, opts: ExportOptions, out: Path
) -> ExportResult:
    """Select, split and write the examples to ``out`` (a new or empty folder), with the
    manifest, and record the export."""
    require(actor, Permission.EXPORT)
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        raise ReviewError(f"{out} is not empty: export into a new folder")
    with sessions() as session:
        selection = select_examples(session, actor, opts)
    if not selection.examples:
        what = "disagreements" if opts.include == "disagreements" else "decided posts"
        raise ReviewError(f"no {what} match: nothing to export")
    out.mkdir(parents=True, exist_ok=True)
    files = write_examples(selection.examples, out, opts.format, settings.media_dir)
    manifest: dict[str, Any] = {
        "format": opts.format,
        "created_at": datetime.now(UTC).isoformat(),
        "created_by": actor.username,
        "database": safe_url(settings.database_url),
        "filters": opts.as_json(),
        "examples": len(selection.examples),
        "counts": selection.counts(),
        "dropped": dict(selection.dropped),
        "groups": {
            "train": len({e.group for e in selection.examples if e.split == "train"}),
            "val": len({e.group for e in selection.examples if e.split == "val"}),
        },  # fmt: skip
        "prompt_versions": dict(Counter(e.prompt_version for e in selection.examples)),
        "prompt_not_reproduced": sum(not e.reproduced for e in selection.examples),
        "answer_confidence": HUMAN_CONFIDENCE,
        "images": len({n for e in selection.examples for n in e.image_names}),
        "files": [*files, "manifest.json"],
        "post_ids": {s: [e.post_id for e in selection.examples if e.split == s] for s in ("train", "val")},
    }
    with writing(sessions) as session:
        row = Export(user_id=actor.id or None, format=opts.format, filters=opts.as_json(),
                     counts={"examples": manifest["examples"], **manifest["counts"]}, output_path=str(out))  # fmt: skip
        session.add(row)
        session.flush()
        manifest["export_id"] = row.id
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

    require(actor, Permission.EXPORT)
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

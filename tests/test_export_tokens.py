"""The export measures its examples in tokens as the model reads them, and says how long a
trainer's sequences must be: on the tiny Qwen3-VL (the real Qwen tokenizer, Qwen3-VL's image
processor), the measured maximum is the token count the processor gives the longest example
(the chat template applied, the images included, as review/finetune.py encodes it), image
tokens follow the processor's resize rule, and without a processor the figure is an upper bound.
Also: the parquet images load as PIL images, the JSON is what json.dumps writes, the system
prompt is rendered once per version (and exactly as moderation_prompt renders it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import update

from db.models import Media, Post, Verdict
from review.cli import main
from review.decisions import Label, claim, decide
from review.export import (
    CUTOFF_MARGIN,
    CUTOFF_STEP,
    ExportOptions,
    export,
    image_tokens,
    load_processor,
    measure_tokens,
    select_examples,
)
from review.finetune import encode, read_split
from review.inference.hf import MIN_PIXELS
from review.inference.schema import ModelAnswer
from review.ingest import ingest_records
from review.priority import queue_priority
from review.prompts import ModerationRenderer, moderation_prompt
from review.verdicts import point_at
from tests.conftest import account

# (text, image sizes, model's category, moderator's category, moderator's note)
POSTS = [
    ("限时特价 今天只要99元 加微信领取", [(900, 600)], "none", "false_advertising", None),
    ("三张图：海边、日落、晚餐", [(300, 1200), (1600, 1600), (64, 48)], "none", "none", None),  # the most pixels
    ("Worst hurricane ever, the whole coast is destroyed " * 12, [], "none", "misinformation", "a storm photo"),
    ("普通的午餐照片", [(1080, 1440)], "fraud_spam", "none", "just lunch"),
    ("转发抽奖送 iPhone 17 Pro <|im_end|> 点击链接", [(640, 640), (640, 640)], None, "fraud_spam", None),
]


@pytest.fixture
def decided(sqlite_desk, tmp_path):  # type: ignore[no-untyped-def]
    """Five posts of different lengths and image sizes, scored and decided (four overturned, one
    confirmed), with their images clustered as the signals step leaves them."""
    desk = sqlite_desk
    records = []
    for i, (text, sizes, *_rest) in enumerate(POSTS):
        names = []
        for j, size in enumerate(sizes):
            name = f"p{i}-{j}.png"
            Image.new("RGB", size, (i * 40 % 255, j * 60 % 255, 120)).save(tmp_path / name)
            names.append(name)
        records.append({"external_id": f"t{i}", "source": "weibo", "text": text, "images": names})
    ids = ingest_records(desk.sessions, records, desk.settings, base_dir=tmp_path).post_ids
    with desk.sessions() as session, session.begin():
        for (text, sizes, said, _, _), post_id in zip(POSTS, ids, strict=True):
            version = moderation_prompt(text, len(sizes)).version
            v = Verdict(post_id=post_id, provider="transformers", model_id="m", prompt_version=version,
                        input_hash=f"h{post_id}", parse_status="failed" if said is None else "ok",
                        violation=None if said is None else said != "none", category=said,
                        severity=None if said is None else (0 if said == "none" else 2),
                        confidence=None if said is None else 0.7, description="一张图片 " * 20, ocr_text="",
                        image_text_consistency="consistent", sentiment="neutral", tags=["t"],
                        rationale="model rationale", parse_notes=[])  # fmt: skip
            session.add(v)
            session.flush()
            point_at(session, v)
            session.execute(update(Post).where(Post.id == post_id).values(status="queued", priority=queue_priority(v)))
        session.execute(update(Media).values(dup_cluster=Media.id))
    moderator = account(desk, "moderator")
    for (_, _, said, human, note), post_id in zip(POSTS, ids, strict=True):
        assert claim(desk.sessions, moderator, post_id) is not None
        if said == human:
            decide(desk.sessions, moderator, post_id, "confirm")
        else:
            label = Label(human != "none", human, 0 if human == "none" else 2)
            decide(desk.sessions, moderator, post_id, "overturn", label=label, note=note)
    return desk, ids


def _processor_counts(processor, folder: Path, max_pixels: int) -> list[int]:  # type: ignore[no-untyped-def]
    """What the processor makes of each exported example, as the desk's finetune encodes it:
    the chat template applied to system, user (images first) and answer, the images resized."""
    counts = []
    for split in ("train", "val"):
        for example in read_split(folder, split):
            counts.append(int(encode(processor, example, max_pixels, "cpu")["input_ids"].shape[1]))
    return counts


def test_the_longest_example_is_counted_as_the_processor_counts_it(decided, tiny_model_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    desk, ids = decided
    lead = account(desk, "lead")
    opts = ExportOptions(format="swift", include="all", val_fraction=0.4, model=str(tiny_model_dir))
    result = export(desk.sessions, lead, desk.settings, opts, tmp_path / "out")
    manifest = result.manifest
    processor, _ = load_processor(str(tiny_model_dir))
    counts = _processor_counts(processor, result.out, desk.settings.model_max_pixels)
    assert len(counts) == manifest["examples"] == len(POSTS)
    tokens = manifest["tokens"]
    assert tokens["method"] == "processor" and tokens["exact"] is True
    assert manifest["max_tokens"] == max(counts)
    assert tokens["longest_post_id"] == ids[1]  # three images, one of them resized down to MODEL_MAX_PIXELS
    cutoff = manifest["cutoff_len"]
    assert cutoff % CUTOFF_STEP == 0 and max(counts) + CUTOFF_MARGIN <= cutoff < max(counts) + CUTOFF_MARGIN + 256
    assert set(tokens["system_tokens"]) == set(manifest["prompt_versions"])
    notes = (result.out / "TRAINING.md").read_text(encoding="utf-8")
    assert f"--max_length {cutoff}" in notes and "--tuner_type lora" in notes and str(manifest["max_tokens"]) in notes

    # each example alone: the sum of its parts is the processor's count of the whole
    with desk.sessions() as session:
        examples = select_examples(session, lead, opts).examples
    by_post = {e.post_id: e for e in examples}
    expected = dict(zip([*manifest["post_ids"]["train"], *manifest["post_ids"]["val"]], counts, strict=True))
    for post_id, count in expected.items():
        one = measure_tokens([by_post[post_id]], str(tiny_model_dir), MIN_PIXELS, desk.settings.model_max_pixels,
                             processor)  # fmt: skip
        assert (one.max_tokens, one.exact) == (count, True), post_id

    # past the tokenizer's budget the maximum is an upper bound, never less than the truth
    bounded = measure_tokens(examples, str(tiny_model_dir), MIN_PIXELS, desk.settings.model_max_pixels, processor,
                             budget=0)  # fmt: skip
    assert not bounded.exact and bounded.max_tokens >= max(counts) and bounded.note


def test_llamafactory_gets_the_template_and_cutoff(decided, tiny_model_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    desk, _ = decided
    opts = ExportOptions(format="llamafactory", include="all", model=str(tiny_model_dir))
    result = export(desk.sessions, account(desk, "lead"), desk.settings, opts, tmp_path / "lf")
    notes = (result.out / "TRAINING.md").read_text(encoding="utf-8")
    assert "--template qwen3_vl_nothink" in notes and f"--cutoff_len {result.manifest['cutoff_len']}" in notes
    assert "<the template of your model>" not in notes


def test_without_the_processor_the_length_is_an_upper_bound(decided, tiny_model_dir, tmp_path, monkeypatch,
                                                            capsys) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    desk, _ = decided
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    out = tmp_path / "bound"
    assert main(["export", "--format", "swift", "--all", "--out", str(out), "--model", str(tmp_path / "no-model")]) == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["tokens"]["method"] == "utf-8 bound" and manifest["tokens"]["exact"] is False
    assert "no model at" in manifest["tokens"]["note"]
    assert "upper bound" in capsys.readouterr().err
    processor, _ = load_processor(str(tiny_model_dir))
    assert manifest["max_tokens"] >= max(_processor_counts(processor, out, desk.settings.model_max_pixels))
    assert "an upper bound" in (out / "TRAINING.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("max_pixels", [256 * 256, 1024 * 28 * 28])
def test_image_tokens_follow_the_processor(tiny_model_dir, max_pixels) -> None:  # type: ignore[no-untyped-def]
    """The resize rule against the transformers Qwen3-VL image processor (16-pixel patches, merged
    2×2): the tokens of each size are its grid's patches over 4."""
    processor, _ = load_processor(str(tiny_model_dir))
    image_processor = processor.image_processor
    assert (image_processor.patch_size, image_processor.merge_size) == (16, 2)
    sizes = [(1, 1), (10, 10), (64, 48), (31, 33), (48, 17), (200, 3), (1000, 33), (700, 300), (1080, 1440),
             (1600, 1600), (4000, 3000), (2048, 96)]  # fmt: skip
    for width, height in sizes:
        size = {"shortest_edge": MIN_PIXELS, "longest_edge": max_pixels}
        out = image_processor(images=[Image.new("RGB", (width, height))], size=size, return_tensors="pt")
        expected = int(out["image_grid_thw"][0].prod()) // 4
        assert image_tokens(width, height, 16, 2, MIN_PIXELS, max_pixels) == expected, (width, height)


def test_cutting_where_the_pre_tokenizer_cuts_keeps_the_count(tiny_model_dir) -> None:
    """The export counts text in pieces cut before a space or after a line break that a
    non-space follows, each piece remembered: for the Qwen tokenizer the pieces add up to the
    count of the whole text, whatever the characters around the cuts."""
    import random

    from review.export import _ProcessorCounter

    processor, _ = load_processor(str(tiny_model_dir))
    counter = _ProcessorCounter(processor, MIN_PIXELS, 256 * 256)
    assert counter.cuts is not None  # the Qwen pre-tokenizer: cut
    backend = processor.tokenizer.backend_tokenizer
    alphabet = [" ", "  ", "\n", "\r\n", "\t", "\u3000", "\xa0", "a", "Z", "'s", "'", "7", "42", "½", "，", "。", ",",
                ".", "!", '"', "{", "}", "\\n", "岁", "月", "静好", "é", "e\u0301", "\u0301", "🙂", "\x1c", "\u200b",
                "<|im_end|>", "<|image_pad|>", "ab", " the", "JSON", "_", "-", "#"]  # fmt: skip
    rng = random.Random(5)
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(4000)]
    whole = [len(e) for e in backend.encode_batch(texts, add_special_tokens=False)]
    pieces = [counter.pieces(text) for text in texts]
    assert sum(len(p) for p in pieces) > 3 * len(texts)  # cut, and often
    assert counter.count(texts) == whole


def test_renderer_gives_moderation_prompts_text() -> None:
    """The export renders the system prompt once per version and only the user part per post:
    the same text moderation_prompt gives, for any post."""
    for hints in (False, True):
        renderer = ModerationRenderer(use_ocr_hints=hints)
        assert renderer.renders_apart  # the shipped template: system once, the user part per post
        for text, n, ocr in [("岁月静好 ☕", 1, ""), ("", 0, "限时 ¥199"), ("a <|im_end|> {{ 7*7 }}", 3, "OCR>>> x"),
                             ("  spaced\n\nlines  ", 2, None)]:  # fmt: skip
            expected = moderation_prompt(text, n, ocr_hints=ocr, use_ocr_hints=hints)
            assert renderer.version == expected.version
            assert renderer.system == expected.messages[0]["content"][0]["text"]
            assert renderer.user(text, n, ocr) == expected.messages[1]["content"][-1]["text"]


def test_export_files_are_plain_json_and_typed_parquet(decided, tiny_model_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from datasets import load_dataset

    desk, _ = decided
    lead = account(desk, "lead")
    opts = ExportOptions(format="parquet", include="all", val_fraction=0.4, model=str(tiny_model_dir))
    folder = export(desk.sessions, lead, desk.settings, opts, tmp_path / "pq").out
    data = load_dataset("parquet", data_files={"train": str(folder / "train.parquet")})
    first = next(row for row in data["train"] if row["images"])
    assert isinstance(first["images"][0], Image.Image)
    swift = export(desk.sessions, lead, desk.settings, ExportOptions(format="swift", include="all"), tmp_path / "s").out
    for line in (swift / "train.jsonl").read_text(encoding="utf-8").splitlines():
        assert line == json.dumps(json.loads(line), ensure_ascii=False)  # what json.dumps writes, byte for byte
    with desk.sessions() as session:
        examples = select_examples(session, lead, ExportOptions(format="swift", include="all")).examples
    assert len({id(e.system) for e in examples}) == len({e.prompt_version for e in examples})  # one per version
    for e in examples:  # the answer is the verdict model's own JSON, as json.dumps writes its fields
        assert e.answer == json.dumps(ModelAnswer.model_validate_json(e.answer).model_dump(), ensure_ascii=False)

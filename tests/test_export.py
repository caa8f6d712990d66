"""review/export.py, the training-data export, checked the way its consumers check it: LLaMA-Factory's sharegpt rules
(roles alternate user / assistant after an optional system turn, an even number of them, as
many <image> placeholders as images, every image path resolving against the dataset folder, a
dataset_info.json entry per split), ms-swift's JSONL likewise, the Qwen-VL finetune scripts'
human / gpt conversations, and the parquet file loaded with `datasets`. Also: the user turn is
the prompt the verdict was made with, the answer is a valid verdict carrying the moderator's
label, near-duplicates stay on one side of the split, exact duplicates are dropped, personal
data is stripped on request, and the export is recorded (and audited, with the caller's role re-read).

Tokens: the export measures its examples as the model reads them, and says how long a
trainer's sequences must be: on the tiny Qwen3-VL (the real Qwen tokenizer, Qwen3-VL's image
processor), the measured maximum is the token count the processor gives the longest example
(the chat template applied, the images included, as review/finetune.py encodes it), image
tokens follow the processor's resize rule, and without a processor the figure is an upper bound.
Also: the parquet images load as PIL images, the JSON is what json.dumps writes, the system
prompt is rendered once per version (and exactly as moderation_prompt renders it)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select, update

from db.models import AuditEvent, Export, Media, PostMedia, Verdict
from review import auth
from review.auth import PermissionDenied
from review.cli import main
from review.decisions import Label, claim, decide
from review.errors import ReviewError
from review.export import (
    CUTOFF_MARGIN,
    CUTOFF_STEP,
    FORMATS,
    IMAGE_TOKEN,
    ExportOptions,
    export,
    image_tokens,
    load_processor,
    measure_tokens,
    recent_exports,
    select_examples,
    strip_pii,
    zip_folder,
)
from review.finetune import encode, read_split
from review.inference.hf import MIN_PIXELS
from review.inference.schema import ModelAnswer
from review.ingest import ingest_records
from review.prompts import ModerationRenderer, moderation_prompt
from tests.conftest import account
from tests.factories import EXPORT_POSTS, queue_with


def _check_turns(roles: list[str], user: str, assistant: str, system: str | None) -> None:
    body = roles[1:] if system and roles[0] == system else roles
    assert len(body) % 2 == 0 and body, roles
    assert all(r == (user if i % 2 == 0 else assistant) for i, r in enumerate(body)), roles


def _answer(text: str) -> ModelAnswer:
    return ModelAnswer.model_validate_json(text)


def _resolves(folder: Path, paths: list[str]) -> None:
    for p in paths:
        assert not Path(p).is_absolute()
        with Image.open(folder / p) as img:
            img.verify()


def _load(folder: Path, fmt: str) -> dict[str, list[dict]]:
    """Each split as (user text with placeholders, image paths, system text or None, answer)."""
    out = {}
    for split in ("train", "val"):
        rows = []
        if fmt in ("llamafactory", "swift"):
            path = folder / (f"{split}.json" if fmt == "llamafactory" else f"{split}.jsonl")
            text = path.read_text(encoding="utf-8")
            items = json.loads(text) if fmt == "llamafactory" else [json.loads(line) for line in text.splitlines()]
            for item in items:
                roles = [m["role"] for m in item["messages"]]
                _check_turns(roles, "user", "assistant", "system")
                users = [m["content"] for m in item["messages"] if m["role"] == "user"]
                assert sum(u.count(IMAGE_TOKEN) for u in users) == len(item["images"])
                _resolves(folder, item["images"])
                rows.append({"user": users[0], "images": item["images"], "system": item["messages"][0]["content"],
                             "answer": item["messages"][-1]["content"]})  # fmt: skip
        elif fmt == "qwen":
            for item in json.loads((folder / f"{split}.json").read_text(encoding="utf-8")):
                turns = item["conversations"]
                _check_turns([t["from"] for t in turns], "human", "gpt", None)
                images = [item["image"]] if isinstance(item.get("image"), str) else item.get("image", [])
                assert sum(t["value"].count(IMAGE_TOKEN) for t in turns if t["from"] == "human") == len(images)
                _resolves(folder, images)
                rows.append({"user": turns[0]["value"], "images": images, "system": None, "answer": turns[-1]["value"]})
        else:
            import pyarrow.parquet as pq
            from datasets import load_dataset

            data = load_dataset("parquet", data_files=str(folder / f"{split}.parquet"), split="train")
            stored = pq.read_table(folder / f"{split}.parquet", columns=["images"]).column("images").to_pylist()
            for item, files in zip(data, stored, strict=True):
                roles = [m["role"] for m in item["messages"]]
                _check_turns(roles, "user", "assistant", "system")
                assert item["messages"][1]["content"].count(IMAGE_TOKEN) == len(item["images"])
                for image, file in zip(item["images"], files, strict=True):  # typed: datasets gives PIL images
                    assert isinstance(image, Image.Image)
                    with Image.open(io.BytesIO(file["bytes"])) as img:
                        assert img.size == image.size
                messages = item["messages"]
                paths = [i["path"] for i in files]
                rows.append({"user": messages[1]["content"], "images": paths, "system": messages[0]["content"],
                             "answer": messages[-1]["content"]})  # fmt: skip
        out[split] = rows
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_reads_as_its_trainer_reads_it(desk, world, tmp_path, fmt) -> None:
    lead = account(desk, "lead")
    result = export(desk.sessions, lead, desk.settings, ExportOptions(format=fmt, val_fraction=0.3), tmp_path / fmt)
    folder = result.out
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest == result.manifest | {"export_id": result.export_id}
    splits = _load(folder, fmt)
    rows = splits["train"] + splits["val"]
    # the disagreements only (the agreed post and the confirmed mug are out), one of the exact duplicates dropped
    assert len(rows) == manifest["examples"] == 8 and manifest["dropped"] == {"exact duplicates": 1}
    assert sum(manifest["counts"]["val"].values()) == len(splits["val"]) >= 1
    labels = sorted(_answer(r["answer"]).category for r in rows)
    assert labels == sorted(["false_advertising", "false_advertising", "false_advertising", "none", "none",
                             "misinformation", "hate_harassment", "fraud_spam"])  # fmt: skip
    for r in rows:
        answer = _answer(r["answer"])
        assert answer.violation == (answer.category != "none") and answer.confidence == 0.95
    if fmt == "llamafactory":
        info = json.loads((folder / "dataset_info.json").read_text(encoding="utf-8"))
        for split in ("train", "val"):
            entry = info[f"review_desk_{split}"]
            assert (folder / entry["file_name"]).exists() and entry["formatting"] == "sharegpt"
            assert entry["columns"] == {"messages": "messages", "images": "images"}
            assert entry["tags"]["system_tag"] == "system"
    assert str(folder) in (folder / "TRAINING.md").read_text(encoding="utf-8")  # how to train, for this folder
    assert set(manifest["files"]) <= {p.name for p in folder.iterdir()}
    with desk.sessions() as session:
        row = session.scalars(select(Export)).one()
        assert (row.format, row.user_id, row.output_path) == (fmt, lead.id, str(folder))


def test_the_user_turn_is_the_prompt_the_verdict_was_made_with(desk, world, tmp_path) -> None:
    lead = account(desk, "lead")
    with desk.sessions() as session:
        examples = select_examples(session, lead, ExportOptions(format="swift")).examples
    by_post = {e.post_id: e for e in examples}
    first = by_post[world[0]]  # scored with today's prompt
    expected = moderation_prompt(EXPORT_POSTS[0][0], 1)
    assert first.reproduced and first.prompt_version == expected.version
    assert first.system == expected.messages[0]["content"][0]["text"]
    assert first.user == expected.messages[1]["content"][-1]["text"]
    assert not by_post[world[1]].reproduced  # an old version: today's prompt, flagged in the manifest
    # the answer keeps the model's own reading, with the moderator's label and note
    answer = _answer(first.answer)
    assert (answer.category, answer.severity, answer.description) == ("false_advertising", 2, "picture 0")
    assert _answer(by_post[world[5]].answer).rationale == "note"
    failed = _answer(by_post[world[6]].answer)  # no usable verdict: no model reading to keep
    assert failed.description == "" and failed.category == "none"
    assert len(by_post[world[7]].images) == 2 and by_post[world[7]].user.count(IMAGE_TOKEN) == 0
    # a literal <image> in a post is defused: trainers would read it as a placeholder without a picture
    assert IMAGE_TOKEN not in by_post[world[10]].user and "看图" in by_post[world[10]].user


def test_split_keeps_near_duplicates_together_and_options_narrow(desk, world, tmp_path) -> None:
    lead = account(desk, "lead")
    with desk.sessions() as session:
        for seed in range(6):
            examples = select_examples(
                session, lead, ExportOptions(format="qwen", val_fraction=0.4, seed=seed)
            ).examples
            split = {e.post_id: e.split for e in examples}
            assert split[world[0]] == split[world[1]] == split[world[10]], seed  # cluster 7 and the same picture
            assert "val" in split.values() and "train" in split.values()
        everything = select_examples(session, lead, ExportOptions(format="qwen", include="all")).examples
        assert len(everything) == 10  # eleven decided posts less the exact duplicate
        capped = select_examples(session, lead, ExportOptions(format="qwen", cap_per_category=1))
        per_category = [e.category for e in capped.examples]
        assert len(per_category) == len(set(per_category)) == 5  # one each of the five categories
        assert capped.dropped["over the cap per category"] == 3  # two of three false_advertising, one of two none
        only = select_examples(session, lead, ExportOptions(format="qwen", categories=("none",))).examples
        assert {e.category for e in only} == {"none"} and len(only) == 2
        private = select_examples(session, lead, ExportOptions(format="qwen", strip_pii=True)).examples
        text = next(e for e in private if e.post_id == world[0]).user
        assert "138-1234-5678" not in text and "[phone]" in text
        with pytest.raises(PermissionDenied):
            select_examples(session, account(desk, "moderator"), ExportOptions(format="qwen"))
        with pytest.raises(ReviewError, match="unknown format"):
            select_examples(session, lead, ExportOptions(format="alpaca"))
        with pytest.raises(ReviewError, match="unknown categories"):
            select_examples(session, lead, ExportOptions(format="qwen", categories=("spam",)))


def test_refusals_and_the_command_line(desk, world, tmp_path, monkeypatch, capsys) -> None:
    lead = account(desk, "lead")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    with pytest.raises(ReviewError, match="not empty"):
        export(desk.sessions, lead, desk.settings, ExportOptions(format="swift"), busy)
    with pytest.raises(ReviewError, match="nothing to export"):
        export(desk.sessions, lead, desk.settings, ExportOptions(format="swift", source="nowhere"), tmp_path / "none")
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    out = tmp_path / "cli"
    assert main(["export", "--format", "llamafactory", "--out", str(out), "--strip-pii", "--val-fraction", "0.2"]) == 0
    said = capsys.readouterr()
    assert "8 examples" in said.out and "dropped 1: exact duplicates" in said.out
    assert "no longer the current one" in said.err
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["filters"]["strip_pii"] is True and manifest["created_by"] == "(command line)"
    assert main(["export", "--format", "llamafactory", "--out", str(out)]) == 2  # not empty
    with zipfile.ZipFile(io.BytesIO(zip_folder(out))) as archive:  # what the page's download holds
        names = set(archive.namelist())
    assert {"cli/manifest.json", "cli/train.json", "cli/dataset_info.json"} <= names
    assert sum(n.startswith("cli/images/") for n in names) == manifest["images"]


def test_images_without_clusters_are_refused_unless_allowed(desk, world, tmp_path, monkeypatch, capsys) -> None:
    """Before the signals step has clustered a post's images, the split cannot keep its near
    duplicates together: the export says which command fixes that, or exports when allowed."""
    lead = account(desk, "lead")
    with desk.sessions() as session, session.begin():  # the first two posts' images: signals not computed yet
        media = session.scalars(select(PostMedia.media_id).where(PostMedia.post_id.in_([world[0], world[1]]))).all()
        session.execute(update(Media).where(Media.id.in_(media)).values(dup_cluster=None))
    with pytest.raises(ReviewError, match="python -m review signals") as refused:
        export(desk.sessions, lead, desk.settings, ExportOptions(format="swift"), tmp_path / "refused")
    assert "3 of the 8 examples" in str(refused.value)  # the two posts and the other caption on the first picture
    assert not (tmp_path / "refused").exists()
    with desk.sessions() as session, pytest.raises(ReviewError, match="--allow-ungrouped"):
        select_examples(session, lead, ExportOptions(format="swift"))  # the page's preview says so too
    allowed = export(desk.sessions, lead, desk.settings, ExportOptions(format="swift", allow_ungrouped=True),
                     tmp_path / "allowed")  # fmt: skip
    assert allowed.manifest["examples"] == 8 and allowed.manifest["ungrouped"] == 3
    assert allowed.manifest["filters"]["allow_ungrouped"] is True
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    capsys.readouterr()
    assert main(["export", "--format", "qwen", "--out", str(tmp_path / "cli-refused")]) == 2
    assert "python -m review signals" in capsys.readouterr().err
    assert main(["export", "--format", "qwen", "--out", str(tmp_path / "cli"), "--allow-ungrouped", "--quiet"]) == 0
    said = capsys.readouterr()
    assert "8 examples" in said.out and "3 examples have images without a near-duplicate cluster" in said.err


@pytest.mark.parametrize("with_cp", [True, False])
def test_each_image_is_copied_once_and_a_missing_one_is_named(desk, world, tmp_path, monkeypatch, with_cp) -> None:
    import review.export

    if not with_cp:  # no cp on the machine: Python copies
        monkeypatch.setattr(review.export.shutil, "which", lambda name: None)
    lead = account(desk, "lead")
    result = export(desk.sessions, lead, desk.settings, ExportOptions(format="swift", include="all"), tmp_path / "ok")
    copied = sorted(p.name for p in (result.out / "images").iterdir())
    with desk.sessions() as session:
        stored = session.scalars(select(Media.path)).all()
    assert copied == sorted(Path(p).name for p in stored) and len(copied) == result.manifest["images"]
    for p in copied:
        assert (result.out / "images" / p).read_bytes() == next(
            (desk.settings.media_dir / s).read_bytes() for s in stored if Path(s).name == p
        )
    (desk.settings.media_dir / stored[0]).unlink()
    with pytest.raises(ReviewError, match="MEDIA_DIR"):
        export(desk.sessions, lead, desk.settings, ExportOptions(format="swift", include="all"), tmp_path / "missing")


def test_strip_pii_keeps_ordinary_text() -> None:
    assert strip_pii("加微信 wx: meiyan_8888，电话 138 1234 5678") == "加微信 wx: [id]，电话 [phone]"
    assert strip_pii("DM @win_prize_now or mail a.b@example.com, see https://t.me/x") == (
        "DM [handle] or mail [email], see [link]"
    )
    for harmless in ("iPhone 17 Pro 仅需 ¥999", "年化30%，名额有限 2026-11-01", "v 2024 edition", "qq 12 是我的分数"):
        assert strip_pii(harmless) == harmless


def test_a_purge_while_the_export_runs_leaves_no_export_behind(desk, world, tmp_path) -> None:
    """A purge committed after the export selected its posts but before it recorded itself finds
    no export row, so it cannot list the folder that holds the erased post: the export checks
    its posts again in its last transaction, refuses, and removes what it wrote."""
    from review import purge as purging

    lead, admin = account(desk, "lead"), account(desk, "admin")
    folder = tmp_path / "racing"
    purges: list[purging.Erasure] = []

    def progress(stage: str, total: int):
        def tick(done: int) -> None:
            if stage == "writing" and done == total and not purges:  # every example is written out
                purges.append(purging.purge(desk.sessions, admin, desk.settings, [world[0]], reason="request"))

        return tick

    with pytest.raises(ReviewError, match="were erased while the export ran") as refused:
        export(desk.sessions, lead, desk.settings, ExportOptions(format="swift"), folder, progress=progress)
    assert f"post {world[0]}" in str(refused.value) and "run it again" in str(refused.value)
    assert purges[0].erased == [world[0]] and purges[0].export_folders == []  # it knew of no export
    assert not folder.exists()
    with desk.sessions() as session:
        assert session.scalars(select(Export)).all() == []
    again = export(desk.sessions, lead, desk.settings, ExportOptions(format="swift"), tmp_path / "again")
    assert again.manifest["examples"] == 7 and world[0] not in sum(again.manifest["post_ids"].values(), [])


def test_export_rereads_the_role_and_is_audited(desk, world, tmp_path) -> None:
    lead = account(desk, "lead")
    result = export(desk.sessions, lead, desk.settings, ExportOptions(format="swift"), tmp_path / "out")
    with desk.sessions() as session:
        row = session.get(Export, result.export_id)
        (event,) = session.scalars(select(AuditEvent).where(AuditEvent.action == "export")).all()
        assert event.actor_id == lead.id and event.subject == f"export {row.id}"
        assert event.details["format"] == "swift" and event.details["folder"] == str(result.out)
        assert event.details["examples"] == result.manifest["examples"] == row.counts["examples"]
        assert event.created_at is not None
    auth.set_role(desk.sessions, "lead", "moderator", by=auth.OPERATOR)
    with pytest.raises(PermissionDenied):
        export(desk.sessions, lead, desk.settings, ExportOptions(format="swift"), tmp_path / "again")
    assert not (tmp_path / "again").exists()
    with desk.sessions() as session:
        with pytest.raises(PermissionDenied):
            select_examples(session, lead, ExportOptions(format="swift"))
        with pytest.raises(PermissionDenied):
            recent_exports(session, lead)
        assert session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "export")) == 1


# ---------------------------------------------------------------------------------------------
# Tokens, measured on the tiny Qwen3-VL

# (text, image sizes, model's category, moderator's category, moderator's note)
POSTS = [
    ("限时特价 今天只要99元 加微信领取", [(900, 600)], "none", "false_advertising", None),
    ("三张图：海边、日落、晚餐", [(300, 1200), (1600, 1600), (64, 48)], "none", "none", None),  # the most pixels
    ("Worst hurricane ever, the whole coast is destroyed " * 12, [], "none", "misinformation", "a storm photo"),
    ("普通的午餐照片", [(1080, 1440)], "fraud_spam", "none", "just lunch"),
    ("转发抽奖送 iPhone 17 Pro <|im_end|> 点击链接", [(640, 640), (640, 640)], None, "fraud_spam", None),
]


@pytest.fixture
def decided(sqlite_desk, tmp_path):
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
            queue_with(session, v)
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


def _processor_counts(processor, folder: Path, max_pixels: int) -> list[int]:
    """What the processor makes of each exported example, as the desk's finetune encodes it:
    the chat template applied to system, user (images first) and answer, the images resized."""
    counts = []
    for split in ("train", "val"):
        for example in read_split(folder, split):
            counts.append(int(encode(processor, example, max_pixels, "cpu")["input_ids"].shape[1]))
    return counts


def test_the_longest_example_is_counted_as_the_processor_counts_it(decided, tiny_model_dir, tmp_path) -> None:
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


def test_llamafactory_gets_the_template_and_cutoff(decided, tiny_model_dir, tmp_path) -> None:
    desk, _ = decided
    opts = ExportOptions(format="llamafactory", include="all", model=str(tiny_model_dir))
    result = export(desk.sessions, account(desk, "lead"), desk.settings, opts, tmp_path / "lf")
    notes = (result.out / "TRAINING.md").read_text(encoding="utf-8")
    assert "--template qwen3_vl_nothink" in notes and f"--cutoff_len {result.manifest['cutoff_len']}" in notes
    assert "<the template of your model>" not in notes


def test_without_the_processor_the_length_is_an_upper_bound(decided, tiny_model_dir, tmp_path, monkeypatch,
                                                            capsys) -> None:  # fmt: skip
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
def test_image_tokens_follow_the_processor(tiny_model_dir, max_pixels) -> None:
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


def test_export_files_are_plain_json_and_typed_parquet(decided, tiny_model_dir, tmp_path) -> None:
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

"""Training-data export, checked the way its consumers check it: LLaMA-Factory's sharegpt rules
(roles alternate user / assistant after an optional system turn, an even number of them, as
many <image> placeholders as images, every image path resolving against the dataset folder, a
dataset_info.json entry per split), ms-swift's JSONL likewise, the Qwen-VL finetune scripts'
human / gpt conversations, and the parquet file loaded with `datasets`. Also: the user turn is
the prompt the verdict was made with, the answer is a valid verdict carrying the moderator's
label, near-duplicates stay on one side of the split, exact duplicates are dropped, personal
data is stripped on request, and the export is recorded."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select, update

from db.models import Export, Media, Post, PostMedia, Verdict
from review.auth import PermissionDenied
from review.cli import main
from review.decisions import Label, claim, decide
from review.errors import ReviewError
from review.export import FORMATS, IMAGE_TOKEN, ExportOptions, export, select_examples, strip_pii, zip_folder
from review.inference.schema import ModelAnswer
from review.ingest import ingest_records
from review.priority import queue_priority
from review.prompts import moderation_prompt
from review.verdicts import point_at
from tests.conftest import account

# (text, model's category, moderator's category, image seed); seeds repeat for shared images
POSTS = [
    ("全网最好的面霜，100%有效 联系电话 138-1234-5678", "none", "false_advertising", 1),
    ("转发：全网最好的面霜", "none", "false_advertising", 2),  # a near-duplicate of the first (cluster 7)
    ("兼职刷单，日赚500+ 加微信 wx: meiyan_8888", "fraud_spam", "fraud_spam", 3),  # agreed: not a disagreement
    ("Lose 10 kg in 7 days", "fraud_spam", "false_advertising", 4),
    ("Lose 10 kg in 7 days", "fraud_spam", "false_advertising", 4),  # an exact duplicate of the one above
    ("周一早上的我", "hate_harassment", "none", 5),
    ("海边三连拍", None, "none", 6),  # the model failed: a disagreement by definition
    ("Worst hurricane ever, the whole coast is destroyed", "none", "misinformation", 8),
    ("You are all idiots, get lost", "none", "hate_harassment", 9),
    ("新买的马克杯，颜色很喜欢", "none", "none", 10),
    ("看图 <image> 免费领取 iPhone", "none", "fraud_spam", 1),  # the first post's picture, another caption
]


def _png(seed: int) -> Image.Image:
    return Image.new("RGB", (64 + seed, 48), (seed * 40 % 255, 80, 200 - seed * 10))


@pytest.fixture
def world(desk, tmp_path):  # type: ignore[no-untyped-def]
    records = []
    for i, (text, *_rest, seed) in enumerate(POSTS):
        names = [f"img{seed}.png"] + ([f"img{seed}b.png"] if i == 7 else [])  # post 7 has two images
        for name in names:
            _png(seed + (50 if name.endswith("b.png") else 0)).save(tmp_path / name)
        records.append({"external_id": f"e{i}", "source": "weibo", "text": text, "images": names})
    ids = ingest_records(desk.sessions, records, desk.settings, base_dir=tmp_path).post_ids
    with desk.sessions() as session, session.begin():
        for i, ((text, said, _, _), post_id) in enumerate(zip(POSTS, ids, strict=True)):
            n_images = 2 if i == 7 else 1
            version = moderation_prompt(text, n_images).version if i % 2 == 0 else "moderation@oldversion1"
            v = Verdict(post_id=post_id, provider="transformers", model_id="m", prompt_version=version,
                        input_hash=f"x{i}", parse_status="failed" if said is None else "ok",
                        violation=None if said is None else said != "none", category=said,
                        severity=None if said is None else (0 if said == "none" else 2),
                        confidence=None if said is None else 0.8, description=f"picture {i}", ocr_text="",
                        image_text_consistency="consistent", sentiment="neutral", tags=["t"],
                        rationale=f"model rationale {i}", parse_notes=[])  # fmt: skip
            session.add(v)
            session.flush()
            point_at(session, v)
            session.execute(update(Post).where(Post.id == post_id).values(status="queued", priority=queue_priority(v)))
        media = session.scalars(
            select(PostMedia.media_id).where(PostMedia.post_id.in_([ids[0], ids[1]]))
        ).all()  # the first two posts are near-duplicates of each other
        # as after `python -m review signals`: every image in a cluster, most of them alone
        session.execute(update(Media).values(dup_cluster=Media.id + 1000))
        session.execute(update(Media).where(Media.id.in_(media)).values(dup_cluster=7))
    moderator = account(desk, "moderator")
    for (_, said, human, _), post_id in zip(POSTS, ids, strict=True):
        assert claim(desk.sessions, moderator, post_id) is not None
        if said == human:
            decide(desk.sessions, moderator, post_id, "confirm")
        else:
            label = Label(human != "none", human, 0 if human == "none" else 2)
            decide(desk.sessions, moderator, post_id, "overturn", label=label, note="note" if human == "none" else None)
    return ids


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


def _load(folder: Path, fmt: str) -> dict[str, list[dict]]:  # type: ignore[type-arg]
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
def test_each_format_reads_as_its_trainer_reads_it(desk, world, tmp_path, fmt) -> None:  # type: ignore[no-untyped-def]
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


def test_the_user_turn_is_the_prompt_the_verdict_was_made_with(desk, world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lead = account(desk, "lead")
    with desk.sessions() as session:
        examples = select_examples(session, lead, ExportOptions(format="swift")).examples
    by_post = {e.post_id: e for e in examples}
    first = by_post[world[0]]  # scored with today's prompt
    expected = moderation_prompt(POSTS[0][0], 1)
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


def test_split_keeps_near_duplicates_together_and_options_narrow(desk, world, tmp_path) -> None:  # type: ignore[no-untyped-def]
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


def test_refusals_and_the_command_line(desk, world, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
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


def test_images_without_clusters_are_refused_unless_allowed(desk, world, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
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
def test_each_image_is_copied_once_and_a_missing_one_is_named(desk, world, tmp_path, monkeypatch, with_cp) -> None:  # type: ignore[no-untyped-def]
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


def test_export_page(desk, world, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Leads preview the counts and export from the page (into EXPORT_DIR); moderators are refused."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from pages._common import ACTOR
    from tests.test_app_analytics import DASHBOARD

    st.cache_resource.clear()
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    monkeypatch.setenv("EXPORT_DIR", str(tmp_path / "exports"))

    def page(role: str) -> AppTest:
        at = AppTest.from_file(DASHBOARD, default_timeout=60)
        at.session_state[ACTOR] = account(desk, role)
        at.switch_page("pages/export.py")
        return at.run()

    refused = page("moderator")
    assert any("may not export" in e.value for e in refused.error)

    at = page("lead")
    assert not at.exception
    next(b for b in at.button if b.label == "Preview").click().run()
    assert not at.exception
    assert any(s.value == "8 examples" for s in at.subheader)
    shown = at.dataframe[0].value
    assert shown["train"].sum() + shown["validation"].sum() == 8
    next(b for b in at.button if b.label == "Export").click().run()
    assert not at.exception
    assert any("8 examples written" in s.value for s in at.success)
    folders = list((tmp_path / "exports").iterdir())
    assert len(folders) == 1 and (folders[0] / "dataset_info.json").exists()  # LLaMA-Factory, the first format
    assert any(b.proto.label.endswith(".zip") for b in at.get("download_button"))
    assert any(t.value.startswith("Longest example:") and "cutoff length" in t.value for t in at.text)

    # images the signals step has not clustered yet: refused, until the box allowing them is ticked
    with desk.sessions() as session, session.begin():
        first = session.scalars(select(Media.id).order_by(Media.id)).first()
        session.execute(update(Media).where(Media.id == first).values(dup_cluster=None))
    next(b for b in at.button if b.label == "Preview").click().run()
    assert any("python -m review signals" in c.value for c in at.code)
    next(c for c in at.checkbox if c.label == "Allow images without near-duplicate clusters").check()
    next(b for b in at.button if b.label == "Preview").click().run()
    assert not at.exception and any(s.value == "8 examples" for s in at.subheader)


def test_a_purge_while_the_export_runs_leaves_no_export_behind(desk, world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A purge committed after the export selected its posts but before it recorded itself finds
    no export row, so it cannot list the folder that holds the erased post: the export checks
    its posts again in its last transaction, refuses, and removes what it wrote."""
    from review import purge as purging

    lead, admin = account(desk, "lead"), account(desk, "admin")
    folder = tmp_path / "racing"
    purges: list[purging.Erasure] = []

    def progress(stage: str, total: int):  # type: ignore[no-untyped-def]
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

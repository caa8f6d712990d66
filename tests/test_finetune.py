"""review/finetune.py, the loop closed on the tiny random Qwen3-VL: demo posts → scored → moderators' decisions →
export → LoRA fine-tuning (2 steps) → base and adapter evaluated side by side → the adapter
reloads for scoring, and the vision tower is untouched. Random weights answer garbage, so the
evaluation's numbers are not the point here: that every stage reads what the one before wrote,
and that the loss is on the answer only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import FinetuneRun
from review.auth import OPERATOR
from review.cli import main
from review.demo import load_demo, simulate_history
from review.errors import ReviewError
from review.export import ExportOptions, export
from review.finetune import LANGUAGE_TARGETS, TrainParams, encode, finetune, load_base, read_split
from review.inference.baseline import BaselineProvider
from review.scoring import Scorer
from tests.conftest import account


def _targets(model_dir: Path) -> list[str]:
    from peft import LoraConfig, get_peft_model

    _, model, _ = load_base(str(model_dir))
    model = get_peft_model(model, LoraConfig(r=2, target_modules=LANGUAGE_TARGETS))
    return [name for name, module in model.named_modules() if hasattr(module, "lora_A") and name]


def test_lora_targets_spare_the_vision_tower(tiny_model_dir, tiny_qwen2_5_dir) -> None:
    """Qwen2.5-VL's vision blocks have gate/up/down_proj too: the regex must still skip them."""
    from transformers import AutoModelForImageTextToText

    vision_mlp = [n for n, _ in AutoModelForImageTextToText.from_pretrained(tiny_qwen2_5_dir).named_modules()
                  if "visual" in n and n.endswith("gate_proj")]  # fmt: skip
    assert vision_mlp, "the Qwen2.5-VL fixture should have vision MLP projections named like the decoder's"
    for folder in (tiny_model_dir, tiny_qwen2_5_dir):
        targets = _targets(folder)
        assert targets and not [t for t in targets if "visual" in t]
        assert {t.rsplit(".", 1)[1] for t in targets} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                          "up_proj", "down_proj"}  # fmt: skip


@pytest.fixture
def exported(sqlite_desk, tmp_path):
    desk = sqlite_desk
    load_demo(desk.sessions, desk.settings)
    Scorer(desk.sessions, desk.settings, BaselineProvider()).run()  # no signals: the rules still judge the text
    simulate_history(desk.sessions, account(desk, "admin"))
    result = export(desk.sessions, account(desk, "lead"), desk.settings,
                    ExportOptions(format="swift", include="all", val_fraction=0.25, allow_ungrouped=True),
                    tmp_path / "export")  # fmt: skip  # no signals here, so no near-duplicate clusters
    return desk, result.out


def test_loss_is_on_the_answer_only(exported, tiny_model_dir) -> None:
    _, folder = exported
    example = next(e for e in read_split(folder, "train") if e.images)
    processor, _, device = load_base(str(tiny_model_dir))
    inputs = encode(processor, example, 64 * 28 * 28, device)
    labels = inputs["labels"][0]
    answered = labels[labels != -100]
    assert processor.tokenizer.decode(answered) == example.answer + "<|im_end|>\n"
    start = len(labels) - len(answered)
    assert bool((labels[:start] == -100).all()) and bool((inputs["input_ids"][0][start:] == answered).all())
    assert "pixel_values" in inputs  # the images go in with the prompt


def test_the_whole_loop(exported, tiny_model_dir, tmp_path, monkeypatch, capsys) -> None:
    import torch
    from peft import PeftModel
    from safetensors import safe_open

    desk, folder = exported
    adapter = tmp_path / "adapter"
    result = finetune(folder, str(tiny_model_dir), adapter, TrainParams(max_steps=2, batch_size=2, lora_r=4),
                      sessions=desk.sessions, actor=OPERATOR)  # fmt: skip
    assert result.steps == 2 and len(result.losses) == 2 and all(loss > 0 for loss in result.losses)
    log = [json.loads(line) for line in (adapter / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2]
    assert json.loads((adapter / "export_manifest.json").read_text()) == json.loads(
        (folder / "manifest.json").read_text()
    )
    with safe_open(adapter / "adapter_model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert keys and not [k for k in keys if "visual" in k] and all("lora_" in k for k in keys)

    # the vision tower of base + adapter is the base's, weight for weight
    _, base, _ = load_base(str(tiny_model_dir))
    visual = {n: p.detach().clone() for n, p in base.named_parameters() if "visual" in n}
    adapted = PeftModel.from_pretrained(base, adapter)
    after = {n.removeprefix("base_model.model."): p for n, p in adapted.named_parameters() if "visual" in n}
    assert visual.keys() == after.keys() and all(torch.equal(visual[n], after[n]) for n in visual)

    with desk.sessions() as session:
        run = session.scalars(select(FinetuneRun)).one()
        assert (run.status, run.base_model, run.metrics["steps"]) == ("done", str(tiny_model_dir), 2)
        assert run.export_id == json.loads((folder / "manifest.json").read_text())["export_id"]

    # evaluate base and adapter side by side, from the command line as a user would
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    argv = ["evaluate", str(folder), "--model", str(tiny_model_dir), "--adapter", str(adapter), "--max-new-tokens",
            "12", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "base" in table and "with adapter" in table and "examples" in table
    evaluation = json.loads((adapter / "evaluation.json").read_text())
    val = len(read_split(folder, "val"))
    assert [r["examples"] for r in evaluation["results"]] == [val, val]
    assert evaluation["results"][1]["adapter"] == str(adapter)
    with desk.sessions() as session:
        from review.evaluate import comparisons

        rows = comparisons(session, account(desk, "lead"))
    assert [r["adapter"] for r in rows] == [None, str(adapter)]

    # the adapter serves verdicts: the transformers provider loads it as scoring would
    from review.inference import load_provider

    provider = load_provider(desk.settings, name="transformers", model=str(tiny_model_dir), adapter=str(adapter))
    assert provider.adapter == str(adapter)


def test_refusals(exported, tmp_path) -> None:
    desk, folder = exported
    with pytest.raises(ReviewError, match="not an export"):
        read_split(tmp_path, "train")
    qwen_opts = ExportOptions(format="qwen", include="all", allow_ungrouped=True)
    qwen = export(desk.sessions, OPERATOR, desk.settings, qwen_opts, tmp_path / "q")
    with pytest.raises(ReviewError, match="no system turn"):
        read_split(qwen.out, "train")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    with pytest.raises(ReviewError, match="not empty"):
        finetune(folder, "unused", busy)
    with pytest.raises(ReviewError, match="at least 1"):  # refused before any model is loaded
        finetune(folder, "unused", tmp_path / "new", TrainParams(max_steps=0))
    assert not (tmp_path / "new").exists()

"""LoRA fine-tuning of a Qwen-VL model on an export, with PEFT.

``python -m review finetune EXPORT_DIR --base MODEL --out ADAPTER_DIR`` reads the export's train
split (the llamafactory, swift or parquet format: they keep the system turn), renders each
example with the model's own chat template exactly as the transformers provider renders a
prompt, and trains LoRA matrices on the language model's attention and MLP projections only:
the vision tower and its merger stay frozen and untouched (Qwen2.5-VL's vision blocks also have
``gate_proj`` / ``up_proj`` / ``down_proj``, so the target is a regex that excludes every module
under ``visual``). The loss is on the assistant's answer only: the prompt's tokens (system,
images, post text) are masked with -100. The adapter is saved with PEFT's ``save_pretrained``
beside the export's manifest, the training log (``train_log.jsonl``) and ``finetune.json``; a
``finetune_run`` row records the run.
"""

from __future__ import annotations

import io
import json
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from db.models import FinetuneRun
from db.session import writing
from review.auth import Actor, Permission, require
from review.errors import ReviewError
from review.export import IMAGE_TOKEN
from review.inference.hf import MIN_PIXELS  # the same image bounds as scoring and the export's token count

if TYPE_CHECKING:
    from transformers import PreTrainedModel, ProcessorMixin

# LoRA targets: the decoder's attention and MLP projections, never a module under the vision tower.
LANGUAGE_TARGETS = r"^(?!.*visual).*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
TRAINABLE_FORMATS = ("llamafactory", "swift", "parquet")


@dataclass
class TrainExample:
    system: str
    user: str  # the user turn's text, without the image placeholders
    images: list[Any]  # file paths or bytes, in order
    answer: str  # the assistant's verdict JSON

    def pictures(self) -> list[Image.Image]:
        out = []
        for image in self.images:
            with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as img:
                out.append(img.convert("RGB"))
        return out

    def messages(self, with_answer: bool = True) -> list[dict[str, Any]]:
        """The chat in the Hugging Face format the provider renders (images before the text)."""
        user = [*({"type": "image"} for _ in self.images), {"type": "text", "text": self.user}]
        out = [
            {"role": "system", "content": [{"type": "text", "text": self.system}]},
            {"role": "user", "content": user},
        ]
        if with_answer:
            out.append({"role": "assistant", "content": [{"type": "text", "text": self.answer}]})
        return out


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / "manifest.json"
    if not path.is_file():
        raise ReviewError(f"{folder} is not an export (no manifest.json): python -m review export --out {folder}")
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return manifest


def read_split(folder: Path, split: str) -> list[TrainExample]:
    """One split of an export as examples (images as paths under ``folder`` or as bytes)."""
    fmt = read_manifest(folder).get("format")
    if fmt not in TRAINABLE_FORMATS:
        raise ReviewError(
            f"this export is in the {fmt!r} format, which has no system turn; train it with its own scripts, or "
            f"export again as {' / '.join(TRAINABLE_FORMATS)} for python -m review finetune / evaluate"
        )
    if fmt == "parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(folder / f"{split}.parquet").to_pylist()
        items = [(r["messages"], [i["bytes"] for i in r["images"]]) for r in rows]
    else:
        text = (folder / (f"{split}.json" if fmt == "llamafactory" else f"{split}.jsonl")).read_text(encoding="utf-8")
        records = json.loads(text) if fmt == "llamafactory" else [json.loads(line) for line in text.splitlines()]
        items = [(r["messages"], [folder / p for p in r["images"]]) for r in records]
    out = []
    for messages, images in items:
        by_role = {m["role"]: m["content"] for m in messages}
        user = by_role["user"]
        if user.count(IMAGE_TOKEN) != len(images):
            raise ReviewError(
                f"an example of {folder} has {user.count(IMAGE_TOKEN)} image placeholders for {len(images)} images"
            )
        out.append(TrainExample(by_role.get("system", ""), user.replace(IMAGE_TOKEN, ""), images, by_role["assistant"]))
    return out


@dataclass(frozen=True)
class TrainParams:
    epochs: int = 1
    lr: float = 2e-4
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    batch_size: int = 1  # examples per optimizer step (gradients accumulated one example at a time)
    max_steps: int | None = None  # stop after this many optimizer steps
    max_pixels: int = 1024 * 28 * 28  # per image, as the provider's default
    seed: int = 0


@dataclass
class FinetuneResult:
    adapter: Path
    run_id: int | None
    steps: int
    losses: list[float]
    trainable: int  # parameters trained
    target_modules: list[str]


def load_base(model_id: str) -> tuple[ProcessorMixin, PreTrainedModel, str]:
    """The processor and the model, as the transformers provider loads them (fp32 on a CPU, bf16
    on a GPU)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from review.inference.hf import check_loadable
    from review.inference.precision import cannot_load

    device = "cuda" if torch.cuda.is_available() else "cpu"
    check_loadable(model_id)
    try:
        processor = AutoProcessor.from_pretrained(model_id)
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        model = AutoModelForImageTextToText.from_pretrained(model_id, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise cannot_load(model_id, exc) from None
    return processor, model.to(device), device  # type: ignore[arg-type]  # @wraps(nn.Module.to) hides the bound self


def encode(processor: ProcessorMixin, example: TrainExample, max_pixels: int, device: str) -> dict[str, Any]:
    """Model inputs for one example, with labels only on the answer (and its end-of-turn token)."""
    full = processor.apply_chat_template(example.messages(), tokenize=False)
    prompt = processor.apply_chat_template(
        example.messages(with_answer=False), add_generation_prompt=True, tokenize=False
    )
    if not full.startswith(prompt):
        raise ReviewError("the chat template renders the prompt differently with and without the answer")
    pictures = example.pictures()
    kwargs: dict[str, Any] = {"return_tensors": "pt"}
    if pictures:
        kwargs["images"] = pictures
        kwargs["images_kwargs"] = {"size": {"shortest_edge": MIN_PIXELS, "longest_edge": max_pixels}}
    inputs = processor(text=[full], **kwargs)
    prompt_ids = processor(text=[prompt], **kwargs)["input_ids"][0]
    ids = inputs["input_ids"][0]
    if not bool((ids[: len(prompt_ids)] == prompt_ids).all()):
        raise ReviewError("the prompt's tokens are not a prefix of the example's tokens")
    labels = inputs["input_ids"].clone()
    labels[:, : len(prompt_ids)] = -100
    inputs["labels"] = labels
    return {k: v.to(device) for k, v in inputs.items()}


def finetune(
    export_dir: Path,
    base: str,
    out: Path,
    params: TrainParams = TrainParams(),
    *,
    sessions: sessionmaker[Session] | None = None,
    actor: Actor | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> FinetuneResult:
    """Train a LoRA adapter on ``export_dir``'s train split and save it to ``out``."""
    import torch
    from peft import LoraConfig, get_peft_model

    if actor is not None:
        require(actor, Permission.EXPORT)
    if params.epochs < 1 or (params.max_steps is not None and params.max_steps < 1) or params.batch_size < 1:
        raise ReviewError("epochs, batch size and max steps must be at least 1")
    manifest = read_manifest(export_dir)
    examples = read_split(export_dir, "train")
    if not examples:
        raise ReviewError(f"{export_dir} has no training examples")
    if out.exists() and any(out.iterdir()):
        raise ReviewError(f"{out} is not empty: save the adapter into a new folder")
    torch.manual_seed(params.seed)
    rng = random.Random(params.seed)
    processor, pretrained, device = load_base(base)
    for p in pretrained.parameters():
        p.requires_grad_(False)
    config = LoraConfig(
        r=params.lora_r,
        lora_alpha=params.lora_alpha,
        lora_dropout=params.lora_dropout,
        target_modules=LANGUAGE_TARGETS,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(pretrained, config)
    targets = sorted(name for name, module in model.named_modules() if hasattr(module, "lora_A") and name)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=params.lr)
    per_epoch = math.ceil(len(examples) / params.batch_size)
    total = per_epoch * params.epochs if params.max_steps is None else min(params.max_steps, per_epoch * params.epochs)

    run_id = None
    started = datetime.now(UTC)
    record = {**asdict(params), "export_dir": str(export_dir), "examples": len(examples)}
    if sessions is not None:
        with writing(sessions) as session:
            run = FinetuneRun(
                user_id=(actor.id or None) if actor else None,
                export_id=manifest.get("export_id"),
                status="running",
                base_model=base,
                adapter_path=str(out),
                params=record,
                metrics={},
            )
            session.add(run)
            session.flush()
            run_id = run.id
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "train_log.jsonl").open("w", encoding="utf-8")
    losses: list[float] = []
    step = 0
    clock = time.perf_counter()
    try:
        model.train()
        for epoch in range(params.epochs):
            order = list(range(len(examples)))
            rng.shuffle(order)
            for first in range(0, len(order), params.batch_size):
                if step >= total:
                    break
                batch = [examples[i] for i in order[first : first + params.batch_size]]
                optimizer.zero_grad()
                step_loss = 0.0
                for example in batch:
                    loss = model(**encode(processor, example, params.max_pixels, device)).loss / len(batch)
                    loss.backward()
                    step_loss += float(loss.detach())
                optimizer.step()
                step += 1
                losses.append(step_loss)
                entry = {
                    "step": step,
                    "epoch": epoch + 1,
                    "loss": round(step_loss, 6),
                    "examples": len(batch),
                    "seconds": round(time.perf_counter() - clock, 3),
                }
                log.write(json.dumps(entry) + "\n")
                log.flush()
                if progress:
                    progress(step, total, step_loss)
        model.save_pretrained(str(out))
        processor.save_pretrained(out)  # the adapter folder then loads on its own in tools that expect it
    except BaseException:
        log.close()
        _finish(sessions, run_id, "failed", {"steps": step, "train_loss": losses})
        raise
    log.close()
    shutil.copyfile(export_dir / "manifest.json", out / "export_manifest.json")
    trainable_parameters = sum(p.numel() for p in trainable)
    summary = {
        "base_model": base,
        "run_id": run_id,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "steps": step,
        "final_loss": losses[-1] if losses else None,
        "trainable_parameters": trainable_parameters,
        "target_modules": targets,
        "params": record,
    }
    (out / "finetune.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    _finish(sessions, run_id, "done", {"steps": step, "train_loss": losses})
    return FinetuneResult(out, run_id, step, losses, trainable_parameters, targets)


def _finish(sessions: sessionmaker[Session] | None, run_id: int | None, status: str, metrics: dict[str, Any]) -> None:
    if sessions is None or run_id is None:
        return
    with writing(sessions) as session:
        session.execute(
            update(FinetuneRun)
            .where(FinetuneRun.id == run_id)
            .values(status=status, finished_at=datetime.now(UTC), metrics=metrics)
        )

"""A model (or a model with a LoRA adapter) on an export's held-out split, scored with the
accuracy page's metrics.

``python -m review evaluate --model MODEL [--adapter DIR] --split val EXPORT_DIR`` asks the model
for a verdict on each example, with the example's own prompt (the one the training data was
made from) and images, under the same constrained decoding as scoring, parses the answers as
scoring does, and compares them with the moderators' labels carried by the examples' answers.
With an adapter, the base model is evaluated first and the two are reported side by side; the
result is written to ``evaluation.json`` in the adapter folder and, when the adapter came from
``python -m review finetune``, into its ``finetune_run`` row, which the Accuracy page lists.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import FinetuneRun
from db.session import writing
from review.auth import Actor, Permission, require
from review.errors import ReviewError
from review.finetune import TrainExample, read_manifest, read_split
from review.inference.base import ModelRequest, PrecisionChanged, Provider
from review.inference.parsing import parse
from review.inference.precision import release_memory
from review.inference.schema import ModelAnswer, verdict_json_schema
from review.metrics.accuracy import Accuracy, accuracy_from
from review.policy import Policy, load_policy
from review.prompts import RenderedPrompt
from review.verdicts import category_shown


@dataclass
class Evaluation:
    model: str
    adapter: str | None
    examples: int
    accuracy: Accuracy
    failures: int  # answers that did not parse
    weights: str | None = None  # the precision the model ran in (float32, bfloat16, int8-…), when known

    def summary(self) -> dict[str, Any]:
        """The accuracy page's headline numbers; None where no answer parsed (nothing to score)."""
        b = self.accuracy.binary
        scored = b.n > 0
        return {
            "model": self.model,
            "adapter": self.adapter,
            "weights": self.weights,
            "examples": self.examples,
            "precision": b.precision if scored else None,
            "recall": b.recall if scored else None,
            "f1": b.f1 if scored else None,
            "accuracy": b.accuracy if scored else None,
            "roc_auc": b.auc,
            "category_macro_f1": self.accuracy.macro_f1 if scored else None,
            "category_accuracy": self.accuracy.micro_f1 if scored else None,
            "unparsed_answers": self.failures,
        }


def _request(example: TrainExample, policy: Policy, max_new_tokens: int) -> ModelRequest:
    prompt = RenderedPrompt(messages=example.messages(with_answer=False), version="export")
    return ModelRequest(prompt, example.pictures(), verdict_json_schema(policy), max_new_tokens)


def evaluate_provider(
    provider: Provider,
    examples: list[TrainExample],
    *,
    label: str,
    adapter: str | None = None,
    batch_size: int = 4,
    max_new_tokens: int = 768,
    policy: Policy | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Verdicts from ``provider`` on ``examples``, scored against the labels in their answers."""
    policy = policy or load_policy()
    rows: list[tuple[bool, bool, bool | None, str, str | None, float | None, int]] = []
    failures = 0
    for first in range(0, len(examples), batch_size):
        batch = examples[first : first + batch_size]
        requests = [_request(e, policy, max_new_tokens) for e in batch]
        try:
            generations = provider.generate(requests)
        except PrecisionChanged:  # out of memory in the first batch: loaded again in int8
            generations = provider.generate(requests)
        for example, generation in zip(batch, generations, strict=True):
            truth = ModelAnswer.model_validate_json(example.answer)
            said = parse(generation.text, policy).verdict if generation.error is None else None
            if said is None:
                failures += 1
                rows.append((False, truth.violation, None, truth.category, None, None, 1))
            else:
                shown = category_shown(said.violation, said.category)
                rows.append((True, truth.violation, said.violation, truth.category, shown, said.confidence, 1))
        if progress:
            progress(min(first + batch_size, len(examples)), len(examples))
    return Evaluation(label, adapter, len(examples), accuracy_from(rows), failures, provider.precision)


def evaluate_export(
    export_dir: Path,
    model: str,
    *,
    adapter: str | None = None,
    split: str = "val",
    make_provider: Callable[[str | None], Provider],
    sessions: sessionmaker[Session] | None = None,
    batch_size: int = 4,
    max_new_tokens: int = 768,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[Evaluation]:
    """The base model on ``split``, then (with ``adapter``) the adapted model; recorded with the
    adapter when there is one."""
    read_manifest(export_dir)
    examples = read_split(export_dir, split)
    if not examples:
        raise ReviewError(f"the {split} split of {export_dir} is empty (export with --val-fraction above 0)")
    results = []
    for with_adapter in [None, adapter] if adapter else [None]:
        provider = make_provider(with_adapter)
        label = f"{model} + {Path(with_adapter).name}" if with_adapter else model
        report = (lambda done, total, lab=label: progress(lab, done, total)) if progress else None
        results.append(
            evaluate_provider(provider, examples, label=label, adapter=with_adapter, batch_size=batch_size,
                              max_new_tokens=max_new_tokens, progress=report)
        )  # fmt: skip
        del provider
        release_memory()  # the base model's memory back before the adapted one loads (its precision may depend on it)
    if adapter:
        record = {"evaluated_at": datetime.now(UTC).isoformat(), "export": str(export_dir), "split": split,
                  "results": [r.summary() for r in results]}  # fmt: skip
        (Path(adapter) / "evaluation.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if sessions is not None:
            _record(sessions, Path(adapter), record)
    return results


def _record(sessions: sessionmaker[Session], adapter: Path, record: dict[str, Any]) -> None:
    info = adapter / "finetune.json"
    run_id = json.loads(info.read_text(encoding="utf-8")).get("run_id") if info.is_file() else None
    if run_id is None:
        return
    with writing(sessions) as session:
        run = session.get(FinetuneRun, run_id)
        if run is not None:
            run.metrics = {**(run.metrics or {}), "evaluation": record}


def comparisons(session: Session, actor: Actor) -> list[dict[str, Any]]:
    """Finished fine-tuning runs with their evaluations, newest first: for the Accuracy page."""
    require(actor, Permission.METRICS)
    out = []
    for run in session.scalars(select(FinetuneRun).order_by(FinetuneRun.id.desc()).limit(20)):
        evaluation = (run.metrics or {}).get("evaluation")
        if not evaluation:
            continue
        for result in evaluation["results"]:
            out.append({"run": run.id, "base_model": run.base_model, "split": evaluation["split"],
                        "evaluated_at": evaluation["evaluated_at"], **result})  # fmt: skip
    return out

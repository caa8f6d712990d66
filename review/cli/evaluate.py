"""``python -m review evaluate``: a model (and an adapter beside it) scored on an export's held-out split."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from review.cli.common import precision_arguments

if TYPE_CHECKING:
    from review.inference.base import Provider


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ev = sub.add_parser(
        "evaluate",
        help="score a model (and with --adapter, base and adapter side by side) on an export's held-out split",
        description="Ask the model for a verdict on each example of the split, with the example's prompt and images, "
        "and compare with the moderators' labels using the accuracy page's metrics.",
    )
    ev.add_argument("export_dir", type=Path, metavar="EXPORT_DIR")
    ev.add_argument("--model", required=True, help="hub id or local folder (with --provider openai: the served name)")
    ev.add_argument("--adapter", help="a LoRA adapter folder: evaluated after the base model, side by side")
    ev.add_argument("--split", default="val", choices=["val", "train"])
    ev.add_argument("--provider", choices=["transformers", "openai"], default="transformers")
    ev.add_argument("--base-url", help="OpenAI-compatible server URL, for --provider openai")
    ev.add_argument("--batch-size", type=int, default=4)
    ev.add_argument("--max-new-tokens", type=int, default=768)
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    precision_arguments(ev)
    ev.set_defaults(handler=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from review.desk import open_desk
    from review.evaluate import evaluate_export
    from review.inference import load_provider

    desk = open_desk()

    def make(adapter: str | None) -> Provider:
        return load_provider(desk.settings, name=args.provider, model=args.model, base_url=args.base_url,
                             adapter=adapter, dtype=args.dtype, quantize=args.quantize,
                             max_memory=args.max_memory)  # fmt: skip

    bars: dict[str, tqdm] = {}

    def progress(label: str, done: int, total: int) -> None:
        bar = bars.setdefault(label, tqdm(total=total, desc=label, unit="example", disable=args.quiet))
        bar.update(done - bar.n)

    results = evaluate_export(args.export_dir, args.model, adapter=args.adapter, split=args.split, make_provider=make,
                              sessions=desk.sessions, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                              progress=progress)  # fmt: skip
    for bar in bars.values():
        bar.close()
    rows = [r.summary() for r in results]
    names = ["examples", "precision", "recall", "f1", "accuracy", "roc_auc", "category_macro_f1", "category_accuracy",
             "unparsed_answers"]  # fmt: skip
    heads = ["base"] + (["with adapter"] if args.adapter else [])
    print(f"{'':22}" + "".join(f"{h:>16}" for h in heads))
    print(f"{'weights':22}" + "".join(f"{r['weights'] or '–':>16}" for r in rows))
    if len({r["weights"] for r in rows}) > 1:
        print("note: the two ran in different precisions (one stepped down to int8 for memory); for a like-for-like "
              "comparison pass --quantize int8 or a --max-memory both fit in", file=sys.stderr)  # fmt: skip
    for name in names:
        cells = [r[name] for r in rows]
        shown = [("–" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)) for v in cells]
        print(f"{name:22}" + "".join(f"{c:>16}" for c in shown))
    return 0

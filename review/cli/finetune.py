"""``python -m review finetune``: a LoRA adapter trained on an export's train split."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ft = sub.add_parser(
        "finetune",
        help="train a LoRA adapter (PEFT) on an export's train split",
        description="LoRA on the language model's attention and MLP projections (the vision tower stays frozen), "
        "loss on the assistant's answer only. Reads llamafactory, swift or parquet exports.",
    )
    ft.add_argument("export_dir", type=Path, metavar="EXPORT_DIR")
    ft.add_argument("--base", required=True, help="hub id or local folder of the base model")
    ft.add_argument("--out", type=Path, required=True, metavar="ADAPTER_DIR", help="a new or empty folder")
    ft.add_argument("--epochs", type=int, default=1)
    ft.add_argument("--lr", type=float, default=2e-4)
    ft.add_argument("--lora-r", type=int, default=16)
    ft.add_argument("--lora-alpha", type=int, default=32)
    ft.add_argument("--batch-size", type=int, default=1, help="examples per optimizer step (default 1)")
    ft.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--quiet", action="store_true", help="no progress bar")
    ft.set_defaults(handler=cmd_finetune)


def cmd_finetune(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from review.auth import OPERATOR
    from review.desk import open_desk
    from review.finetune import TrainParams, finetune

    desk = open_desk()
    params = TrainParams(epochs=args.epochs, lr=args.lr, lora_r=args.lora_r, lora_alpha=args.lora_alpha,
                         batch_size=args.batch_size, max_steps=args.max_steps, seed=args.seed)  # fmt: skip
    bar = tqdm(total=None, unit="step", disable=args.quiet)

    def progress(step: int, total: int, loss: float) -> None:
        bar.total = total
        bar.set_postfix(loss=f"{loss:.4f}")
        bar.update(1)

    try:
        result = finetune(args.export_dir, args.base, args.out, params, sessions=desk.sessions, actor=OPERATOR,
                          progress=progress)  # fmt: skip
    finally:
        bar.close()
    print(f"adapter saved to {result.adapter} after {result.steps} steps (final loss {result.losses[-1]:.4f}); "
          f"{result.trainable:,} trainable parameters in {len(result.target_modules)} language-model modules"
          + (f"; finetune run {result.run_id}" if result.run_id else ""))  # fmt: skip
    return 0

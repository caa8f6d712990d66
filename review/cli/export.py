"""``python -m review export``: the moderators' corrections as LoRA training data."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from review.cli.common import day, through


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    exp = sub.add_parser(
        "export",
        help="the moderators' corrections as LoRA training data (LLaMA-Factory, ms-swift, Qwen-VL, parquet)",
        description="Export settled posts as training examples: the prompt the model saw, with the images, and the "
        "verdict JSON carrying the moderator's label. Disagreements only unless --all. Dates are UTC days.",
    )
    exp.add_argument("--format", choices=["llamafactory", "swift", "qwen", "parquet"], required=True)
    exp.add_argument("--out", type=Path, required=True, metavar="DIR", help="a new or empty folder")
    exp.add_argument("--all", action="store_true", help="every decided post, not only the disagreements")
    exp.add_argument("--since", type=day, metavar="YYYY-MM-DD")
    exp.add_argument("--until", type=day, metavar="YYYY-MM-DD")
    exp.add_argument("--category", action="append", help="only this human category (repeatable)")
    exp.add_argument("--source")
    exp.add_argument("--cap-per-category", type=int, metavar="N", help="at most N examples per category")
    exp.add_argument("--val-fraction", type=float, default=0.1, help="share for validation (default 0.1)")
    exp.add_argument("--strip-pii", action="store_true", help="replace handles, phones, e-mails, ids, links in text")
    exp.add_argument("--seed", type=int, default=0, help="for the split and the per-category cap")
    exp.add_argument(
        "--allow-ungrouped",
        action="store_true",
        help="export posts whose images have no near-duplicate cluster yet (python -m review signals makes them); "
        "their near duplicates may then land on both sides of the split",
    )
    exp.add_argument(
        "--model",
        "--tokenizer",
        dest="model",
        metavar="MODEL",
        help="hub id or folder whose processor measures the examples in tokens (default: MODEL setting); when it "
        "cannot be loaded, the lengths are an upper bound",
    )
    exp.add_argument("--quiet", action="store_true", help="no progress bars")
    exp.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from review.auth import OPERATOR
    from review.desk import open_desk
    from review.export import ExportOptions, export

    desk = open_desk()
    opts = ExportOptions(format=args.format, include="all" if args.all else "disagreements", since=args.since,
                         until=through(args.until), categories=tuple(args.category or ()), source=args.source,
                         cap_per_category=args.cap_per_category, val_fraction=args.val_fraction,
                         strip_pii=args.strip_pii, seed=args.seed, allow_ungrouped=args.allow_ungrouped,
                         model=args.model)  # fmt: skip
    bars: dict[str, tqdm] = {}

    def progress(stage: str, total: int) -> Callable[[int], None]:
        bar = bars[stage] = tqdm(total=total, desc=stage, unit="example", disable=args.quiet)

        def update(done: int) -> None:
            bar.update(done - bar.n)

        return update

    try:
        result = export(desk.sessions, OPERATOR, desk.settings, opts, args.out, progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    m = result.manifest
    train, val = sum(m["counts"]["train"].values()), sum(m["counts"]["val"].values())
    print(f"export {result.export_id}: {m['examples']} examples ({train} train, {val} validation) in {result.out}")
    for reason, n in m["dropped"].items():
        print(f"  dropped {n}: {reason}")
    tokens = m["tokens"]
    longest = "longest example" if tokens["exact"] else "longest example at most (an upper bound)"
    print(f"  {longest}: {m['max_tokens']} tokens; cutoff_len {m['cutoff_len']} (see TRAINING.md)")
    if not tokens["exact"]:
        print(f"  note: the token counts are an upper bound: {tokens['note'] or tokens['method']}", file=sys.stderr)
    if m["ungrouped"]:
        print(f"  note: {m['ungrouped']} examples have images without a near-duplicate cluster; their near duplicates "
              "may sit on both sides of the split (python -m review signals groups them)", file=sys.stderr)  # fmt: skip
    if m["prompt_not_reproduced"]:
        print(f"  note: {m['prompt_not_reproduced']} examples were scored with a prompt that is no longer the current "
              "one (or by the baseline rules); they carry today's prompt", file=sys.stderr)  # fmt: skip
    return 0

"""What the commands share: exit statuses, argument types, the model arguments, progress and report output.

Exit statuses: 0 done; 1 (``EXIT_REJECTED``) done in part (records rejected, posts left unscored,
files not removed); 2 (``EXIT_ERROR``) an error meant for people, printed as one line; 3
(``EXIT_INTERNAL``) a bug, printed with its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from review.config import DTYPES, QUANTIZATIONS  # settings' names only: no heavy import

if TYPE_CHECKING:
    from review.config import Settings
    from review.inference.base import Provider
    from review.ingest import IngestReport

EXIT_REJECTED = 1
EXIT_ERROR = 2
EXIT_INTERNAL = 3


def file_progress(label: str, total: int) -> Callable[[int], None]:
    """A tqdm bar on stderr that appears only when the input takes more than a second."""
    from tqdm import tqdm

    from review.text import shown

    bar = tqdm(total=total, desc=shown(Path(label).name), unit="rec", delay=1.0, leave=False)

    def update(done: int) -> None:
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def print_ingest_report(report: IngestReport, verbose_warnings: bool = True) -> None:
    """Rejections, warnings and unusual encodings on stderr, one line per reason however many
    records share it (with their count and first locations); the summary line on stdout."""
    from review.text import shown

    for rejected in report.grouped_rejections():
        print(f"rejected {rejected}", file=sys.stderr)
    if verbose_warnings:
        for warning in report.grouped_warnings():
            print(f"warning {warning}", file=sys.stderr)
    for path, encoding in report.encodings.items():
        if encoding not in ("utf-8", "utf-8-sig"):
            print(f"note: read {shown(path)} as {encoding}", file=sys.stderr)
    print(report.summary())


def day(value: str) -> datetime:
    """``--since``/``--until`` YYYY-MM-DD: the start of that UTC day."""
    try:
        return datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day: {value!r} (use YYYY-MM-DD)") from None


def through(day: datetime | None) -> datetime | None:
    """--until DAY means through the end of DAY: the start of the next one (UTC)."""
    return day + timedelta(days=1) if day is not None else None


def model_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments that choose the model (score, ask, demo); :func:`make_provider` reads them."""
    parser.add_argument(
        "--provider",
        choices=["transformers", "openai", "baseline"],
        help="default: PROVIDER setting (transformers); baseline: rules over the signals, no model",
    )
    parser.add_argument("--model", help="hub id or local folder (default: MODEL setting)")
    parser.add_argument("--base-url", help="OpenAI-compatible server URL, for --provider openai")
    parser.add_argument("--adapter", help="a PEFT LoRA adapter folder to apply to the model")
    parser.add_argument(
        "--revision",
        help="hub revision (branch, tag or commit) to load; with --provider openai, the revision the server "
        "was started with, recorded on every verdict",
    )
    precision_arguments(parser)


def precision_arguments(parser: argparse.ArgumentParser) -> None:
    """--dtype, --quantize and --max-memory: the transformers provider's precision (score, ask, demo,
    evaluate)."""
    parser.add_argument("--dtype", choices=DTYPES,
                        help="the weights' dtype (default: MODEL_DTYPE, auto: bfloat16 on a GPU or on a CPU "
                        "with native bfloat16, else float32)")  # fmt: skip
    parser.add_argument("--quantize", choices=QUANTIZATIONS,
                        help="int8: the language model's linear layers in int8 (a CPU: torch's dynamic int8; a GPU: "
                        "bitsandbytes) (default: MODEL_QUANTIZE, none); recorded on every verdict")  # fmt: skip
    parser.add_argument("--max-memory", metavar="SIZE",
                        help="memory for the model, with its unit (6GiB, 6GB): the precision asked for if it fits, "
                        "else int8, else a refusal (default: MODEL_MAX_MEMORY; none: the free memory decides "
                        "whether to step down to int8)")  # fmt: skip


def make_provider(settings: Settings, args: argparse.Namespace) -> Provider:
    """The provider named by the command's model arguments (see :func:`model_arguments`)."""
    from review.inference import load_provider

    return load_provider(
        settings,
        name=args.provider,
        model=args.model,
        base_url=args.base_url,
        adapter=args.adapter,
        revision=args.revision,
        dtype=args.dtype,
        quantize=args.quantize,
        max_memory=args.max_memory,
        on_load=lambda model: print(f"loading {model} …", file=sys.stderr),
        notify=lambda line: print(line, file=sys.stderr),
    )

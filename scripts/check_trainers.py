"""Helper of scripts/check_trainers.sh: runs the training commands an export's TRAINING.md prints.

The commands are taken from TRAINING.md as printed; only these changes are made before running:
the model name becomes the tiny random Qwen3-VL's folder, ADAPTER_DIR a scratch folder, and flags
that make a short CPU run (two steps of one example each, evaluation at the last step, no
reports) are appended. A command that is wrong as printed therefore fails here.

Subcommands (the first runs with the desk's .venv, the rest with a trainer's virtualenv):

    tiny DIR                    build the tiny Qwen3-VL into DIR (tests/tiny_model.py) with the
                                real Qwen3-VL-2B image processor settings, so images cost as many
                                tokens as with the real model and sequences are as long
    run FORMAT EXPORT_DIR ...   check one export: extract, measure, train; prints one result line
    measure-llamafactory ARGS   (internal) the longest example as LLaMA-Factory tokenizes it
    measure-swift ARGS          (internal) the longest example as ms-swift encodes it

Only the standard library is imported at the top: the trainers are imported inside the
measuring functions, in their own virtualenvs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL_NAME = "Qwen/Qwen3-VL-2B-Instruct"  # the model the printed commands name
# The real Qwen3-VL image processor (preprocessor_config.json of Qwen/Qwen3-VL-*-Instruct): 16-px
# patches merged 2x2 (one token per 32x32 px), between 256x256 and 4096x4096 px.
QWEN3_VL_IMAGE_PROCESSOR = {
    "size": {"shortest_edge": 65536, "longest_edge": 16777216},
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
}


class Trainer:
    """What differs between the trainers: how the command starts, its length flag, its split
    files, and the flags appended for a short CPU run."""

    def __init__(self, fmt: str, title: str, invocation: str, length_flag: str, default_length: str,
                 val_marker: str, labels_marker: str) -> None:  # fmt: skip
        self.format, self.title, self.invocation = fmt, title, invocation
        self.length_flag, self.default_length = length_flag, default_length
        self.val_marker, self.labels_marker = val_marker, labels_marker

    def cpu_flags(self, steps: int) -> list[str]:
        # A short run on a CPU: `steps` optimizer steps of one example each, the validation split
        # evaluated once at the last step, fp32/bf16 as printed but on the CPU, no reports.
        return [
            "--max_steps", str(steps),
            "--per_device_train_batch_size", "1",
            "--gradient_accumulation_steps", "1",
            "--per_device_eval_batch_size", "1",
            "--eval_strategy", "steps",
            "--eval_steps", str(steps),
            "--use_cpu", "true",
            "--report_to", "none",
        ]  # fmt: skip


TRAINERS = {
    "llamafactory": Trainer("llamafactory", "LLaMA-Factory", "llamafactory-cli train", "--cutoff_len",
                            "2048 (LLaMA-Factory's default)", "_val", "labels:"),
    "swift": Trainer("swift", "ms-swift", "swift sft", "--max_length", "the model's context (ms-swift's default)",
                     "val.jsonl", "[LABELS]"),
}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The tiny model


def build_tiny(target: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_model import build_tiny_qwen3_vl  # the test suite's builder, reused

    build_tiny_qwen3_vl(target)
    path = target / "processor_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["image_processor"].update(QWEN3_VL_IMAGE_PROCESSOR)
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    print(f"tiny Qwen3-VL in {target} (image processor as Qwen3-VL-2B's: {QWEN3_VL_IMAGE_PROCESSOR['size']})")


# ---------------------------------------------------------------------------------------------
# Taking the command from TRAINING.md


def code_blocks(markdown: str) -> list[str]:
    """The code blocks of a markdown text (fenced, or indented by four spaces), each with its
    lines dedented and continuation lines (ending in a backslash) joined."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            if fenced:
                blocks.append(current or [])
                current, fenced = None, False
            else:
                if current:
                    blocks.append(current)
                current, fenced = [], True
            continue
        if fenced:
            current.append(line)  # type: ignore[union-attr]
        elif line.startswith("    ") or (line.startswith("\t")):
            current = current if current is not None else []
            current.append(line[4:] if line.startswith("    ") else line[1:])
        elif current is not None and not line.strip():
            current.append("")
        elif current is not None:
            blocks.append(current)
            current = None
    if current:
        blocks.append(current)
    out = []
    for block in blocks:
        text = re.sub(r"\\\n[ \t]*", " ", "\n".join(block)).strip()
        if text:
            out.append(text)
    return out


def the_command(markdown: str, trainer: Trainer) -> str:
    """The one code block that runs the trainer (with its `cd` and environment lines)."""
    found = [b for b in code_blocks(markdown) if re.search(rf"(^|\s){re.escape(trainer.invocation)}\s", b + " ")]
    if not found:
        raise CheckFailed(f"TRAINING.md has no code block running `{trainer.invocation}`")
    if len(found) > 1:
        raise CheckFailed(f"TRAINING.md has {len(found)} code blocks running `{trainer.invocation}`; expected one")
    return found[0]


def adapt(block: str, trainer: Trainer, model: Path, adapter_dir: Path, extra: list[str],
          replacement: str | None = None) -> str:  # fmt: skip
    """The printed block with the model and ADAPTER_DIR substituted and ``extra`` appended to
    the trainer's line (and, for measuring, the trainer's invocation replaced)."""
    if MODEL_NAME in block:
        block = block.replace(MODEL_NAME, shlex.quote(str(model)))
    elif str(model) not in block:  # an export made with MODEL=<the tiny model> may print its folder
        raise CheckFailed(f"the {trainer.title} command does not name {MODEL_NAME}")
    if "ADAPTER_DIR" not in block:
        raise CheckFailed(f"the {trainer.title} command has no ADAPTER_DIR")
    block = block.replace("ADAPTER_DIR", shlex.quote(str(adapter_dir)))
    placeholder = re.search(r"<[^<>\n]*>", block)
    if placeholder:
        raise CheckFailed(f"the {trainer.title} command still holds the placeholder {placeholder.group(0)}")
    lines = block.splitlines()
    index = [i for i, line in enumerate(lines) if trainer.invocation in line]
    if len(index) != 1:
        raise CheckFailed(f"expected one line running `{trainer.invocation}`, found {len(index)}")
    line = lines[index[0]].rstrip()
    if replacement is not None:
        line = line.replace(trainer.invocation, replacement, 1)
    lines[index[0]] = line + " " + " ".join(shlex.quote(x) for x in extra)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Measuring with the trainers' own code (run inside their virtualenvs)


def _report(result: dict) -> None:
    print("MEASURED " + json.dumps(result), flush=True)


def measure_llamafactory(argv: list[str]) -> None:
    """Tokenize both splits as LLaMA-Factory does for training, with the printed arguments but
    no cutoff, and report the longest example against the printed cutoff_len."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    printed = get_train_args(list(argv))
    cutoff = printed[1].cutoff_len
    model_args, data_args, training_args, _, _ = get_train_args([*argv, "--cutoff_len", str(10**7)])
    tokenizer_module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    module = get_dataset(template, model_args, data_args, training_args, stage="sft", **tokenizer_module)
    lengths = {split: [len(ids) for ids in module[key]["input_ids"]] if module.get(key) is not None else []
               for split, key in (("train", "train_dataset"), ("val", "eval_dataset"))}  # fmt: skip
    _report({"limit": cutoff, "template": data_args.template, "rows": {s: len(v) for s, v in lengths.items()},
             "longest": {s: max(v, default=0) for s, v in lengths.items()},
             "over": {s: sum(n > cutoff for n in v) for s, v in lengths.items()}})  # fmt: skip


def measure_swift(argv: list[str]) -> None:
    """Encode both splits with ms-swift's template for the printed arguments (model type,
    template, image pixels from the environment) and report the longest example against the
    printed max_length: ms-swift silently replaces an over-long example by another one."""
    from swift.pipelines.train.sft import SwiftSft

    sft = SwiftSft(list(argv))
    limit = sft.args.max_length
    train, val = sft.args.load_dataset()
    template = sft.template
    template.max_length = None  # measure the whole example
    lengths: dict[str, list[int]] = {}
    for split, data in (("train", train), ("val", val)):
        lengths[split] = [len(template.encode(row)["input_ids"]) for row in (data if data is not None else [])]
    _report({"limit": limit, "template": sft.args.template, "rows": {s: len(v) for s, v in lengths.items()},
             "longest": {s: max(v, default=0) for s, v in lengths.items()},
             "over": {s: sum(n > limit for n in v) for s, v in lengths.items()}})  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Checking one export


class CheckFailed(Exception):
    pass


def _bash(script: str, log: Path, env: dict[str, str], timeout: int) -> int:
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ {script}\n")
        out.flush()
        try:
            return subprocess.run(["bash", "-euo", "pipefail", "-c", script], stdout=out, stderr=subprocess.STDOUT,
                                  env=env, timeout=timeout).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            out.write(f"\n(timed out after {timeout} s)\n")
            return 124


def _tail(output: str, lines: int = 15) -> str:
    return "\n".join("    " + line[:300] for line in output.splitlines()[-lines:])


def check(fmt: str, export_dir: Path, venv: Path, model: Path, work: Path, steps: int, version: str,
          timeout: int) -> list[str]:  # fmt: skip
    """Run the export's printed command for ``fmt``; returns the problems found (none: passed)."""
    trainer = TRAINERS[fmt]
    text = (export_dir / "TRAINING.md").read_text(encoding="utf-8")
    manifest = json.loads((export_dir / "manifest.json").read_text(encoding="utf-8"))
    problems: list[str] = []
    if version not in text:
        problems.append(f"TRAINING.md does not name {trainer.title} {version}, the version this check installs")
    block = the_command(text, trainer)
    print("  printed command:\n" + "\n".join("    " + line for line in block.splitlines()), flush=True)
    if trainer.length_flag not in block:
        problems.append(f"the command sets no {trainer.length_flag}: {trainer.default_length} applies")
    if trainer.val_marker not in block:
        problems.append("the command does not use the validation split")

    # The trainers' own executables first on PATH; no hub, no telemetry.
    env = dict(os.environ, PATH=f"{venv / 'bin'}:{os.environ['PATH']}", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false")  # fmt: skip
    log = work / f"{fmt}.log"
    extra = trainer.cpu_flags(steps)

    # 1. the longest example as the trainer itself tokenizes it, against the printed limit
    measure_dir = work / f"{fmt}-measure"
    helper = f"{shlex.quote(str(venv / 'bin' / 'python'))} {shlex.quote(str(Path(__file__).resolve()))} measure-{fmt}"
    script = adapt(block, trainer, model, measure_dir, extra, replacement=helper)
    started = time.monotonic()
    rc = _bash(script, log, env, timeout)
    measured = [json.loads(line[len("MEASURED "):]) for line in log.read_text(encoding="utf-8").splitlines()
                if line.startswith("MEASURED ")]  # fmt: skip
    if rc != 0 or not measured:
        problems.append(
            f"the command failed (exit {rc}) with the measuring helper in the trainer's place; "
            f"the end of {log}:\n{_tail(log.read_text(encoding='utf-8', errors='replace'))}"
        )
        return problems
    m = measured[-1]
    want = {s: sum(manifest["counts"][s].values()) for s in ("train", "val")}
    print(f"  {trainer.title} reads {m['rows']['train']} train / {m['rows']['val']} val examples "
          f"(template {m['template']}); longest {m['longest']['train']} / {m['longest']['val']} tokens, "
          f"limit {m['limit']} ({time.monotonic() - started:.0f} s)", flush=True)  # fmt: skip
    if manifest.get("max_tokens") is not None:
        longest = max(m["longest"].values())
        note = "" if manifest["max_tokens"] >= longest else "  <- the export under-counts"
        print(f"  manifest: max_tokens {manifest['max_tokens']}, cutoff_len {manifest.get('cutoff_len')}{note}")
    if m["rows"] != want:
        problems.append(f"{trainer.title} reads {m['rows']} examples, the manifest says {want}")
    over = sum(m["over"].values())
    if over:
        problems.append(f"{over} examples are longer than {trainer.length_flag} {m['limit']} (longest "
                        f"{max(m['longest'].values())} tokens): they would be cut or dropped")  # fmt: skip

    # 2. the printed command itself, for `steps` steps on the CPU
    adapter_dir = work / f"{fmt}-adapter"
    script = adapt(block, trainer, model, adapter_dir, extra)
    started = time.monotonic()
    rc = _bash(script, log, env, timeout)
    took = time.monotonic() - started
    output = log.read_text(encoding="utf-8", errors="replace")
    run_output = output[output.rfind("$ ") :]
    if rc != 0:
        problems.append(f"the command failed (exit {rc}) after {took:.0f} s; the end of {log}:\n{_tail(run_output)}")
        return problems
    adapters = sorted(adapter_dir.rglob("adapter_model.safetensors"))
    if not adapters:
        problems.append(f"no adapter_model.safetensors under {adapter_dir}")
    if "eval_loss" not in run_output:
        problems.append("no evaluation ran on the validation split")
    labels = run_output.find(trainer.labels_marker)
    if labels >= 0 and "<think>" in run_output[labels : labels + 400]:
        problems.append("the trained answer starts with a <think> block: use the non-thinking template")
    loss = re.findall(r"'train_loss': '?([0-9.]+)", run_output)
    print(f"  trained {steps} steps in {took:.0f} s (train_loss {loss[-1] if loss else '?'}); "
          f"adapter: {adapters[0] if adapters else 'none'}", flush=True)  # fmt: skip
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tiny = sub.add_parser("tiny")
    tiny.add_argument("target", type=Path)
    run = sub.add_parser("run")
    run.add_argument("format", choices=sorted(TRAINERS))
    run.add_argument("export_dir", type=Path)
    run.add_argument("--venv", type=Path, required=True)
    run.add_argument("--model", type=Path, required=True)
    run.add_argument("--work", type=Path, required=True)
    run.add_argument("--version", required=True, help="the trainer version installed (TRAINING.md must name it)")
    run.add_argument("--steps", type=int, default=2)
    run.add_argument("--timeout", type=int, default=1800, help="seconds for each of the two runs")
    for name in ("measure-llamafactory", "measure-swift"):
        sub.add_parser(name, add_help=False)
    args, rest = parser.parse_known_args()
    if args.command == "measure-llamafactory":
        measure_llamafactory(rest)
        return 0
    if args.command == "measure-swift":
        measure_swift(rest)
        return 0
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "tiny":
        build_tiny(args.target)
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    title = TRAINERS[args.format].title
    try:
        problems = check(args.format, args.export_dir.resolve(), args.venv.resolve(), args.model.resolve(),
                         args.work.resolve(), args.steps, args.version, args.timeout)  # fmt: skip
    except CheckFailed as exc:
        problems = [str(exc)]
    for p in problems:
        print(f"  FAIL: {p}", flush=True)
    print(f"{'PASS' if not problems else 'FAIL'} {title} {args.version}", flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Scoring speed: pipeline overhead, batching and the duplicate cache.

    python bench/scoring.py [--model DIR] [--posts 16] [--max-new-tokens 300] [--only overhead|batching|cache]

No Qwen weights can be downloaded here, so the speed parts run a random Qwen3-VL with the real
architecture, tokenizer and processor at a CPU-sized width (``tests/tiny_model.py --size small``,
built on first use unless --model is given). The verdict prompt, images, constrained decoding and
the database are the product's own.

- overhead: the worker (`Scorer`: claim, cache lookup, image loading, prompt, processor,
  constrained generate, parse, store) against bare ``model.generate`` on the same processed
  inputs (the whole prompt, as a plain script would run it), made to produce the same number of
  tokens; at batch 1 and batch 8. Also the worker's time outside ``provider.generate``
  (database, images, prompts, parsing) per post.
- batching: the worker's posts/s at batch 8 against batch 1 (one by one).
- cache: a stream where 30 % of the posts are reposts of earlier ones (exact copies, JPEG
  re-encodes at quality 60, 50 % resizes) with the same text, scored with the near-duplicate
  cache on; counts model calls against the posts, and checks every reuse came from the repost's
  own original. This part counts calls, not time, so it runs the tiny model.

- precision: float32, bfloat16 and int8 (``--dtype`` / ``--quantize``), each in a fresh process
  (peak memory is per process): the worker's posts/s and answer tokens/s at batch 1 and 8 (the
  median of ``--rounds`` runs; tokens/s because the precisions' answers differ in length), the weights' bytes as
  loaded, the process's resident memory after loading and at its peak, every verdict's parse
  status, and drift: the share of greedy tokens that differ from float32's over the same posts'
  first 64 answer tokens (unconstrained, batch 1; random weights make this a check of the
  plumbing, not of quality).

Prints one JSON object; docs/BENCHMARKS.md records a run.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from sqlalchemy import delete, select, update  # noqa: E402

from db import schema  # noqa: E402
from db.models import Post, PostStatus, Verdict  # noqa: E402
from db.session import make_engine  # noqa: E402
from review.config import Settings  # noqa: E402
from review.desk import Desk, open_desk  # noqa: E402
from review.inference.base import ModelRequest  # noqa: E402
from review.inference.hf import TransformersProvider  # noqa: E402
from review.inference.precision import weight_bytes  # noqa: E402
from review.inference.schema import verdict_json_schema  # noqa: E402
from review.ingest import ingest_records  # noqa: E402
from review.inputs import load_inputs  # noqa: E402
from review.policy import load_policy  # noqa: E402
from review.prompts import moderation_prompt  # noqa: E402
from review.scoring import Scorer  # noqa: E402
from tests.tiny_model import build_tiny_qwen3_vl  # noqa: E402

CAPTIONS = ["限时特价 ¥{n}，全网最低！", "周末去海边 {n}", "New drop, only {n} left", "岁月静好 #{n}",
            "加微信 vx{n} 领红包", "Our cat turned {n} today"]  # fmt: skip


def picture(rng: random.Random, size: int = 512) -> Image.Image:
    image = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(14):
        x, y = rng.randrange(size), rng.randrange(size)
        draw.ellipse((x, y, x + rng.randrange(30, 220), y + rng.randrange(30, 220)),
                     fill=tuple(rng.randrange(256) for _ in range(3)))  # fmt: skip
    return image


def fresh_desk(root: Path) -> Desk:
    settings = Settings(database_url=f"sqlite:///{root / 'review.db'}", media_dir=root / "media")
    engine = make_engine(settings.database_url)
    schema.upgrade(engine)
    engine.dispose()
    return open_desk(settings)


def ingest_distinct(desk: Desk, folder: Path, n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        picture(rng).save(folder / f"p{i}.jpg", quality=90)
        records.append({"external_id": f"p{i}", "text": rng.choice(CAPTIONS).format(n=i), "images": [f"p{i}.jpg"]})
    report = ingest_records(desk.sessions, records, desk.settings, base_dir=folder)
    assert report.added == n, report.summary()
    return report.post_ids


def worker_run(model: TransformersProvider, n: int, batch: int, max_new_tokens: int, seed: int) -> dict:
    """Score n fresh posts with the worker; its wall time and each post's token count."""
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        root = Path(tmp)
        desk = fresh_desk(root)
        ids = ingest_distinct(desk, root, n, seed)
        scorer = Scorer(desk.sessions, desk.settings, model, batch_size=batch, max_new_tokens=max_new_tokens)
        started = time.perf_counter()
        stats = scorer.run()
        elapsed = time.perf_counter() - started
        assert stats.scored == n and stats.model_calls == n, stats
        with desk.sessions() as session:
            verdicts = {v.post_id: v for v in session.scalars(select(Verdict))}
            inputs = load_inputs(session, ids)
        images = [scorer._images(p) for p in inputs]
        desk.engine.dispose()
    return {
        "seconds": elapsed,
        "model_seconds": sum(v.latency_ms or 0 for v in verdicts.values()) / 1000,  # inside provider.generate
        "tokens": [verdicts[p.post_id].completion_tokens for p in inputs],
        "statuses": sorted({v.parse_status for v in verdicts.values()}),
        "inputs": [(p.text, im) for p, im in zip(inputs, images, strict=True)],
    }


def bare_run(model: TransformersProvider, run: dict, batch: int, schema: dict) -> float:
    """Bare ``model.generate`` on the same processed inputs, as many tokens as the worker made
    (+1 for its stop token), batch by batch; processing is done before the clock starts."""
    total = 0.0
    inputs = run["inputs"]
    for start in range(0, len(inputs), batch):
        chunk = inputs[start : start + batch]
        requests = [ModelRequest(moderation_prompt(text, len(ims)), ims, schema) for text, ims in chunk]
        processed = model._inputs([model._render(r) for r in requests], [im for r in requests for im in r.images])
        steps = max(run["tokens"][start : start + batch]) + 1
        started = time.perf_counter()
        with torch.inference_mode():
            model.model.generate(**processed, max_new_tokens=steps, min_new_tokens=steps, do_sample=False,
                                 pad_token_id=model.pad_id)  # fmt: skip
        total += time.perf_counter() - started
    return total


def speed(model_dir: Path, n: int, max_new_tokens: int, parts: set[str]) -> dict:
    model = TransformersProvider(str(model_dir), max_pixels=384 * 384)
    schema = verdict_json_schema(load_policy())
    params = sum(p.numel() for p in model.model.parameters())
    out: dict = {"model": f"random Qwen3-VL, {params / 1e6:.0f} M parameters", "posts": n,
                 "max_new_tokens": max_new_tokens, "torch_threads": torch.get_num_threads()}  # fmt: skip
    model.generate([ModelRequest(moderation_prompt("warm-up", 0), [], schema, 8)])  # compile the grammar once
    runs = {batch: worker_run(model, n, batch, max_new_tokens, seed=1) for batch in (1, 8)}
    for batch, run in runs.items():
        per_post = run["seconds"] / n
        out[f"batch{batch}"] = {
            "worker_s_per_post": round(per_post, 3),
            "outside_the_model_s_per_post": round((run["seconds"] - run["model_seconds"]) / n, 3),
            "posts_per_s": round(n / run["seconds"], 3),
            "median_tokens": statistics.median(run["tokens"]),
            "statuses": run["statuses"],
        }
        if "overhead" in parts:
            bare = bare_run(model, run, batch, schema) / n
            out[f"batch{batch}"]["bare_generate_s_per_post"] = round(bare, 3)
            out[f"batch{batch}"]["overhead"] = f"{(per_post / bare - 1) * 100:+.1f} %"
    out["batch8_vs_batch1"] = round(runs[1]["seconds"] / runs[8]["seconds"], 2)
    return out


PRECISIONS = {"float32": ("float32", "none"), "bfloat16": ("bfloat16", "none"), "int8": ("auto", "int8")}


def memory_mb(field: str) -> int:
    """VmRSS (resident now) or VmHWM (the process's peak) in MiB."""
    status = Path("/proc/self/status").read_text()
    return int(status.split(f"{field}:")[1].split()[0]) // 1024


def precision_child(
    model_dir: Path, name: str, n: int, max_new_tokens: int, drift: tuple[int, int], rounds: int
) -> dict:
    """One precision in this (fresh) process: load, score n posts at batch 1 and 8, greedy tokens."""
    dtype, quantize = PRECISIONS[name]
    started = time.perf_counter()
    model = TransformersProvider(str(model_dir), max_pixels=384 * 384, dtype=dtype, quantize=quantize)
    out: dict = {"precision": model.precision, "load_s": round(time.perf_counter() - started, 1),
                 "weights_mb": round(weight_bytes(model.model) / 2**20),
                 "rss_loaded_mb": memory_mb("VmRSS")}  # fmt: skip
    schema = verdict_json_schema(load_policy())
    model.generate([ModelRequest(moderation_prompt("warm-up", 0), [], schema, 8)])  # compile the grammar once
    every = {batch: [worker_run(model, n, batch, max_new_tokens, seed=1) for _ in range(rounds)] for batch in (1, 8)}
    for batch, done in every.items():
        out[f"batch{batch}_posts_per_s"] = round(statistics.median(n / run["seconds"] for run in done), 4)
        out[f"batch{batch}_tokens_per_s"] = round(
            statistics.median(sum(run["tokens"]) / run["seconds"] for run in done), 1
        )
    runs = {batch: done[0] for batch, done in every.items()}
    out["statuses"] = sorted({s for done in every.values() for run in done for s in run["statuses"]})
    out["median_tokens"] = statistics.median(runs[8]["tokens"])
    posts, length = drift
    tokens = []
    for text, images in runs[1]["inputs"][:posts]:
        request = ModelRequest(moderation_prompt(text, len(images)), images, schema)
        processed = model._inputs([model._render(request)], images)
        with torch.inference_mode():
            ids = model.model.generate(**processed, max_new_tokens=length, min_new_tokens=length, do_sample=False,
                                       pad_token_id=model.pad_id)  # fmt: skip
        tokens.append(ids[0, processed["input_ids"].shape[1] :].tolist())
    out["tokens"] = tokens
    out["rss_peak_mb"] = memory_mb("VmHWM")
    return out


def precision(model_dir: Path, n: int, max_new_tokens: int, drift: tuple[int, int], rounds: int) -> dict:
    """Each precision in its own process, against float32."""
    out: dict = {"posts": n, "max_new_tokens": max_new_tokens, "torch_threads": torch.get_num_threads(),
                 "rounds": rounds,
                 "drift": f"{drift[0]} posts x {drift[1]} greedy tokens, unconstrained, against float32"}  # fmt: skip
    for name in PRECISIONS:
        child = subprocess.run(
            [sys.executable, __file__, "--precision-child", name, "--model", str(model_dir), "--posts", str(n),
             "--max-new-tokens", str(max_new_tokens), "--drift", f"{drift[0]}x{drift[1]}", "--rounds", str(rounds)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        out[name] = json.loads(child.stdout)
    reference = out["float32"]
    for name in PRECISIONS:
        result = out[name]
        pairs = [(a, b) for mine, theirs in zip(result["tokens"], reference["tokens"], strict=True)
                 for a, b in zip(mine, theirs, strict=True)]  # fmt: skip
        result["tokens_differing_from_float32"] = round(sum(a != b for a, b in pairs) / len(pairs), 3)
        for key in (
            "batch1_posts_per_s",
            "batch8_posts_per_s",
            "batch1_tokens_per_s",
            "batch8_tokens_per_s",
            "weights_mb",
            "rss_loaded_mb",
            "rss_peak_mb",
        ):
            result[f"{key}_vs_float32"] = round(result[key] / reference[key], 2)
    for name in PRECISIONS:
        del out[name]["tokens"]
    return out


def repost(image: Image.Image, kind: str) -> Image.Image:
    if kind == "exact":
        return image
    if kind == "reencoded":
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=60)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return image.resize((image.width // 2, image.height // 2), Image.BICUBIC)  # resized


def cache(n: int, seed: int = 7) -> dict:
    """n posts, 30 % of them reposts placed at least two batches after their original."""
    rng = random.Random(seed)
    n_reposts = round(n * 0.3)
    originals = n - n_reposts
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        root = Path(tmp)
        model_dir = build_tiny_qwen3_vl(root / "tiny")
        stream: list[dict] = []
        images: dict[int, Image.Image] = {}
        for i in range(originals):
            images[i] = picture(rng)
            images[i].save(root / f"o{i}.png")
            stream.append({"external_id": f"o{i}", "text": rng.choice(CAPTIONS).format(n=i), "images": [f"o{i}.png"]})
        kinds = ["exact", "reencoded", "resized"]
        for j in range(n_reposts):
            i = rng.randrange(originals - 20)
            kind = kinds[j % 3]
            name = f"r{j}.png" if kind != "exact" else f"o{i}.png"
            if kind != "exact":
                repost(images[i], kind).save(root / name)
            where = [s["external_id"] for s in stream].index(f"o{i}")  # the original's place in the stream
            record = {"external_id": f"r{j}", "text": stream[where]["text"],
                      "images": [name], "metadata": {"original": f"o{i}", "kind": kind}}  # fmt: skip
            at = max(rng.randrange(len(stream) + 1), where + 17)
            stream.insert(min(at, len(stream)), record)
        desk = fresh_desk(root)
        report = ingest_records(desk.sessions, stream, desk.settings, base_dir=root)
        assert report.added == n, report.summary()
        model = TransformersProvider(str(model_dir), max_pixels=64 * 64)
        result = {}
        for near in (False, True):
            with desk.sessions() as session:
                session.execute(delete(Verdict))
                session.execute(update(Post).values(status=PostStatus.UNSCORED, priority=0.0))
                session.commit()
            scorer = Scorer(desk.sessions, desk.settings, model, batch_size=8, near_duplicates=near,
                            max_new_tokens=300)  # fmt: skip
            stats = scorer.run()
            with desk.sessions() as session:
                posts = {p.id: p for p in session.scalars(select(Post))}
                rows = {v.id: v for v in session.scalars(select(Verdict))}
            wrong = 0
            hit_posts = {v.post_id for v in rows.values() if v.cached_from_id is not None}
            missed = sorted(
                f"{p.external_id} ({p.meta['kind']} of {p.meta['original']})"
                for p in posts.values()
                if p.meta.get("original") and p.id not in hit_posts
            )
            for v in rows.values():
                if v.cached_from_id is not None:
                    mine, theirs = posts[v.post_id], posts[rows[v.cached_from_id].post_id]
                    mine_from = (mine.meta or {}).get("original", mine.external_id)
                    theirs_from = (theirs.meta or {}).get("original", theirs.external_id)
                    wrong += mine_from != theirs_from
            label = "near_duplicates_on" if near else "exact_only"
            result[label] = {"posts": n, "model_calls": stats.model_calls,
                             "fewer_calls": f"{(1 - stats.model_calls / n) * 100:.1f} %",
                             "cache_hits": stats.cache_hits, "wrong_reuses": wrong,
                             "unusable_answers": stats.failed, "reposts_missed": missed}  # fmt: skip
        desk.engine.dispose()
    return {"reposts": f"{n_reposts} of {n} (exact, re-encoded q60, resized 50 %)", **result}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, help="a Qwen-VL folder (default: build the small random one)")
    parser.add_argument("--posts", type=int, default=16)
    parser.add_argument("--cache-posts", type=int, default=100)
    parser.add_argument("--max-new-tokens", type=int, default=300)
    parser.add_argument("--only", choices=["overhead", "batching", "cache", "precision"])
    parser.add_argument("--drift", default="16x64", help="posts x tokens compared with float32 (precision)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per batch size, the median reported (precision)")
    parser.add_argument("--precision-child", choices=sorted(PRECISIONS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    drift = tuple(int(part) for part in args.drift.split("x"))
    if args.precision_child:  # one precision, in a process of its own (see precision)
        child = precision_child(args.model, args.precision_child, args.posts, args.max_new_tokens, drift, args.rounds)
        print(json.dumps(child))
        return
    parts = {args.only} if args.only else {"overhead", "batching", "cache", "precision"}
    result: dict = {}
    if parts & {"overhead", "batching"}:
        with tempfile.TemporaryDirectory(prefix="bench-model-") as tmp:
            model_dir = args.model or build_tiny_qwen3_vl(Path(tmp) / "small", size="small")
            result["speed"] = speed(model_dir, args.posts, args.max_new_tokens, parts)
    if "precision" in parts:
        with tempfile.TemporaryDirectory(prefix="bench-model-") as tmp:
            model_dir = args.model or build_tiny_qwen3_vl(Path(tmp) / "small", size="small")
            result["precision"] = precision(model_dir, args.posts, args.max_new_tokens, drift, args.rounds)
    if "cache" in parts:
        result["cache"] = cache(args.cache_posts)
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()

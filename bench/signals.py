"""Signal speed: OCR and NSFW seconds per image, near-duplicate lookups among 1,000,000 images.

    python bench/signals.py [--images 1000000] [--queries 500] [--only models|lookup]

- models: rapidocr (`review.signals.ocr.read`, tiling included) on the demo's kinds of image,
  drawn by `review.demo` (an 800×800 ad, a 720×2530 price-list screenshot, a product photo), and
  open_nsfw (`review.signals.nsfw.scores`) on single images and a batch of 16; median of 5 runs
  after one warm-up.
- lookup: `Clusters` (what the signals runner uses) holding N images, each with its whole,
  content and four corner hashes (6 N hashes in two multi-indexes). A fifth of the images are
  near copies (a few bits flipped) of others, as reposts make. Queries: half near copies of
  stored images, half new images; each query is one `Clusters.nearest` call (8 multi-index
  lookups at the runner's radius), and one bare `MultiIndex.near` on the whole-image index.

Prints one JSON object; docs/BENCHMARKS.md records a run.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from review.signals.runner import DUP_RADIUS, Clusters, ImageHashes  # noqa: E402


def _median_seconds(fn, runs: int = 5) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up: model load, first-call allocations
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 3)


def _demo_images() -> dict[str, Image.Image]:
    """One image of each demo kind, drawn exactly as `python -m review demo` draws them."""
    from review.demo import demo_posts

    wanted = {"ad": "ad_absolute_claim", "screenshot": "dense_screenshot", "photo": "product_photo"}
    out: dict[str, Image.Image] = {}
    for post in demo_posts():
        for name, scenario in wanted.items():
            if post.scenario == scenario and name not in out and post.images:
                out[name] = post.images[0][1].convert("RGB")
    missing = set(wanted) - set(out)
    if missing:
        raise SystemExit(f"the demo has no {sorted(missing)} image any more: update bench/signals.py")
    return out


def bench_models() -> dict:
    from review.signals import nsfw, ocr

    images = _demo_images()
    result: dict = {}
    for name, image in images.items():
        tiles = ocr.read(image).tiles
        result[f"ocr_s_{name}_{image.width}x{image.height}"] = _median_seconds(lambda image=image: ocr.read(image))
        result[f"ocr_tiles_{name}"] = tiles
    result["nsfw_s_per_image_single"] = _median_seconds(lambda: nsfw.scores([images["photo"]]))
    batch = [images[name] for name in images] * 6
    result["nsfw_s_per_image_batch_18"] = round(_median_seconds(lambda: nsfw.scores(batch)) / len(batch), 4)
    return result


def _flip(rng: random.Random, value: int, bits: int) -> int:
    for b in rng.sample(range(64), bits):
        value ^= 1 << b
    return value


def _hashes(rng: random.Random, base: ImageHashes | None) -> ImageHashes:
    if base is None:
        whole = tuple(rng.getrandbits(64) for _ in range(2))
        corners = tuple(rng.getrandbits(64) for _ in range(4))
        return ImageHashes(whole, corners, rng.randbytes(48))
    whole = tuple(_flip(rng, h, rng.randrange(0, 6)) for h in base.whole)
    corners = tuple(_flip(rng, h, rng.randrange(0, 6)) for h in base.corners)
    return ImageHashes(whole, corners, base.colour)


def bench_lookup(n: int, queries: int) -> dict:
    rng = random.Random(11)
    started = time.perf_counter()
    stored: list[ImageHashes] = []
    for _ in range(n):
        base = stored[rng.randrange(len(stored))] if stored and rng.random() < 0.2 else None
        stored.append(_hashes(rng, base))
    made = time.perf_counter() - started
    started = time.perf_counter()
    clusters = Clusters((i, h, i) for i, h in enumerate(stored))
    built = time.perf_counter() - started
    probes = [_hashes(rng, stored[rng.randrange(n)]) if k % 2 == 0 else _hashes(rng, None) for k in range(queries)]
    full, bare, found = [], [], 0
    for probe in probes:
        started = time.perf_counter()
        hit = clusters.nearest(probe)
        full.append(time.perf_counter() - started)
        found += hit is not None
        started = time.perf_counter()
        clusters.whole.near(probe.whole[0], DUP_RADIUS)
        bare.append(time.perf_counter() - started)
    return {
        "images": n,
        "stored_hashes": len(clusters.whole) + len(clusters.corners),
        "radius": DUP_RADIUS,
        "generate_s": round(made, 1),
        "build_s": round(built, 1),
        "nearest_ms_median": round(statistics.median(full) * 1000, 2),
        "nearest_ms_p95": round(float(np.percentile(full, 95)) * 1000, 2),
        "multi_index_near_ms_median": round(statistics.median(bare) * 1000, 2),
        "queries": queries,
        "queries_with_a_match": found,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--only", choices=["models", "lookup"])
    args = parser.parse_args()
    out: dict = {}
    if args.only in (None, "models"):
        out["models"] = bench_models()
    if args.only in (None, "lookup"):
        out["lookup"] = bench_lookup(args.images, args.queries)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

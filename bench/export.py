"""Training-data export speed: `python -m review export` on a desk with 100,000+ examples.

    python bench/export.py [--folder /tmp/review-bench] [--posts 120000] [--runs 3]
                           [--formats swift llamafactory parquet] [--repo PATH] [--profile]

The database (``<folder>/export-<posts>.db``) is made by `bench/seed_db.py` (posts, verdicts,
moderators' decisions, ``post_label``) and then given what a real desk has and the metrics
seed lacks: post texts of 10-400 characters (Chinese and English, each unique), the model's
own description, OCR reading and rationale on every verdict, and images: 60 % of the posts
carry one to three of 10,000 distinct stored JPEGs (about 24 KB of noise each; the sizes the
token counts use, as recorded, are 400-2,000 px a side), each with a near-duplicate cluster as
after `python -m review signals`, a third with an OCR signal. It is made once and reused by
path. Every settled post is exported (``--all``: 108,064 examples from 120,000 posts, with 9,997
distinct images).

Each run is `python -m review export --format F --all` in a fresh process (the way an operator
runs it: imports and the tokenizer's load included) into a new folder, timed by the wall clock;
peak memory is that process's maximum resident set size (``os.wait4``). The tokens are
measured with the processor of a small random Qwen3-VL built from `tests/tiny_model.py` (the
real Qwen tokenizer and Qwen3-VL's image processor), saved under the folder once. ``--repo``
times another copy of the code on the same database (the code before a change: `mkdir
/tmp/before && git archive HEAD | tar -x -C /tmp/before`); options it does not know are left
out. ``--profile`` runs one export of the first format under cProfile and prints the top
functions. Prints one JSON object: per format the median seconds, examples per second, peak RSS
in MB, the output size and the manifest's token figures; docs/BENCHMARKS.md records a run.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MEDIA = 10_000  # distinct stored images
SIZES = [(1080, 1440), (720, 1280), (1200, 800), (640, 640), (1920, 1080), (400, 300), (828, 1792), (1024, 768)]
ZH_TEXT = (
    "全网最好的面霜 100%有效 限时优惠 今天只要99元 加微信领取 兼职刷单日赚500 "
    "新买的马克杯颜色很喜欢 海边三连拍 周一早上的我 岁月静好 出去走走 "
    "有没有人一起拼单 满300减50 转发抽奖送iPhone 内部渠道 保证收益 年化30% 名额有限 快来看看"
)
EN_TEXT = ("best cream ever guaranteed results limited offer only today message me for details lose weight fast "
      "great weather at the beach new mug love the colour worst hurricane ever the whole coast is destroyed "
      "click the link free giveaway crypto signals join our group")  # fmt: skip
ZH, EN = ZH_TEXT.split(), EN_TEXT.split()


def _sentence(rng: random.Random, low: int, high: int) -> str:
    target = rng.randint(low, high)
    words: list[str] = []
    size = 0
    while size < target:
        word = rng.choice(ZH) if rng.random() < 0.5 else rng.choice(EN)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:target]


def _jpeg(rng: random.Random) -> bytes:
    """A distinct 160×160 JPEG of noise (about 24 KB; noise does not compress, in parquet either)."""
    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(rng.randrange(2**32)).integers(0, 255, (160, 160, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def enrich(path: Path, media_dir: Path, seed: int = 11) -> dict[str, int]:
    """Give the seeded desk texts, model readings, images (with clusters) and OCR signals."""
    rng = random.Random(seed)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    cur = conn.cursor()
    posts = [r[0] for r in cur.execute("SELECT id FROM post ORDER BY id")]
    cur.execute("BEGIN")
    cur.executemany("UPDATE post SET text = ? WHERE id = ?",
                    [(f"{_sentence(rng, 10, 400)} #{pid}", pid) for pid in posts])  # fmt: skip
    verdicts = [r[0] for r in cur.execute("SELECT id FROM verdict")]
    cur.executemany(
        "UPDATE verdict SET description = ?, ocr_text = ?, rationale = ?, tags = ? WHERE id = ?",
        [(_sentence(rng, 40, 200), _sentence(rng, 0, 60), _sentence(rng, 30, 150),
          json.dumps(rng.sample(["ad", "contact", "price", "meme", "photo", "screenshot"], rng.randint(0, 3))), vid)
         for vid in verdicts],
    )  # fmt: skip
    now = "2026-08-01 00:00:00.000000"
    media = []
    for i in range(1, MEDIA + 1):
        sha = hashlib.sha256(f"bench-{i}".encode()).hexdigest()
        rel = f"{sha[:2]}/{sha[2:4]}/{sha}.jpg"
        data = _jpeg(rng)
        target = media_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        width, height = rng.choice(SIZES)
        cluster = (i - 1) // 3 * 3 + 1  # clusters of three: the id of the cluster's first image
        media.append((i, sha, rel, f"thumbs/{sha[:2]}/{sha}.jpg", "image/jpeg", width, height, 1, len(data),
                      f"{rng.getrandbits(64):016x}", now, cluster))  # fmt: skip
    cur.executemany(
        "INSERT INTO media (id, sha256, path, thumb_path, mime, width, height, frames, size_bytes, phash, created_at, "
        "dup_cluster) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        media,
    )
    links = []
    for pid in posts:
        if rng.random() < 0.6:
            n = rng.choices([1, 2, 3], [70, 20, 10])[0]
            for position, media_id in enumerate(rng.sample(range(1, MEDIA + 1), n)):
                links.append((pid, position, media_id))
    cur.executemany("INSERT INTO post_media (post_id, position, media_id) VALUES (?, ?, ?)", links)
    ocr = [(i, "ocr", json.dumps({"text": _sentence(rng, 10, 120)}, ensure_ascii=False), "bench", "1", now)
           for i in range(1, MEDIA + 1) if rng.random() < 0.33]  # fmt: skip
    cur.executemany(
        "INSERT INTO signal (media_id, kind, value, producer, producer_version, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        ocr,
    )
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()
    return {"posts": len(posts), "media": MEDIA, "post_media": len(links), "ocr_signals": len(ocr)}


def prepare(folder: Path, n_posts: int) -> tuple[Path, Path, Path]:
    """The database, media folder and tokenizer folder, made on first use."""
    folder.mkdir(parents=True, exist_ok=True)
    db, media_dir, model = folder / f"export-{n_posts}.db", folder / f"export-{n_posts}-media", folder / "tiny-qwen3-vl"
    if not db.exists():
        print(f"seeding {n_posts:,} posts into {db}", file=sys.stderr)
        partial = db.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        shutil.rmtree(media_dir, ignore_errors=True)
        seed_db = str(Path(__file__).with_name("seed_db.py"))
        subprocess.run([sys.executable, seed_db, "--posts", str(n_posts), "--database-url", f"sqlite:///{partial}"],
                       check=True)  # fmt: skip
        print(json.dumps(enrich(partial, media_dir)), file=sys.stderr)
        partial.rename(db)
    if not (model / "processor_config.json").exists():
        from tests.tiny_model import build_tiny_qwen3_vl

        build_tiny_qwen3_vl(model)
    return db, media_dir, model


def _options(repo: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    return subprocess.run([sys.executable, "-m", "review", "export", "--help"], cwd=repo, env=env,
                          capture_output=True, text=True, check=True).stdout  # fmt: skip


def run_once(repo: Path, db: Path, media_dir: Path, model: Path, fmt: str, profile: Path | None = None) -> dict:  # type: ignore[type-arg]
    out = Path(tempfile.mkdtemp(prefix=f"export-{fmt}-", dir=db.parent)) / "out"
    known = _options(repo)
    command = ["-m", "review", "export", "--format", fmt, "--all", "--out", str(out)]
    if "--model" in known:
        command += ["--model", str(model)]
    if profile:
        command = ["-m", "cProfile", "-o", str(profile), *command]
    env = {**os.environ, "PYTHONPATH": str(repo), "DATABASE_URL": f"sqlite:///{db}", "MEDIA_DIR": str(media_dir),
           "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, *command], cwd=repo, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)  # fmt: skip
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    stdout, stderr = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    if status != 0:
        raise SystemExit(f"export failed ({status}):\n{stdout.decode()}\n{stderr.decode()[-3000:]}")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    shutil.rmtree(out.parent)
    return {"seconds": elapsed, "peak_rss_mb": usage.ru_maxrss / 1024, "examples": manifest["examples"],
            "images": manifest["images"], "output_mb": size / 1e6,
            **{k: manifest[k] for k in ("max_tokens", "cutoff_len", "tokens") if k in manifest}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/review-bench"))
    parser.add_argument("--posts", type=int, default=120_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--formats", nargs="+", default=["swift", "llamafactory", "parquet"])
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout whose code is timed")
    parser.add_argument("--profile", action="store_true", help="one cProfile run of the first format")
    args = parser.parse_args()
    db, media_dir, model = prepare(args.folder, args.posts)
    if args.profile:
        import pstats

        stats_file = args.folder / "export.prof"
        run_once(args.repo.resolve(), db, media_dir, model, args.formats[0], profile=stats_file)
        pstats.Stats(str(stats_file)).sort_stats("cumulative").print_stats(40)
        return
    report: dict[str, object] = {"database": str(db), "repo": str(args.repo), "runs": args.runs}
    for fmt in args.formats:
        runs = []
        for _ in range(args.runs):
            runs.append(run_once(args.repo.resolve(), db, media_dir, model, fmt))
            print(json.dumps({fmt: runs[-1]}), file=sys.stderr)
        median = statistics.median(r["seconds"] for r in runs)
        first = runs[0]
        report[fmt] = {
            "median_s": round(median, 1),
            "runs_s": [round(r["seconds"], 1) for r in runs],
            "examples": first["examples"],
            "examples_per_s": round(first["examples"] / median),
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs)),
            "images": first["images"],
            "output_mb": round(first["output_mb"]),
            **{k: first[k] for k in ("max_tokens", "cutoff_len", "tokens") if k in first},
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

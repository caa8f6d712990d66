"""Ingest throughput: posts per second with one 512×512 JPEG each, into a fresh SQLite database.

    python bench/ingest.py [--posts 1000] [--runs 3] [--workers 2]

Each run generates distinct images (so nothing is deduplicated), writes a JSONL file, and
ingests it with review.ingest.ingest_paths exactly as `python -m review ingest` does
(validate, decode, hash, thumbnail, copy into the media store, insert). Then it ingests the
same file again (every post already present: each record's images read and hashed to compare
with the stored post) and once more with a tenth of the texts edited and ``--update`` (those
posts take the new content, each with an update event). Prints the medians.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image, ImageDraw  # noqa: E402

from db import schema  # noqa: E402
from db.session import make_engine  # noqa: E402
from review.config import Settings  # noqa: E402
from review.desk import open_desk  # noqa: E402
from review.ingest import IngestReport, StorePolicy, ingest_paths  # noqa: E402


def make_inputs(folder: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        img = Image.new("RGB", (512, 512), tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(img)
        for _ in range(12):
            x, y = rng.randrange(512), rng.randrange(512)
            draw.ellipse((x, y, x + rng.randrange(20, 200), y + rng.randrange(20, 200)),
                         fill=tuple(rng.randrange(256) for _ in range(3)))  # fmt: skip
        draw.text((20, 20), f"post {seed}-{i}", fill=(255, 255, 255))
        name = f"img{i:05d}.jpg"
        img.save(folder / name, "JPEG", quality=90)
        lines.append(json.dumps({"external_id": f"b{seed}-{i}", "source": "bench", "text": f"post {i}",
                                 "images": [name]}))  # fmt: skip
    path = folder / "posts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def one_run(n: int, seed: int, workers: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        data = make_inputs(root / "in", n, seed)
        settings = Settings(database_url=f"sqlite:///{root / 'review.db'}", media_dir=root / "media")
        engine = make_engine(settings.database_url)
        schema.upgrade(engine)
        engine.dispose()
        desk = open_desk(settings)

        def timed(**kwargs: object) -> tuple[float, IngestReport]:
            started = time.perf_counter()
            report = ingest_paths(desk.sessions, [data], settings, workers=workers, **kwargs)  # type: ignore[arg-type]
            return n / (time.perf_counter() - started), report

        first, report = timed()
        assert report.added == n and not report.rejected, report.summary()
        again, report = timed()
        assert report.already_present == n and report.differing == 0, report.summary()
        lines = data.read_text(encoding="utf-8").splitlines()
        edited = [line.replace('"text": "post', '"text": "edited post') if i % 10 == 0 else line
                  for i, line in enumerate(lines)]  # fmt: skip
        data.write_text("\n".join(edited) + "\n", encoding="utf-8")
        updated, report = timed(policy=StorePolicy(update=True))
        assert report.updated == len(range(0, n, 10)) and not report.rejected, report.summary()
        desk.engine.dispose()
        return first, again, updated


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    runs = [one_run(args.posts, seed, args.workers) for seed in range(args.runs)]
    out: dict[str, object] = {"posts_per_run": args.posts, "workers": args.workers}
    for i, name in enumerate(("first", "again_unchanged", "again_update_10pct")):
        rates = [run[i] for run in runs]
        out[name] = {"runs": [round(r, 1) for r in rates], "median_posts_per_s": round(statistics.median(rates), 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""The demo set on disk and in the desk: images and ``posts.jsonl`` written to a folder, then
ingested through the normal ingest path (source ``demo``), as an operator's import would be."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from review.config import Settings
from review.demo.posts import demo_posts
from review.ingest import IngestReport, Progress, ingest_paths

DEMO_SOURCE = "demo"
BASE_TIME = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)  # the first demo post's platform time; one every 7 hours


def demo_external_id(n: int) -> str:
    """The external id of the ``n``-th demo post (from 1): ``demo-001`` …"""
    return f"demo-{n:03d}"


def write_demo_input(folder: Path) -> Path:
    """Draw the demo images into ``folder`` and write ``posts.jsonl`` beside them."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for n, post in enumerate(demo_posts(), start=1):
        names = []
        for name, image, save in post.images:
            fmt = save.get("format", "JPEG")
            options = {"quality": save.get("quality", 88)} if fmt == "JPEG" else {}
            image.save(folder / name, fmt, **options)
            names.append(name)
        record = {
            "external_id": demo_external_id(n),
            "source": DEMO_SOURCE,
            "text": post.text,
            "author": post.author,
            "created_at": (BASE_TIME + timedelta(hours=7 * n)).isoformat(),
            "images": names,
            "metadata": {"demo_scenario": post.scenario},
        }
        lines.append(json.dumps(record, ensure_ascii=False))
    path = folder / "posts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def load_demo(sessions: sessionmaker[Session], settings: Settings, progress: Progress | None = None) -> IngestReport:
    """Generate the demo dataset and ingest it through the normal ingest path."""
    with tempfile.TemporaryDirectory(prefix="review-demo-") as tmp:
        path = write_demo_input(Path(tmp))
        return ingest_paths(sessions, [path], settings, progress=progress)

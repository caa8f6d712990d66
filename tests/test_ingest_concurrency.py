"""Several ingest processes on the same inputs at once: no duplicate posts or media, no crash,
and the counts add up. Real processes, on SQLite and on Postgres."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image
from sqlalchemy import func, select

from db import schema
from db.models import Media, Post, PostMedia
from db.session import make_engine, make_session_factory
from tests.conftest import REPO


def _write_inputs(folder: Path) -> tuple[Path, Path]:
    for i in range(60):  # 60 distinct images, shared by the posts of both files
        Image.new("RGB", (48, 48), (i * 4, 255 - i * 4, (i * 37) % 256)).save(folder / f"i{i}.png")

    def record(n: int) -> str:
        return json.dumps({"external_id": f"c{n}", "source": "race", "text": f"post {n}",
                           "images": [f"i{n % 60}.png", f"i{(n * 7) % 60}.png"]})  # fmt: skip

    a, b = folder / "a.jsonl", folder / "b.jsonl"
    a.write_text("\n".join(record(n) for n in range(0, 300)) + "\n", encoding="utf-8")
    b.write_text("\n".join(record(n) for n in range(150, 450)) + "\n", encoding="utf-8")
    return a, b


def test_concurrent_ingest_processes(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    schema.upgrade(engine)
    a, b = _write_inputs(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "DATABASE_URL": db_url, "MEDIA_DIR": str(tmp_path / "media")}
    procs = [
        subprocess.Popen([sys.executable, "-m", "review", "ingest", "--quiet", str(path)],
                         cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for path in (a, b, a, b)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=300) for p in procs]
    added = 0
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        match = re.search(r"(\d+) added, (\d+) already present, 0 rejected", out)
        assert match, out
        assert int(match[1]) + int(match[2]) == 300
        added += int(match[1])
    assert added == 450  # every post added exactly once, by one of the processes

    with make_session_factory(engine)() as session:
        assert session.scalar(select(func.count(Post.id))) == 450
        assert session.scalar(select(func.count(func.distinct(Post.external_id)))) == 450
        assert session.scalar(select(func.count(Media.id))) == 60
        assert session.scalar(select(func.count()).select_from(PostMedia)) == 900
    engine.dispose()

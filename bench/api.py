"""The HTTP API and the webhooks, measured as a platform meets them: real processes on loopback.

    python bench/api.py [--runs 3] [--section ingest|latency|drain|all]

- ingest: ``python -m review api`` on a fresh SQLite desk; ``POST /v1/posts`` in batches of 100,
  text only (2,000 posts per run) and with one distinct 512×512 JPEG each, inline as base64
  (500 posts per run); beside it the CLI ingest's rate for the same images (bench/ingest.py's
  run, same machine, same process session).
- latency: ``python -m review deliver`` running, one endpoint at a local receiver; 200
  decisions made one by one (claim + confirm, 20 ms apart); the time from ``decide`` returning
  (the decision committed) to the signed request reaching the receiver.
- drain: 10,000 decisions stored while no worker runs (a bulk confirm in chunks of 1,000), then
  one ``python -m review deliver``: deliveries per second until the receiver has every event.

Prints one JSON object per section; medians over the runs.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import httpx2 as httpx  # noqa: E402
from ingest import make_inputs  # noqa: E402  (bench/ingest.py: the same posts and images)
from ingest import one_run as cli_run  # noqa: E402  (`python -m review ingest`'s path)
from sqlalchemy import select  # noqa: E402

from db import schema  # noqa: E402
from db.models import OutboxEvent  # noqa: E402
from db.session import make_engine  # noqa: E402
from review.auth import OPERATOR, create_user  # noqa: E402
from review.config import Settings, settings_env  # noqa: E402
from review.decisions import claim, decide, decide_bulk  # noqa: E402
from review.desk import Desk, open_desk  # noqa: E402
from review.tokens import create_token  # noqa: E402
from review.webhooks import add_endpoint  # noqa: E402
from tests.factories import spam_queue  # noqa: E402  (queued posts with a usable verdict each)

BATCH = 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fresh_desk(root: Path) -> Desk:
    settings = Settings(database_url=f"sqlite:///{root / 'review.db'}", media_dir=root / "media").with_overrides(
        webhook_allow_private=True
    )
    engine = make_engine(settings.database_url)
    schema.upgrade(engine)
    engine.dispose()
    return open_desk(settings)


def start(desk: Desk, *args: str) -> subprocess.Popen[bytes]:
    """``python -m review ARGS`` on the desk's settings; its output goes to a log beside the database."""
    env = {**os.environ, **settings_env(desk.settings), "PYTHONPATH": str(ROOT)}
    log = (desk.settings.media_dir.parent / f"{args[0]}.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "review", *args], cwd=ROOT, env=env, stdout=log, stderr=log)


def wait_for(url: str, timeout: float = 60, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer" + (f":\n{log.read_text()[-3000:]}" if log else ""))


def post_batches(base: str, token: str, batches: list[list[dict]]) -> float:
    """Seconds to POST every batch in turn (one client, keep-alive), checking every answer."""
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
        started = time.perf_counter()
        for batch in batches:
            answer = client.post("/v1/posts", json={"posts": batch})
            answer.raise_for_status()
            assert answer.json()["created"] == len(batch), answer.text[:500]
        return time.perf_counter() - started


def ingest_run(seed: int, text_posts: int, image_posts: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        desk = fresh_desk(Path(tmp))
        _, token = create_token(desk.sessions, OPERATOR, "bench", "ingest")
        port = free_port()
        server = start(desk, "api", "--host", "127.0.0.1", "--port", str(port))
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(f"{base}/v1/health", log=Path(tmp) / "api.log")
            texts = [{"source": "bench", "external_id": f"t{seed}-{i}", "text": f"post {i} " * 20}
                     for i in range(text_posts)]  # fmt: skip
            text_rate = text_posts / post_batches(
                base, token, [texts[i : i + BATCH] for i in range(0, text_posts, BATCH)]
            )
            folder = Path(tmp) / "in"
            folder.mkdir()
            images = []  # bench/ingest.py's posts and images, inline
            for line in make_inputs(folder, image_posts, seed).read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                name = record["images"][0]
                data = base64.b64encode((folder / name).read_bytes()).decode("ascii")
                images.append({**record, "images": [{"name": name, "data": data}]})
            image_rate = image_posts / post_batches(
                base, token, [images[i : i + BATCH] for i in range(0, image_posts, BATCH)]
            )
        finally:
            server.terminate()
            server.wait(30)
            desk.engine.dispose()
    return text_rate, image_rate


class Receiver:
    """A webhook receiver on loopback that notes when each webhook-id first arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.requests = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("content-length", "0")))
                now = time.perf_counter()
                with lock:
                    outer.requests += 1
                    outer.arrived.setdefault(self.headers["webhook-id"], now)
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def uid_of(desk: Desk, review_event_id: int) -> str:
    with desk.sessions() as session:
        return str(session.scalar(select(OutboxEvent.uid).where(OutboxEvent.review_event_id == review_event_id)))


def latency_run(decisions: int) -> list[float]:
    receiver = Receiver()
    with tempfile.TemporaryDirectory(prefix="bench-hook-") as tmp:
        desk = fresh_desk(Path(tmp))
        add_endpoint(desk.sessions, OPERATOR, receiver.url, desk.settings)
        admin = create_user(desk.sessions, "admin", None, "admin", by=None)
        moderator = create_user(desk.sessions, "mod", None, "moderator", by=admin)
        ids = spam_queue(desk, decisions)
        worker = start(desk, "deliver")
        try:
            time.sleep(2)  # the worker's start-up
            committed: dict[str, float] = {}
            for post_id in ids:
                claim(desk.sessions, moderator, post_id)
                event = decide(desk.sessions, moderator, post_id, "confirm")
                committed[uid_of(desk, event.id)] = time.perf_counter()
                time.sleep(0.02)
            deadline = time.monotonic() + 60
            while len(receiver.arrived) < decisions and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            worker.terminate()
            worker.wait(30)
            receiver.close()
            desk.engine.dispose()
    assert len(receiver.arrived) == decisions, f"{len(receiver.arrived)} of {decisions} arrived"
    return [receiver.arrived[uid] - committed[uid] for uid in committed]


def drain_run(events: int) -> dict[str, float]:
    receiver = Receiver()
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        desk = fresh_desk(Path(tmp))
        add_endpoint(desk.sessions, OPERATOR, receiver.url, desk.settings)
        admin = create_user(desk.sessions, "admin", None, "admin", by=None)
        lead = create_user(desk.sessions, "lead", None, "lead", by=admin)
        ids = spam_queue(desk, events)
        for start_at in range(0, events, 1000):
            decide_bulk(desk.sessions, lead, ids[start_at : start_at + 1000], "confirm")
        worker = start(desk, "deliver")
        try:
            started = time.perf_counter()
            deadline = time.monotonic() + 600
            while len(receiver.arrived) < events and time.monotonic() < deadline:
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
        finally:
            worker.terminate()
            worker.wait(30)
            receiver.close()
            desk.engine.dispose()
    assert len(receiver.arrived) == events, f"{len(receiver.arrived)} of {events} arrived"
    return {"seconds": elapsed, "per_s": events / elapsed, "requests": receiver.requests}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--section", choices=["ingest", "latency", "drain", "all"], default="all")
    args = parser.parse_args()
    if args.section in ("ingest", "all"):
        runs = [ingest_run(seed, 2000, 500) for seed in range(args.runs)]
        cli = [cli_run(500, 100 + seed, 2) for seed in range(args.runs)]
        print(json.dumps({
            "section": "ingest",
            "text_posts_per_s": [round(t, 1) for t, _ in runs],
            "median_text_posts_per_s": round(statistics.median(t for t, _ in runs), 1),
            "jpeg_posts_per_s": [round(j, 1) for _, j in runs],
            "median_jpeg_posts_per_s": round(statistics.median(j for _, j in runs), 1),
            "cli_jpeg_posts_per_s": [round(c, 1) for c in cli],
            "median_cli_jpeg_posts_per_s": round(statistics.median(cli), 1),
        }))  # fmt: skip
    if args.section in ("latency", "all"):
        waits = latency_run(200)
        cuts = statistics.quantiles(waits, n=100)
        print(json.dumps({"section": "latency", "decisions": len(waits), "p50_ms": round(cuts[49] * 1000, 1),
                          "p95_ms": round(cuts[94] * 1000, 1), "max_ms": round(max(waits) * 1000, 1)}))  # fmt: skip
    if args.section in ("drain", "all"):
        drains = [drain_run(10_000) for _ in range(args.runs)]
        print(json.dumps({"section": "drain", "events": 10_000, "runs_per_s": [round(d["per_s"], 1) for d in drains],
                          "median_per_s": round(statistics.median(d["per_s"] for d in drains), 1),
                          "requests": [d["requests"] for d in drains]}))  # fmt: skip


if __name__ == "__main__":
    main()

"""review/inference/openai_server.py, the OpenAI-compatible provider against a real server:
`transformers serve` on 127.0.0.1 serving the tiny Qwen3-VL (no mock server). Images travel as data
URLs; every post ends with a verdict row; a forced answer (a test-only generation_config that makes
the random model spell out a recorded verdict) proves a good answer is parsed and stored as such.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from db.models import Post, PostStatus, Verdict
from review.desk import Desk
from review.inference.base import ModelRequest, ModelUnavailable
from review.inference.openai_server import OpenAIProvider, image_data_url, to_openai_messages
from review.ingest import ingest_records
from review.prompts import moderation_prompt
from review.scoring import Scorer
from tests.conftest import free_port

OUTPUTS = Path(__file__).parent / "data" / "model_outputs"


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`transformers serve` pinned to the tiny model, on a free loopback port, for this module."""
    port = free_port()
    home = tmp_path_factory.mktemp("serve")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_CACHE": str(home)}
    log = home / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("transformers")), "serve", str(tiny_model_dir),
             "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.3)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def forced_answer(model_dir: Path, text: str) -> dict[str, str]:
    """Test-only: a `transformers serve` generation_config whose chained sequence_bias makes the
    random model write exactly ``text`` (vLLM does not know this field; production never sends it)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    ids = [*tok.encode(text, add_special_tokens=False), end]
    bias = [[ids[: k + 1], 100.0 * (k + 1)] for k in range(len(ids))]
    config = {"sequence_bias": bias, "do_sample": False, "eos_token_id": end, "max_new_tokens": len(ids) + 5}
    return {"generation_config": json.dumps(config)}


def test_messages_become_data_urls() -> None:
    prompt = moderation_prompt("hi", 2)
    images = [Image.new("RGB", (4000, 3000), "red"), Image.new("RGB", (20, 20), "blue")]
    messages = to_openai_messages(prompt.messages, images, max_pixels=100_000)
    assert isinstance(messages[0]["content"], str)  # the system prompt as plain text
    parts = messages[1]["content"]
    assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]
    big = Image.open(io.BytesIO(base64.b64decode(parts[0]["image_url"]["url"].split(",")[1])))
    assert big.width * big.height <= 100_000 and big.width / big.height == pytest.approx(4 / 3, rel=0.02)
    assert image_data_url(images[1]).startswith("data:image/jpeg;base64,")
    with pytest.raises(ValueError, match="more image parts"):
        to_openai_messages(prompt.messages, images[:1], max_pixels=100_000)


def test_unreachable_server_is_one_clear_error() -> None:
    with pytest.raises(ModelUnavailable, match="cannot be reached"):
        OpenAIProvider(f"http://127.0.0.1:{free_port()}", "m")
    with pytest.raises(ModelUnavailable, match="not an http"):
        OpenAIProvider("ftp://example/v1", "m")


def test_scoring_through_the_server(desk: Desk, tmp_path: Path, server: str, tiny_model_dir: Path) -> None:
    for i in range(3):
        Image.new("RGB", (80, 60), (i * 80, 40, 200)).save(tmp_path / f"s{i}.png")
    records = [
        {"external_id": "two", "text": "两张图", "images": ["s0.png", "s1.png"]},
        {"external_id": "one", "text": "one image", "images": ["s2.png"]},
        {"external_id": "none", "text": "just text"},
    ]
    ingest_records(desk.sessions, records, desk.settings, base_dir=tmp_path)
    provider = OpenAIProvider(server, str(tiny_model_dir), concurrency=3, timeout_s=120)
    stats = Scorer(desk.sessions, desk.settings, provider, batch_size=3, max_new_tokens=16).run()
    assert stats.scored == 3 and stats.model_calls == 3
    with desk.sessions() as session:
        verdicts = list(session.scalars(select(Verdict)))
        assert all(p.status == PostStatus.QUEUED for p in session.scalars(select(Post)))
    assert len(verdicts) == 3
    for v in verdicts:
        assert v.provider == "openai" and v.model_id == str(tiny_model_dir)
        assert v.error is None or v.parse_status == "failed"  # garbage text, but the call worked
        assert v.raw_output and v.prompt_tokens and v.completion_tokens and v.latency_ms
    tokens = {v.post_id: v.prompt_tokens for v in verdicts}
    assert len(set(tokens.values())) == 3  # two images, one image and none cost differently


def test_a_good_answer_is_parsed_and_stored(server: str, tiny_model_dir: Path) -> None:
    answer = (OUTPUTS / "good_fire.txt").read_text(encoding="utf-8").strip()
    provider = OpenAIProvider(server, str(tiny_model_dir), extra_body=forced_answer(tiny_model_dir, answer))
    request = ModelRequest(moderation_prompt("岁月静好", 1), [Image.new("RGB", (64, 64), "orange")], None, 600)
    (generation,) = provider.generate([request])
    assert generation.error is None and generation.finish_reason == "stop"
    assert generation.text == answer
    from review.inference.parsing import parse

    result = parse(generation.text)
    assert result.status == "ok" and result.verdict is not None and result.verdict.category == "misinformation"


def test_follow_up_questions_through_the_server(server: str, tiny_model_dir: Path, sqlite_desk: Desk) -> None:
    from review.followup import PostContext, ask

    provider = OpenAIProvider(server, str(tiny_model_dir))
    post = PostContext(post_id=1, text="岁月静好", images=[Image.new("RGB", (64, 64), "orange")], verdict_json=None)
    first = ask(provider, post, [], "图里有什么？", max_new_tokens=8)
    second = ask(provider, post, [first], "and the price?", max_new_tokens=8)
    assert first.error is None and second.error is None
    assert first.prompt_version == second.prompt_version and first.prompt_version.startswith("followup@")

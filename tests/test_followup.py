"""Follow-up questions on the tiny Qwen3-VL: the image prefix is encoded once per conversation
(counted at the vision tower), cached answers equal uncached ones, and `python -m review ask`
holds one conversation over several questions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from review.desk import Desk
from review.errors import ReviewError
from review.followup import Turn, ask, conversation_json, load_post
from review.inference.hf import TransformersProvider
from review.ingest import ingest_records
from review.visibility import COMMAND_LINE
from tests.conftest import REPO


@pytest.fixture(scope="module")
def provider(tiny_model_dir: Path) -> TransformersProvider:
    return TransformersProvider(str(tiny_model_dir), max_pixels=96 * 96, prefix_cache_size=2, dtype="float32")


class VisionCalls:
    """Counts forward passes of the model's vision tower."""

    def __init__(self, provider: TransformersProvider) -> None:
        tower = next(m for name, m in provider.model.named_modules() if name.endswith("visual"))
        self.count = 0
        self._handle = tower.register_forward_hook(self._seen)

    def _seen(self, *_: object) -> None:
        self.count += 1

    def close(self) -> None:
        self._handle.remove()


class FullPrompt:
    """A provider whose chat runs the whole conversation through plain ``generate``."""

    name = "transformers"
    model_revision = None
    precision = None
    adapter = None

    def __init__(self, inner: TransformersProvider) -> None:
        self.inner = inner
        self.model_id = inner.model_id

    def chat(self, request):
        return self.inner.generate([request])[0]


@pytest.fixture
def vision_calls(provider: TransformersProvider):
    provider._prefixes.clear()
    calls = VisionCalls(provider)
    yield calls
    calls.close()


def _post(desk: Desk, tmp_path: Path, external_id: str, n_images: int, text: str = "岁月静好", shade: int = 0) -> int:
    names = []
    for i in range(n_images):
        name = f"{external_id}-{i}.png"
        Image.new("RGB", (120 + 20 * i, 90), (200, 60 + 40 * i, shade)).save(tmp_path / name)
        names.append(name)
    report = ingest_records(
        desk.sessions, [{"external_id": external_id, "text": text, "images": names}], desk.settings, base_dir=tmp_path
    )
    return report.post_ids[0]


QUESTIONS = ["图里着火了吗？", "What is the price on the sign?", "Is the caption sarcastic?"]


def _conversation(provider: TransformersProvider, post, fresh_each_time: bool) -> list[Turn]:
    turns: list[Turn] = []
    for question in QUESTIONS:
        if fresh_each_time:
            provider._prefixes.clear()
        turns.append(ask(provider, post, turns, question, max_new_tokens=12))
    return turns


@pytest.mark.parametrize("n_images", [1, 2])
def test_the_vision_tower_runs_once_per_conversation(
    sqlite_desk: Desk, tmp_path: Path, provider: TransformersProvider, vision_calls: VisionCalls, n_images: int
) -> None:
    post_id = _post(sqlite_desk, tmp_path, "fire", n_images)
    with sqlite_desk.sessions() as session:
        post = load_post(session, sqlite_desk.settings, COMMAND_LINE, post_id)
    assert len(post.images) == n_images

    cached = _conversation(provider, post, fresh_each_time=False)
    assert vision_calls.count == 1  # three questions, one pass over the images
    assert all(t.error is None and t.prompt_version and t.prompt_version.startswith("followup@") for t in cached)

    vision_calls.count = 0
    uncached = _conversation(provider, post, fresh_each_time=True)
    assert vision_calls.count == len(QUESTIONS)
    # The cache changes the cost, not the answers (greedy decoding, same model) — also against
    # the plain path that runs the whole prompt with no prefix cache at all.
    assert [t.answer for t in cached] == [t.answer for t in uncached]
    plain = TransformersProvider(provider.model_id, max_pixels=96 * 96, share_system_prefix=False, dtype="float32")
    full = FullPrompt(plain)
    reference: list[Turn] = []
    for question in QUESTIONS:
        reference.append(ask(full, post, reference, question, max_new_tokens=12))
    assert [t.answer for t in cached] == [t.answer for t in reference]
    assert len({t.answer for t in cached}) > 1  # the answers do depend on the question


def test_conversations_about_different_posts_do_not_mix(
    sqlite_desk: Desk, tmp_path: Path, provider: TransformersProvider, vision_calls: VisionCalls
) -> None:
    a = _post(sqlite_desk, tmp_path, "a", 1, "first post", shade=0)
    b = _post(sqlite_desk, tmp_path, "b", 1, "second post", shade=250)
    with sqlite_desk.sessions() as session:
        post_a = load_post(session, sqlite_desk.settings, COMMAND_LINE, a)
        post_b = load_post(session, sqlite_desk.settings, COMMAND_LINE, b)
    a1 = ask(provider, post_a, [], "describe it", max_new_tokens=10)
    b1 = ask(provider, post_b, [], "describe it", max_new_tokens=10)
    a2 = ask(provider, post_a, [a1], "and the colours?", max_new_tokens=10)
    assert vision_calls.count == 2  # one per post; back to the first post reuses its prefix
    provider._prefixes.clear()
    assert ask(provider, post_a, [a1], "and the colours?", max_new_tokens=10).answer == a2.answer
    assert b1.error is None
    # A repost of the same image with another caption shares the image prefix (the text follows it).
    c = _post(sqlite_desk, tmp_path, "c", 1, "a different caption", shade=0)
    with sqlite_desk.sessions() as session:
        post_c = load_post(session, sqlite_desk.settings, COMMAND_LINE, c)
    provider._prefixes.clear()
    vision_calls.count = 0
    ask(provider, post_a, [], "describe it", max_new_tokens=4)
    ask(provider, post_c, [], "describe it", max_new_tokens=4)
    assert vision_calls.count == 1


def test_questions_are_checked_and_the_conversation_downloads(
    sqlite_desk: Desk, tmp_path: Path, provider: TransformersProvider
) -> None:
    post_id = _post(sqlite_desk, tmp_path, "q", 1)
    with sqlite_desk.sessions() as session:
        post = load_post(session, sqlite_desk.settings, COMMAND_LINE, post_id)
        with pytest.raises(ReviewError, match="no post"):
            load_post(session, sqlite_desk.settings, COMMAND_LINE, post_id + 100)
    with pytest.raises(ReviewError, match="empty"):
        ask(provider, post, [], "   ")
    with pytest.raises(ReviewError, match="longer than"):
        ask(provider, post, [], "x" * 5000)
    turn = ask(provider, post, [], "what is shown?", max_new_tokens=8)
    document = json.loads(conversation_json(post, [turn], provider))
    assert document["post_id"] == post_id and document["model_id"] == provider.model_id
    assert [t["question"] for t in document["turns"]] == ["what is shown?"]
    assert document["verdict_shown"] is None  # the post has no verdict yet


def test_text_only_posts_are_answered_without_a_cache(
    sqlite_desk: Desk, provider: TransformersProvider, vision_calls: VisionCalls
) -> None:
    report = ingest_records(
        sqlite_desk.sessions, [{"external_id": "t", "text": "加微信 abc123 领红包"}], sqlite_desk.settings
    )
    with sqlite_desk.sessions() as session:
        post = load_post(session, sqlite_desk.settings, COMMAND_LINE, report.post_ids[0])
    turn = ask(provider, post, [], "is this spam?", max_new_tokens=8)
    assert turn.error is None and vision_calls.count == 0 and not provider._prefixes


def test_ask_cli_holds_one_conversation(sqlite_desk: Desk, tmp_path: Path, tiny_model_dir: Path) -> None:
    post_id = _post(sqlite_desk, tmp_path, "cli", 1)
    saved = tmp_path / "conversation.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "DATABASE_URL": sqlite_desk.settings.database_url}
    env["MEDIA_DIR"] = str(sqlite_desk.settings.media_dir)
    done = subprocess.run(
        [sys.executable, "-m", "review", "ask", str(post_id), "--model", str(tiny_model_dir),
         "--max-new-tokens", "6", "--save", str(saved)],
        input="first question\n\nsecond question\n", env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    turns = json.loads(saved.read_text(encoding="utf-8"))["turns"]
    assert [t["question"] for t in turns] == ["first question", "second question"]
    missing = subprocess.run(
        [sys.executable, "-m", "review", "ask", "999999", "hi", "--model", str(tiny_model_dir)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert missing.returncode == 2 and "no post 999999" in missing.stderr

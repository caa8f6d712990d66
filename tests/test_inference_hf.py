"""review/inference/hf.py, the transformers provider's shared system prefix: a batch continues one cached run of the
system message (policy and schema), with the padding in the middle, and answers exactly as the
plain full-prompt path does — batched or one by one, with and without images; on Qwen3-VL and
on Qwen2.5-VL, whose follow-up conversations also encode their images once."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from review.inference.base import ModelRequest
from review.inference.hf import TransformersProvider
from review.inference.schema import verdict_json_schema
from review.policy import load_policy
from review.prompts import RenderedPrompt, moderation_prompt


@pytest.fixture(scope="module", params=["qwen3_vl", "qwen2_5_vl"])
def providers(request: pytest.FixtureRequest) -> tuple[TransformersProvider, TransformersProvider]:
    folder = request.getfixturevalue("tiny_model_dir" if request.param == "qwen3_vl" else "tiny_qwen2_5_dir")
    shared = TransformersProvider(str(folder), max_pixels=96 * 96, dtype="float32")
    plain = TransformersProvider(str(folder), max_pixels=96 * 96, share_system_prefix=False, dtype="float32")
    return shared, plain


def _requests(max_new_tokens: int) -> list[ModelRequest]:
    schema = verdict_json_schema(load_policy())
    images = [Image.new("RGB", (90 + 10 * i, 60), (200, 30, 40 * i)) for i in range(3)]
    return [
        ModelRequest(moderation_prompt("火灾现场 岁月静好", 1), images[:1], schema, max_new_tokens),
        ModelRequest(
            moderation_prompt("two images and a much longer caption than the others", 2),
            images[1:],
            schema,
            max_new_tokens,
        ),  # fmt: skip
        ModelRequest(moderation_prompt("text only", 0), [], schema, max_new_tokens),
    ]


@pytest.mark.parametrize("constrained", [False, True])
def test_shared_prefix_answers_equal_the_full_prompt(
    providers: tuple[TransformersProvider, TransformersProvider], constrained: bool
) -> None:
    shared, plain = providers
    shared.constrained = plain.constrained = constrained
    requests = _requests(280 if constrained else 16)
    batched = shared.generate(requests)
    reference = plain.generate(requests)
    one_by_one = [shared.generate([r])[0] for r in requests]
    assert [g.text for g in batched] == [g.text for g in reference] == [g.text for g in one_by_one]
    assert len({g.text for g in batched}) > 1  # the answers depend on the input
    assert [g.prompt_tokens for g in batched] == [g.prompt_tokens for g in reference]
    assert all(g.error is None for g in batched)
    assert len(shared._system_prefixes) == 1 and not plain._system_prefixes


def test_the_system_prefix_is_run_once_per_prompt_version(
    providers: tuple[TransformersProvider, TransformersProvider],
) -> None:
    shared, _ = providers
    shared._system_prefixes.clear()
    shared.generate(_requests(4))
    (entry,) = shared._system_prefixes.values()
    shared.generate(_requests(4)[:2])
    assert list(shared._system_prefixes.values()) == [entry]
    assert entry.cache.get_seq_length() == entry.ids.shape[1]  # the shared cache is never extended
    other = RenderedPrompt(  # another system message (an edited policy, say) gets its own entry
        messages=[{"role": "system", "content": [{"type": "text", "text": "Another policy."}]},
                  {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        version="moderation@000000000000",
    )  # fmt: skip
    shared.generate([ModelRequest(other, [], None, 4)])
    assert len(shared._system_prefixes) == 2 and entry in shared._system_prefixes.values()


def test_qwen2_5_vl_conversations_encode_the_images_once(tiny_qwen2_5_dir: Path) -> None:
    from review.followup import PostContext, ask

    provider = TransformersProvider(str(tiny_qwen2_5_dir), max_pixels=96 * 96, dtype="float32")
    tower = next(m for name, m in provider.model.named_modules() if name.endswith("visual"))
    calls = []
    tower.register_forward_hook(lambda *_: calls.append(1))
    post = PostContext(1, "岁月静好", [Image.new("RGB", (100, 70), (220, 80, 10))], None)
    turns = []
    for question in ("what burns?", "and where?"):
        turns.append(ask(provider, post, turns, question, max_new_tokens=8))
    assert len(calls) == 1 and all(t.error is None for t in turns)
    provider._prefixes.clear()
    again = ask(provider, post, turns[:1], "and where?", max_new_tokens=8)
    assert again.answer == turns[1].answer and len(calls) == 2

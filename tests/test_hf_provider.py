"""The transformers provider's shared system prefix: a batch continues one cached run of the
system message (policy and schema), with the padding in the middle, and answers exactly as the
plain full-prompt path does — batched or one by one, with and without images."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from review.inference.base import ModelRequest
from review.inference.hf import TransformersProvider
from review.inference.schema import verdict_json_schema
from review.policy import load_policy
from review.prompts import RenderedPrompt, moderation_prompt


@pytest.fixture(scope="module")
def providers(tiny_model_dir: Path) -> tuple[TransformersProvider, TransformersProvider]:
    shared = TransformersProvider(str(tiny_model_dir), max_pixels=96 * 96)
    plain = TransformersProvider(str(tiny_model_dir), max_pixels=96 * 96, share_system_prefix=False)
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

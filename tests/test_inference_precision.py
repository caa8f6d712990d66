"""Issue 18 (first step): the transformers provider's precision — ``--dtype auto|float32|bfloat16``
and ``--quantize none|int8`` (settings MODEL_DTYPE, MODEL_QUANTIZE) — on the tiny random
Qwen3-VL, and the precision recorded on every verdict (``verdict.model_precision``), where it is
part of the cache key: an int8 answer is not reused for a float32 run. Random weights write
garbage: these tests check what runs and what is stored, not what the model says."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from sqlalchemy import select

from db.models import Verdict
from review.config import load_settings
from review.errors import ConfigError
from review.inference import load_provider
from review.inference.base import ModelUnavailable
from review.inference.hf import TransformersProvider, load_dtype, native_bfloat16
from review.ingest import ingest_records
from review.scoring import Scorer


def _dynamic_int8(module: torch.nn.Module) -> bool:
    return type(module).__module__.startswith("torch.ao.nn.quantized.dynamic")


def test_auto_picks_bfloat16_where_it_is_native_and_int8_on_a_cpu_computes_in_float32() -> None:
    assert load_dtype("auto", "none", cuda=True) is torch.bfloat16
    assert load_dtype("auto", "none", cuda=False) is (torch.bfloat16 if native_bfloat16() else torch.float32)
    assert load_dtype("float32", "none", cuda=True) is torch.float32
    assert load_dtype("bfloat16", "none", cuda=False) is torch.bfloat16
    assert load_dtype("auto", "int8", cuda=False) is torch.float32  # torch's dynamic int8 takes float32
    assert load_dtype("auto", "int8", cuda=True) is torch.bfloat16  # bitsandbytes' layers over bfloat16
    with pytest.raises(ModelUnavailable, match="int8 on a CPU computes in float32"):
        load_dtype("bfloat16", "int8", cuda=False)
    with pytest.raises(ModelUnavailable, match="unknown dtype 'float16'"):
        load_dtype("float16", "none", cuda=False)
    with pytest.raises(ModelUnavailable, match="unknown quantization 'int4'"):
        load_dtype("auto", "int4", cuda=False)


def test_the_settings_name_the_precision_and_refuse_others() -> None:
    settings = load_settings({"MODEL_DTYPE": "bfloat16", "MODEL_QUANTIZE": "int8"})
    assert (settings.model_dtype, settings.model_quantize) == ("bfloat16", "int8")
    assert (load_settings({}).model_dtype, load_settings({}).model_quantize) == ("auto", "none")
    with pytest.raises(ConfigError, match="model_quantize must be one of none, int8, got 'int4'"):
        load_settings({"MODEL_QUANTIZE": "int4"})
    with pytest.raises(ConfigError, match="model_dtype must be one of auto, float32, bfloat16"):
        load_settings({"MODEL_DTYPE": "fp16"})


@pytest.mark.parametrize(
    ("dtype", "quantize", "precision"),
    [("float32", "none", "float32"), ("bfloat16", "none", "bfloat16"), ("auto", "int8", "int8-dynamic")],
)
def test_each_precision_loads_answers_and_is_recorded_on_the_verdict(
    sqlite_desk, tmp_path: Path, tiny_model_dir: Path, dtype: str, quantize: str, precision: str
) -> None:
    provider = load_provider(sqlite_desk.settings, name="transformers", model=str(tiny_model_dir), dtype=dtype,
                             quantize=quantize)  # fmt: skip
    assert isinstance(provider, TransformersProvider) and provider.precision == precision
    decoder = provider.model.get_decoder()
    linears = [m for m in decoder.modules() if isinstance(m, torch.nn.Linear)]
    quantized = [m for m in decoder.modules() if _dynamic_int8(m)]
    if quantize == "int8":  # the language model's linear layers and its head are int8; the vision tower keeps its own
        assert quantized and not linears and _dynamic_int8(provider.model.lm_head)
        assert any(isinstance(m, torch.nn.Linear) for m in provider.model.model.visual.modules())
    else:
        assert linears and not quantized and linears[0].weight.dtype == getattr(torch, dtype)
    Image.new("RGB", (64, 48), (200, 80, 40)).save(tmp_path / "a.png")
    report = ingest_records(sqlite_desk.sessions, [{"external_id": "a", "text": "a post", "images": ["a.png"]}],
                            sqlite_desk.settings, base_dir=tmp_path)  # fmt: skip
    Scorer(sqlite_desk.sessions, sqlite_desk.settings, provider, batch_size=1, max_new_tokens=8).run()
    with sqlite_desk.sessions() as session:
        verdict = session.scalars(select(Verdict).where(Verdict.post_id == report.post_ids[0])).one()
    assert verdict.model_precision == precision and verdict.raw_output is not None and not verdict.cache_hit


def test_an_int8_answer_is_no_cached_answer_for_float32(sqlite_desk, tmp_path: Path, tiny_model_dir: Path) -> None:
    records = [{"external_id": "a", "text": "the same post"}, {"external_id": "b", "text": "the same post"}]
    first = ingest_records(sqlite_desk.sessions, records[:1], sqlite_desk.settings).post_ids[0]
    int8 = TransformersProvider(str(tiny_model_dir), quantize="int8", max_pixels=64 * 64)
    Scorer(sqlite_desk.sessions, sqlite_desk.settings, int8, max_new_tokens=8).run()
    second = ingest_records(sqlite_desk.sessions, records[1:], sqlite_desk.settings).post_ids[0]
    full = TransformersProvider(str(tiny_model_dir), dtype="float32", max_pixels=64 * 64)
    Scorer(sqlite_desk.sessions, sqlite_desk.settings, full, max_new_tokens=8).run()
    with sqlite_desk.sessions() as session:
        rows = {v.post_id: v for v in session.scalars(select(Verdict))}
    assert rows[first].model_precision == "int8-dynamic" and rows[second].model_precision == "float32"
    assert not rows[second].cache_hit and rows[first].input_hash != rows[second].input_hash


def test_int8_on_a_gpu_needs_bitsandbytes() -> None:
    from review.inference import hf

    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        with pytest.raises(ModelUnavailable, match="int8 on a GPU needs the bitsandbytes package"):
            hf._bitsandbytes_int8()
    else:
        assert hf._bitsandbytes_int8().load_in_8bit


def test_a_lora_adapter_runs_on_the_int8_base(sqlite_desk, tmp_path: Path, tiny_model_dir: Path) -> None:
    """The adapter is loaded first; the layers it adapts are quantized under it, its own small A/B
    layers stay in float (PEFT reads their weights as tensors: quantized, it failed to answer)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(str(tiny_model_dir))
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    provider = TransformersProvider(str(tiny_model_dir), adapter=str(tmp_path / "adapter"), quantize="int8",
                                    max_pixels=64 * 64)  # fmt: skip
    modules = dict(provider.model.named_modules())
    adapted = [n for n in modules if n.endswith("q_proj.base_layer")]
    assert adapted and all(_dynamic_int8(modules[n]) for n in adapted)
    assert all(
        isinstance(m, torch.nn.Linear) for n, m in modules.items() if n.endswith(("lora_A.default", "lora_B.default"))
    )
    post = ingest_records(sqlite_desk.sessions, [{"external_id": "a", "text": "a post"}], sqlite_desk.settings)
    Scorer(sqlite_desk.sessions, sqlite_desk.settings, provider, max_new_tokens=8).run()
    with sqlite_desk.sessions() as session:
        verdict = session.scalars(select(Verdict).where(Verdict.post_id == post.post_ids[0])).one()
    assert verdict.error is None or "dtype" not in verdict.error
    assert verdict.raw_output and verdict.model_precision == "int8-dynamic" and verdict.adapter

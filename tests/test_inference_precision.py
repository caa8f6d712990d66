"""Issue 18 (first step): the transformers provider's precision — ``--dtype auto|float32|bfloat16``
and ``--quantize none|int8`` (settings MODEL_DTYPE, MODEL_QUANTIZE) — on the tiny random
Qwen3-VL, and the precision recorded on every verdict (``verdict.model_precision``), where it is
part of the cache key: an int8 answer is not reused for a float32 run. Random weights write
garbage: these tests check what runs and what is stored, not what the model says."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image
from sqlalchemy import select

from db.models import Verdict
from review.config import format_bytes, load_settings, parse_bytes
from review.errors import ConfigError
from review.inference import load_provider
from review.inference.base import ModelUnavailable
from review.inference.hf import TransformersProvider
from review.inference.precision import (
    Precision,
    _cgroup_headroom,
    available_memory,
    choose,
    estimate_bytes,
    int8_linear,
    native_bfloat16,
    resolve,
    weight_bytes,
)
from review.ingest import ingest_records
from review.scoring import Scorer


def _dynamic_int8(module: torch.nn.Module) -> bool:
    return type(module).__module__.startswith("torch.ao.nn.quantized.dynamic")


def test_auto_picks_bfloat16_where_it_is_native_and_int8_on_a_cpu_computes_in_float32() -> None:
    assert resolve("auto", "none", cuda=True) == Precision("bfloat16", "none", cuda=True)
    assert resolve("auto", "none", cuda=False).dtype == ("bfloat16" if native_bfloat16() else "float32")
    assert resolve("float32", "none", cuda=True).label == "float32"
    assert resolve("bfloat16", "none", cuda=False).label == "bfloat16"
    assert resolve("auto", "int8", cuda=False) == Precision(
        "float32", "int8", cuda=False
    )  # torch's int8 computes in float32
    assert resolve("float32", "int8", cuda=True) == Precision("bfloat16", "int8", cuda=True)  # bitsandbytes over bf16
    assert (
        resolve("auto", "int8", cuda=False).label == "int8-dynamic"
        and resolve("auto", "int8", True).label == "int8-bnb"
    )
    with pytest.raises(ModelUnavailable, match="int8 on a CPU computes in float32"):
        resolve("bfloat16", "int8", cuda=False)
    with pytest.raises(ModelUnavailable, match="unknown dtype 'float16'"):
        resolve("float16", "none", cuda=False)
    with pytest.raises(ModelUnavailable, match="unknown quantization 'int4'"):
        resolve("auto", "int4", cuda=False)


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
    from review.inference import precision

    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        with pytest.raises(ModelUnavailable, match="int8 on a GPU needs the bitsandbytes package"):
            precision.bitsandbytes_int8()
    else:
        assert precision.bitsandbytes_int8().load_in_8bit


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


def test_int8_also_quantizes_the_embedding_and_keeps_under_0_4_of_the_float32_weights(tiny_model_dir: Path) -> None:
    """The issue's memory target, on the weights as loaded; the estimate from the config alone
    (what a memory budget is checked against) is within a tenth of each."""
    loaded = {}
    for dtype, quantize in [("float32", "none"), ("bfloat16", "none"), ("auto", "int8")]:
        provider = TransformersProvider(str(tiny_model_dir), dtype=dtype, quantize=quantize)
        loaded[provider.loaded_in] = weight_bytes(provider.model)
    embedding = provider.model.get_input_embeddings()
    assert type(embedding).__module__.startswith("torch.ao.nn.quantized")
    sizes = {p.label: n for p, n in loaded.items()}
    assert sizes["int8-dynamic"] <= 0.4 * sizes["float32"] and sizes["bfloat16"] == pytest.approx(
        sizes["float32"] / 2, rel=0.01
    )
    for precision, actual in loaded.items():
        assert abs(estimate_bytes(str(tiny_model_dir), precision) - actual) <= 0.1 * actual


def test_a_size_names_its_unit() -> None:
    assert parse_bytes("6GiB", "x") == 6 * 2**30 and parse_bytes(" 6 gb ", "x") == 6 * 10**9
    assert parse_bytes("512MiB", "x") == 512 * 2**20 and parse_bytes("1.5GB", "x") == 1_500_000_000
    assert parse_bytes("", "x") is None
    for bad in ("6", "6XB", "-1GB", "GiB", "0GB", "1e30GB", "0.5B", "1023KiB"):
        with pytest.raises(ConfigError, match="x must be a size with its unit"):
            parse_bytes(bad, "x")
    with pytest.raises(ConfigError, match="setting model_max_memory must be a size with its unit.*got '8'"):
        load_settings({"MODEL_MAX_MEMORY": "8"})
    assert load_settings({"MODEL_MAX_MEMORY": "8GiB"}).model_max_memory == "8GiB"
    assert format_bytes(3 * 2**30 // 2) == "1.5 GiB" and format_bytes(300 * 2**20) == "300.0 MiB"


GIB = 2**30
SIZES = {"float32": 8 * GIB, "bfloat16": 4 * GIB, "int8-dynamic": 3 * GIB, "int8-bnb": 3 * GIB}


def _size(precision: Precision) -> int:
    return SIZES[precision.label]


def test_a_budget_loads_what_was_asked_if_it_fits_else_int8_else_refuses() -> None:
    fp32 = resolve("float32", "none", cuda=False)
    assert choose(fp32, _size, max_memory=8 * GIB, available=1) == (fp32, None)
    chosen, note = choose(fp32, _size, max_memory=6 * GIB, available=None)
    assert chosen.label == "int8-dynamic" and note == (
        "float32 needs about 8.0 GiB and the memory budget (--max-memory) is 6.0 GiB: loading in int8-dynamic instead"
    )
    with pytest.raises(ModelUnavailable, match=r"needs about 3\.0 GiB in int8-dynamic .* budget .* is 2\.0 GiB$"):
        choose(fp32, _size, max_memory=2 * GIB, available=None)
    int8 = resolve("auto", "int8", cuda=False)  # int8 asked for: nothing to step down to
    with pytest.raises(ModelUnavailable, match="in int8-dynamic"):
        choose(int8, _size, max_memory=2 * GIB, available=None)
    bf16 = resolve("auto", "none", cuda=True)
    assert choose(bf16, _size, max_memory=3 * GIB, available=None)[0].label == "int8-bnb"


def test_without_a_budget_the_free_memory_steps_down_to_int8_but_never_refuses() -> None:
    fp32 = resolve("float32", "none", cuda=False)
    assert choose(fp32, _size, max_memory=None, available=None) == (fp32, None)  # cannot tell: as asked
    chosen, note = choose(fp32, _size, max_memory=None, available=6 * GIB)
    assert chosen.label == "int8-dynamic" and note and "the free memory is 6.0 GiB" in note
    chosen, note = choose(fp32, _size, max_memory=None, available=2 * GIB)  # nothing fits: the smallest
    assert chosen.label == "int8-dynamic" and note and note.endswith("loading in int8-dynamic anyway")
    assert (available_memory("cpu") or 0) > 0  # Linux's MemAvailable


def test_a_containers_memory_limit_counts_as_free_memory(tmp_path: Path) -> None:
    assert _cgroup_headroom(tmp_path) is None  # no cgroup files: no limit known
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "memory.current").write_text("1000\n")
    assert _cgroup_headroom(tmp_path) is None  # v2 without a limit
    (tmp_path / "memory.max").write_text(f"{8 * GIB}\n")
    assert _cgroup_headroom(tmp_path) == 8 * GIB - 1000
    (tmp_path / "memory.max").unlink()
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text(f"{4 * GIB}\n")
    (tmp_path / "memory" / "memory.usage_in_bytes").write_text(f"{5 * GIB}\n")
    assert _cgroup_headroom(tmp_path) == 0  # v1, over its limit already


def test_a_memory_budget_picks_int8_for_the_verdicts_and_refuses_what_cannot_fit(
    sqlite_desk, tiny_model_dir: Path
) -> None:
    notes: list[str] = []
    # float32 needs ≈ 94 MiB, int8 ≈ 63 MiB (its weights and the embedding table's float32 copy while it converts)
    settings = sqlite_desk.settings.with_overrides(model_max_memory="80MiB")
    provider = load_provider(settings, name="transformers", model=str(tiny_model_dir), dtype="float32",
                             notify=notes.append)  # fmt: skip
    assert provider.precision == "int8-dynamic"
    assert notes == [f"float32 needs about {notes[0].split('about ')[1].split(' and')[0]} and the memory budget "
                     "(--max-memory) is 80.0 MiB: loading in int8-dynamic instead"]  # fmt: skip
    post = ingest_records(sqlite_desk.sessions, [{"external_id": "a", "text": "a post"}], sqlite_desk.settings)
    Scorer(sqlite_desk.sessions, sqlite_desk.settings, provider, max_new_tokens=8).run()
    with sqlite_desk.sessions() as session:
        assert session.scalars(select(Verdict.model_precision).where(Verdict.post_id == post.post_ids[0])).one() == (
            "int8-dynamic"
        )
    with pytest.raises(
        ModelUnavailable, match=r"in int8-dynamic .* and the memory budget \(--max-memory\) is 10\.0 MiB"
    ):
        load_provider(settings, name="transformers", model=str(tiny_model_dir), max_memory="10MiB")


def _short_of_memory(monkeypatch: pytest.MonkeyPatch, fails: Callable[[dict], bool]) -> None:
    """Loading raises torch's own out-of-memory error (as a GPU does) when ``fails(kwargs)``: this
    machine has no GPU, and a CPU out of memory kills the process instead."""
    from transformers import AutoModelForImageTextToText

    real = AutoModelForImageTextToText.from_pretrained

    def load(*args: object, **kwargs: object) -> object:
        if fails(kwargs):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", load)


def test_out_of_memory_while_loading_loads_int8_once(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    notes: list[str] = []
    _short_of_memory(monkeypatch, lambda kwargs: kwargs["dtype"] is torch.float32)
    provider = TransformersProvider(str(tiny_model_dir), dtype="float32", notify=notes.append)
    assert provider.precision == "int8-dynamic" and notes == [
        "out of memory loading the model in float32: loading it in int8-dynamic instead (recorded on its verdicts)"
    ]
    _short_of_memory(monkeypatch, lambda kwargs: True)
    with pytest.raises(ModelUnavailable, match="out of memory loading the model in float32, and again in int8"):
        TransformersProvider(str(tiny_model_dir), dtype="float32", notify=notes.append)


def test_out_of_memory_in_the_first_batch_scores_that_batch_in_int8(
    monkeypatch: pytest.MonkeyPatch, sqlite_desk, tiny_model_dir: Path
) -> None:
    """The whole batch runs again under int8 keys: a post that was a float32 cache hit the first
    time is answered by the int8 model (and not counted as a hit), and the float32 model is gone
    before the int8 one loads."""
    from transformers import AutoModelForImageTextToText

    first = ingest_records(sqlite_desk.sessions, [{"external_id": "a", "text": "the same post"}], sqlite_desk.settings)
    full = TransformersProvider(str(tiny_model_dir), dtype="float32", max_pixels=64 * 64)
    Scorer(sqlite_desk.sessions, sqlite_desk.settings, full, max_new_tokens=8).run()
    del full
    notes: list[str] = []
    provider = TransformersProvider(str(tiny_model_dir), dtype="float32", notify=notes.append)

    def short_of_memory(*_: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    provider.model.register_forward_pre_hook(short_of_memory)  # the float32 model's every call
    old = weakref.ref(provider.model.get_decoder().layers[0].mlp.down_proj.weight)  # the weights, not the wrapper
    real, gone_at_reload = AutoModelForImageTextToText.from_pretrained, []

    def load(*args: object, **kwargs: object) -> object:
        gc.collect()
        gone_at_reload.append(old() is None)
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", load)
    records = [{"external_id": "b", "text": "the same post"}, {"external_id": "c", "text": "post c"},
               {"external_id": "d", "text": "post d"}]  # fmt: skip
    ingest_records(sqlite_desk.sessions, records, sqlite_desk.settings)
    stats = Scorer(sqlite_desk.sessions, sqlite_desk.settings, provider, batch_size=3, max_new_tokens=8).run()
    assert gone_at_reload == [True]
    with sqlite_desk.sessions() as session:
        rows = session.execute(
            select(Verdict.model_precision, Verdict.error, Verdict.raw_output, Verdict.cache_hit)
            .where(Verdict.post_id != first.post_ids[0])
        ).all()  # fmt: skip
    assert (stats.scored, stats.model_calls, stats.cache_hits) == (3, 3, 0)
    assert len(rows) == 3 and all(
        precision == "int8-dynamic" and "memory" not in (error or "") and raw and not hit
        for precision, error, raw, hit in rows
    )
    assert notes == ["out of memory in the first batch in float32: loading it in int8-dynamic instead "
                     "(recorded on its verdicts)"]  # fmt: skip


def test_int8_linear_reads_the_weight_in_slices_and_equals_torchs_own_conversion() -> None:
    from torch.ao.nn.quantized.dynamic import Linear as Int8Linear
    from torch.ao.quantization import default_dynamic_qconfig

    torch.manual_seed(0)
    layer = torch.nn.Linear(48, 300).to(torch.bfloat16)  # a checkpoint's dtype; 300 rows in slices of 64
    whole = torch.nn.Linear(48, 300)
    whole.load_state_dict({k: v.float() for k, v in layer.state_dict().items()})
    whole.qconfig = default_dynamic_qconfig
    reference, sliced = Int8Linear.from_float(whole), int8_linear(layer, rows=64)
    assert torch.equal(sliced.weight().int_repr(), reference.weight().int_repr())
    assert sliced.weight().q_scale() == reference.weight().q_scale()
    x = torch.randn(5, 48)
    assert torch.equal(sliced(x), reference(x))


@pytest.fixture(scope="module")
def tied_bfloat16_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny model as real Qwen3-VL-2B checkpoints are: one embedding table for input and
    output, saved in bfloat16."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    target = tmp_path_factory.mktemp("tied-bf16")
    model = AutoModelForImageTextToText.from_pretrained(str(tiny_model_dir), dtype=torch.bfloat16)
    model.config.tie_word_embeddings = model.config.get_text_config().tie_word_embeddings = True
    model.tie_weights()
    assert model.lm_head.weight is model.get_input_embeddings().weight
    model.save_pretrained(target)
    AutoProcessor.from_pretrained(str(tiny_model_dir)).save_pretrained(target)
    return target


def test_int8_from_a_tied_bfloat16_checkpoint_with_an_adapter(
    sqlite_desk, tmp_path: Path, tied_bfloat16_dir: Path
) -> None:
    """int8 converts from the checkpoint's own dtype (bfloat16 here), gives the tied table an int8
    copy for each use, and an adapter still answers on it; the sizes count a tied table once."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(str(tied_bfloat16_dir))
    assert base.dtype == torch.bfloat16 and base.lm_head.weight is base.get_input_embeddings().weight
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False)).save_pretrained(
        tmp_path / "adapter"
    )
    full = TransformersProvider(str(tied_bfloat16_dir), dtype="float32")
    assert weight_bytes(full.model) == pytest.approx(estimate_bytes(str(tied_bfloat16_dir), full.loaded_in), rel=0.1)
    provider = TransformersProvider(str(tied_bfloat16_dir), quantize="int8", adapter=str(tmp_path / "adapter"))
    model = provider.model.get_base_model()
    assert _dynamic_int8(model.lm_head) and "quantized" in type(model.get_input_embeddings()).__module__
    assert {p.dtype for p in provider.model.parameters()} == {torch.float32}  # the rest converted from bfloat16
    assert weight_bytes(provider.model) == pytest.approx(estimate_bytes(str(tied_bfloat16_dir), provider.loaded_in),
                                                         rel=0.1)  # fmt: skip
    post = ingest_records(sqlite_desk.sessions, [{"external_id": "a", "text": "a post"}], sqlite_desk.settings)
    Scorer(sqlite_desk.sessions, sqlite_desk.settings, provider, max_new_tokens=8).run()
    with sqlite_desk.sessions() as session:
        verdict = session.scalars(select(Verdict).where(Verdict.post_id == post.post_ids[0])).one()
    assert verdict.raw_output and verdict.model_precision == "int8-dynamic" and verdict.adapter


def test_a_folder_that_is_not_an_image_text_model_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "qwen3", "vocab_size": 64, "hidden_size": 16}')
    with pytest.raises(ModelUnavailable, match="^cannot load the model .*: Unrecognized configuration class"):
        TransformersProvider(str(tmp_path))

"""The transformers provider's precision: the dtype and quantization a model loads in, what its
weights take in memory, and the step down to int8 when memory is short.

- ``float32`` / ``bfloat16``: every weight in that dtype (``auto``: bfloat16 on a GPU and on a CPU
  that computes in bfloat16 natively, else float32).
- ``int8`` on a CPU (``int8-dynamic``): the language model's linear layers and its output head
  become torch's dynamic int8 layers and its token embedding an int8 table, one layer at a time
  from the checkpoint's own dtype, so the whole model never sits in memory in float32; the
  vision tower runs once per image and stays in float32, as do a LoRA adapter's own small layers.
- ``int8`` on a GPU (``int8-bnb``): bitsandbytes' 8-bit linear layers, loaded as such.

The weights' size of each precision is estimated from the model's config alone (a copy of the
model on the ``meta`` device: no weights read), so a memory budget (``--max-memory``,
``MODEL_MAX_MEMORY``) can pick the precision that fits before anything loads, and so can the
free memory of the machine: on a CPU running out of memory kills the process rather than raising,
so there the step down to int8 has to be taken before loading. Where the out-of-memory error is
raised (a GPU; a CPU under an address-space limit), loading or the first batch retries once in
int8. Every verdict records the precision it was made in.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from review.config import DTYPES, QUANTIZATIONS, format_bytes
from review.inference.base import ModelUnavailable
from review.text import first_line

# What a precision needs: its weights plus this share (activations, a small batch's cache); the
# key/value cache of a large batch comes on top.
RUNTIME_MARGIN = 1.25


@dataclass(frozen=True)
class Precision:
    """What a model loads in: ``dtype`` is that of the weights left unquantized (and, on a CPU,
    what int8 computes in)."""

    dtype: str  # "float32" | "bfloat16"
    quantize: str  # "none" | "int8"
    cuda: bool

    @property
    def label(self) -> str:
        """The name recorded on verdicts: float32, bfloat16, int8-dynamic (CPU) or int8-bnb (GPU)."""
        if self.quantize == "int8":
            return "int8-bnb" if self.cuda else "int8-dynamic"
        return self.dtype

    def int8(self) -> Precision:
        """The same model in int8 (a CPU's int8 computes in float32)."""
        return replace(self, quantize="int8", dtype="bfloat16" if self.cuda else "float32")


def native_bfloat16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX): there bfloat16 halves
    the weights' memory without the slow emulated arithmetic it costs elsewhere."""
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve(dtype: str, quantize: str, cuda: bool) -> Precision:
    """The precision ``--dtype`` and ``--quantize`` name on this device (``auto`` resolved)."""
    if dtype not in DTYPES:
        raise ModelUnavailable(f"unknown dtype {dtype!r}: use {', '.join(DTYPES)}")
    if quantize not in QUANTIZATIONS:
        raise ModelUnavailable(f"unknown quantization {quantize!r}: use {', '.join(QUANTIZATIONS)}")
    if quantize == "int8" and not cuda and dtype == "bfloat16":
        raise ModelUnavailable("int8 on a CPU computes in float32: with int8, use --dtype auto or float32")
    if dtype == "auto":
        dtype = "bfloat16" if cuda or native_bfloat16() else "float32"
    asked = Precision(dtype, "none", cuda)
    return asked.int8() if quantize == "int8" else asked


def from_pretrained_options(precision: Precision) -> dict[str, Any]:
    """The ``from_pretrained`` arguments of a precision. A CPU's int8 loads the checkpoint's own
    dtype and converts one layer at a time (:func:`quantize_int8`)."""
    import torch

    if precision.label == "int8-dynamic":
        return {"dtype": "auto"}
    options: dict[str, Any] = {"dtype": getattr(torch, precision.dtype)}
    if precision.label == "int8-bnb":
        options["quantization_config"] = bitsandbytes_int8()
    return options


def bitsandbytes_int8() -> Any:
    """The quantization config of 8-bit loading on a GPU (bitsandbytes)."""
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise ModelUnavailable("int8 on a GPU needs the bitsandbytes package (pip install bitsandbytes)") from None
    return BitsAndBytesConfig(load_in_8bit=True)


def int8_targets(model: Any) -> Iterator[tuple[Any, str]]:
    """(parent, attribute) of every module a CPU's int8 replaces: the language model's
    linear layers (not a LoRA adapter's own A/B layers, which PEFT reads as float tensors), its
    output head (the head alone is 40 % of a small model's weights) and its token embedding.
    Every generated token reads all of them; the vision tower runs once per image."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # under a PEFT wrapper
    language = base.get_decoder()
    for path, parent in language.named_modules():
        if "lora_" in path:
            continue
        for attribute, child in parent.named_children():
            if isinstance(child, torch.nn.Linear) and not attribute.startswith("lora_"):
                yield parent, attribute
    yield base, "lm_head"
    yield language, "embed_tokens"


def quantize_int8(model: Any) -> None:
    """Replace :func:`int8_targets` by torch's int8 modules in place, one at a time: dynamic int8
    linear layers (int8 weights, activations quantized per call) and an int8 embedding table with
    a scale per row. The rest of the model ends in float32. Each float module is dropped once
    replaced, and a linear layer is read in slices (:func:`int8_linear`), so no layer is whole in
    float32 beside its int8 copy (the output head was the load's peak)."""
    import torch
    from torch.ao.nn.quantized import Embedding as Int8Embedding
    from torch.ao.quantization import float_qparams_weight_only_qconfig

    with warnings.catch_warnings():
        # torch.ao.quantization is in maintenance and says so for every layer it quantizes
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*", category=UserWarning)
        for parent, attribute in list(int8_targets(model)):
            module = getattr(parent, attribute)
            if isinstance(module, torch.nn.Embedding):
                module.float()
                # from_float reads the module's qconfig attribute (set here, as torch's own convert does)
                object.__setattr__(module, "qconfig", float_qparams_weight_only_qconfig)
                setattr(parent, attribute, Int8Embedding.from_float(module))
            else:
                setattr(parent, attribute, int8_linear(module))
            del module
    model.float()  # the vision tower, norms and adapter layers (int8 modules hold no float parameters)
    for tensor in [*model.parameters(), *model.buffers()]:
        # copies of their own: a tensor still mapping the checkpoint keeps the whole file's pages
        # resident, the replaced layers' included
        tensor.data = tensor.data.clone()
    release_memory()


def int8_linear(module: Any, rows: int = 4096) -> Any:
    """torch's dynamic int8 linear layer for ``module`` (any float dtype), the same as its
    ``from_float`` (one symmetric scale for the whole weight, from its minimum and maximum) but
    reading the weight ``rows`` rows at a time: ``from_float`` holds the whole weight in float32
    twice over while it quantizes, which for a large vocabulary's output head was the load's peak."""
    import torch
    from torch.ao.nn.quantized.dynamic import Linear as Int8Linear
    from torch.ao.quantization import default_dynamic_qconfig

    weight = module.weight.detach()
    observer = default_dynamic_qconfig.weight()  # min/max over every slice, as over the whole
    for part in weight.split(rows):
        observer(part.float())
    scale, zero = (float(q) for q in observer.calculate_qparams())
    ints = torch.empty(weight.shape, dtype=torch.int8)
    for start in range(0, weight.shape[0], rows):
        part = weight[start : start + rows].float()
        ints[start : start + rows] = torch.quantize_per_tensor(part, scale, int(zero), torch.qint8).int_repr()
    layer = Int8Linear(weight.shape[1], weight.shape[0], bias_=module.bias is not None, dtype=torch.qint8)
    bias = None if module.bias is None else module.bias.detach().float()
    layer.set_weight_bias(torch._make_per_tensor_quantized_tensor(ints, scale, int(zero)), bias)
    return layer


def weight_bytes(model: Any) -> int:
    """The bytes the model's weights take as loaded: parameters and buffers (a tensor shared by two
    modules, as tied input and output embeddings, once), and the int8 tensors (with their scales)
    of quantized modules."""
    total = 0
    seen: set[int] = set()
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if callable(weight) and not list(module.parameters(recurse=False)):  # torch's quantized modules
            q = weight()
            total += q.nelement() * q.element_size()
            if q.qscheme() in _per_channel():  # a scale and a zero point per row
                total += sum(t.nelement() * t.element_size() for t in (q.q_per_channel_scales(),
                                                                        q.q_per_channel_zero_points()))  # fmt: skip
            bias = module.bias() if callable(getattr(module, "bias", None)) else None
            total += 0 if bias is None else bias.nelement() * bias.element_size()
        for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
            if id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.nelement() * tensor.element_size()
    return total


def _per_channel() -> tuple[Any, ...]:
    import torch

    return (torch.per_channel_affine, torch.per_channel_affine_float_qparams, torch.per_channel_symmetric)


def estimate_bytes(model_id: str, precision: Precision, revision: str | None = None) -> int:
    """About how many bytes the weights of ``model_id`` take in ``precision``, from its config."""
    return _weights(_meta_model(model_id, revision), precision)


def needed_bytes(model_id: str, precision: Precision, revision: str | None = None) -> int:
    """What loading and running ``model_id`` in ``precision`` is taken to need: its weights plus
    :data:`RUNTIME_MARGIN`, and for a CPU's int8 the float32 copy of the largest module while it
    is quantized (a large vocabulary's embedding table). The key/value cache of a batch comes on
    top (it grows with the batch and the prompt)."""
    model = _meta_model(model_id, revision)
    needed = _weights(model, precision) * RUNTIME_MARGIN
    if precision.label == "int8-dynamic":
        needed += 4 * max(getattr(parent, attribute).weight.nelement() for parent, attribute in int8_targets(model))
    return int(needed)


@functools.lru_cache(maxsize=4)
def _meta_model(model_id: str, revision: str | None) -> Any:
    """The model built from its config on the ``meta`` device: its shapes, no weights read and
    nothing allocated."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    pinned = {"revision": revision} if revision else {}
    try:
        config = AutoConfig.from_pretrained(model_id, **pinned)
        with torch.device("meta"):
            return AutoModelForImageTextToText.from_config(config)
    except (OSError, ValueError, KeyError, ImportError) as exc:  # not a model of this kind, a config it cannot read
        raise cannot_load(model_id, exc) from None


def cannot_load(model_id: str, exc: BaseException) -> ModelUnavailable:
    """The one-line error of a model that cannot be loaded (or its config read) for ``exc``."""
    return ModelUnavailable(f"cannot load the model {model_id!r}: {first_line(exc)}")


def _weights(model: Any, precision: Precision) -> int:
    import torch

    params = {id(p): p.nelement() for p in model.parameters()}
    every = sum(params.values())
    if precision.label == "int8-dynamic":
        targets = [getattr(parent, attribute) for parent, attribute in int8_targets(model)]
        quantized = {id(p) for m in targets for p in m.parameters()}
        rest = sum(n for key, n in params.items() if key not in quantized)
        rows = model.get_input_embeddings().weight.shape[0]  # the int8 table's scale and zero point per row
        return sum(m.weight.nelement() for m in targets) + 4 * rest + 8 * rows
    if precision.label == "int8-bnb":  # every linear layer but the output head in 8 bits, the rest in bfloat16
        head = model.get_output_embeddings()
        linear = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head}
        return sum(params[key] for key in linear) + 2 * (every - sum(params[key] for key in linear))
    return every * (4 if precision.dtype == "float32" else 2)


def choose(
    requested: Precision,
    needed: Callable[[Precision], int],
    *,
    max_memory: int | None,
    available: int | None,
) -> tuple[Precision, str | None]:
    """The precision to load, and a one-line note when it is not the one asked for.

    With a budget (``max_memory``, bytes), the requested precision if what it needs (see
    :func:`needed_bytes`) fits, else int8 if that fits; a clear refusal when nothing does.
    Without one, the same against the memory free now (``available``), except that when nothing
    fits the smallest is loaded anyway (the free memory is a snapshot, and the system may swap);
    the note says so."""
    candidates = [requested] if requested.quantize == "int8" else [requested, requested.int8()]
    limit = max_memory if max_memory is not None else available
    if limit is None:
        return requested, None
    need = {c: needed(c) for c in candidates}
    where = "the memory budget (--max-memory)" if max_memory is not None else "the free memory"
    for candidate in candidates:
        if need[candidate] <= limit:
            if candidate == requested:
                return candidate, None
            return candidate, (f"{requested.label} needs about {format_bytes(need[requested])} and {where} is "
                               f"{format_bytes(limit)}: loading in {candidate.label} instead")  # fmt: skip
    smallest = candidates[-1]
    message = (f"the model needs about {format_bytes(need[smallest])} in {smallest.label} (weights and working "
               f"memory) and {where} is {format_bytes(limit)}")  # fmt: skip
    if max_memory is not None:
        raise ModelUnavailable(message)
    return smallest, f"{message}: loading in {smallest.label} anyway"


def available_memory(device: str) -> int | None:
    """Bytes free for a model now: the GPU's free memory; on a CPU, Linux's MemAvailable, or less
    where the process's cgroup (a container) has a lower limit; None where that cannot be read."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    free = [_meminfo_available(), _cgroup_headroom()]
    known = [n for n in free if n is not None]
    return min(known) if known else None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _cgroup_headroom(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """A container's memory limit less its use: cgroup v2 (memory.max) or v1 (memory.limit_in_bytes)."""
    for limit, usage in (("memory.max", "memory.current"),
                         ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):  # fmt: skip
        try:
            cap = (root / limit).read_text().strip()
            used = int((root / usage).read_text().strip())
        except (OSError, ValueError):
            continue
        if cap.isdigit() and int(cap) < 2**60:  # "max", or v1's huge number: no limit
            return max(0, int(cap) - used)
        return None
    return None


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is torch (or Python) running out of memory, on a GPU or a CPU."""
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())


def release_memory() -> None:
    """Give freed model memory back: Python's cycles, the GPU's cache and glibc's free lists
    (without which a CPU process keeps the pages of weights it dropped)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)

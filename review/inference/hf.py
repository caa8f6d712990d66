"""The transformers provider: a Qwen-VL model (Qwen3-VL, Qwen2.5-VL) loaded in this process.

Loads a hub id or a local folder with ``AutoProcessor`` + ``AutoModelForImageTextToText`` (as
users load the real Qwen3-VL-2B-Instruct), on CUDA when there is a GPU, in the precision
:mod:`review.inference.precision` chooses (float32, bfloat16 or int8; stepping down to int8 when
memory is short), optionally with a PEFT LoRA adapter. Batches are padded on the left and
generated greedily; with a JSON schema the decoding is constrained to it (see
:mod:`review.inference.constrained`), so every answer parses unless it runs out of tokens.

The moderation prompt's system message (policy and schema, about 1,600 of a post's 1,800 prompt
tokens) is the same for every post: it runs through the decoder once per prompt version and
each batch continues its key/value cache (in a static cache, filled in place), so a batch only
prefills its user turns (images and post text).

Follow-up questions (:meth:`TransformersProvider.chat`) keep the key/value cache of the
conversation's prefix — the system message and the images, through the last ``<|vision_end|>``
— in a small LRU: the vision tower and the prefill of the image tokens run once per
conversation, and each question only prefills its own turns. One model serves one call at a
time (a lock), since M-RoPE keeps per-call state on the model.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from review.config import parse_bytes
from review.inference.base import Generation, ModelRequest, ModelUnavailable, PrecisionChanged
from review.inference.precision import (
    Precision,
    available_memory,
    cannot_load,
    choose,
    from_pretrained_options,
    is_out_of_memory,
    needed_bytes,
    quantize_int8,
    release_memory,
    resolve,
)

DEFAULT_MAX_PIXELS = 1024 * 28 * 28  # ≈ 0.8 MP per image: enough for text in screenshots
MIN_PIXELS = 32 * 32
VISION_END = "<|vision_end|>"  # Qwen-VL's token after each image: where a conversation's prefix ends
SYSTEM_START, TURN_END = "<|im_start|>system", "<|im_end|>"  # the system message's bounds


def _revision(model_id: str, config: Any) -> str | None:
    """The hub commit when loaded from the hub, else a hash of the local folder's config and
    weight file sizes (enough to tell two local builds apart)."""
    commit = getattr(config, "_commit_hash", None)
    if commit:
        return str(commit)[:40]
    folder = Path(model_id)
    if folder.is_dir():
        h = hashlib.sha256()
        for f in sorted(folder.glob("*")):
            if f.is_file() and (f.suffix in (".json", ".safetensors")):
                h.update(f.name.encode())
                h.update(str(f.stat().st_size).encode() if f.suffix == ".safetensors" else f.read_bytes())
        return "local-" + h.hexdigest()[:12]
    return None


def check_loadable(model_id: str, timeout_s: float = 3.0) -> None:
    """Fail fast, in one clear line, when a model cannot possibly load: a missing local folder,
    or a hub id that is neither cached nor downloadable (the hub client would otherwise retry
    each file for minutes on a machine without network)."""
    if model_id.startswith(("/", "./", "../", "~")) or Path(model_id).exists():
        folder = Path(model_id).expanduser()
        if not (folder / "config.json").is_file():
            raise ModelUnavailable(f"no model at {folder} (a folder with config.json and weights is expected)")
        return
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(model_id, "config.json"), str):
        return
    if os.environ.get("HF_HUB_OFFLINE", "").strip() not in ("", "0"):
        raise ModelUnavailable(f"the model {model_id!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set")
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
    except OSError as exc:
        raise ModelUnavailable(
            f"the model {model_id!r} is not downloaded and {host} cannot be reached ({exc.strerror or exc}); "
            "download it elsewhere and pass its folder"
        ) from None


@dataclass
class _Prefix:
    """A prompt prefix run once (a system message; or a conversation's system message and
    images): its token ids, its key/value cache and its M-RoPE offset."""

    ids: Any  # (1, L) tensor
    cache: Any  # DynamicCache holding exactly L positions between calls
    rope_deltas: Any


def _cut_back(cache: Any, length: int) -> None:
    """Keep the first ``length`` positions of every layer of a dynamic cache, as copies (a view
    would keep the memory of the whole conversation alive)."""
    for layer in cache.layers:
        if getattr(layer, "keys", None) is not None:
            layer.keys = layer.keys[..., :length, :].clone()
            layer.values = layer.values[..., :length, :].clone()


def _remember(entries: OrderedDict[str, _Prefix], key: str, size: int, make: Callable[[], _Prefix]) -> _Prefix:
    """The entry under ``key``, made by ``make()`` when missing; least recently used out first."""
    entry = entries.get(key)
    if entry is not None:
        entries.move_to_end(key)
        return entry
    entries[key] = entry = make()
    while len(entries) > max(1, size):
        entries.popitem(last=False)
    return entry


def _failure(exc: BaseException, started: float) -> Generation:
    return Generation(
        text=None, error=f"{type(exc).__name__}: {exc}", latency_ms=(time.perf_counter() - started) * 1000
    )


def _images_digest(images: list[Any]) -> str:
    h = hashlib.sha256()
    for image in images:
        h.update(f"{image.mode}{image.size}".encode())
        h.update(image.tobytes())
    return h.hexdigest()


class TransformersProvider:
    name = "transformers"
    prompt_version: str | None = None  # verdicts record the rendered prompt's version

    def __init__(
        self,
        model_id: str,
        *,
        adapter: str | None = None,
        revision: str | None = None,
        device: str | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        constrained: bool = True,
        prefix_cache_size: int = 4,
        share_system_prefix: bool = True,
        dtype: str = "auto",
        quantize: str = "none",
        max_memory: str | None = None,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        import torch

        self.model_id = model_id
        self.adapter = adapter
        self.revision = revision
        self.max_pixels = max_pixels
        self.constrained = constrained
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.notify = notify or logging.getLogger(__name__).warning
        self._lock = threading.Lock()
        self._prefixes: OrderedDict[str, _Prefix] = OrderedDict()  # conversations (chat)
        self._system_prefixes: OrderedDict[str, _Prefix] = OrderedDict()  # system messages (generate)
        self.prefix_cache_size = prefix_cache_size
        self.share_system_prefix = share_system_prefix
        requested = resolve(dtype, quantize, self.device.startswith("cuda"))
        check_loadable(model_id)
        budget = parse_bytes(max_memory or "", "--max-memory")
        chosen, note = choose(requested, lambda p: needed_bytes(model_id, p, revision), max_memory=budget,
                              available=None if budget is not None else available_memory(self.device))  # fmt: skip
        if note:
            self.notify(note)
        self._answered = False  # whether a batch has run: only the first may still step down to int8
        short = None
        try:
            self._load(chosen)
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            short = f"out of memory loading the model in {chosen.label}"
        if short and chosen.quantize == "int8":
            raise ModelUnavailable(short)
        if short:  # outside the except block: its traceback would keep the half-loaded model alive
            self._step_down(chosen, short)
        tok = self.processor.tokenizer
        self.stop_ids = [i for i in {tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id} if i is not None]
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def _load(self, precision: Precision) -> None:
        """Load the processor and the model (with the adapter) in ``precision``."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        pinned: dict[str, Any] = {"revision": self.revision} if self.revision else {}
        try:
            self.processor = AutoProcessor.from_pretrained(self.model_id, **pinned)
            model = AutoModelForImageTextToText.from_pretrained(
                self.model_id, **pinned, **from_pretrained_options(precision)
            )
        except (OSError, ValueError) as exc:
            raise cannot_load(self.model_id, exc) from None
        if self.adapter:
            try:
                from peft import PeftModel
            except ImportError:
                raise ModelUnavailable("a LoRA adapter needs the peft package (pip install peft)") from None
            try:
                # the PEFT wrapper forwards to the model it wraps (typed as another class)
                model = PeftModel.from_pretrained(model, self.adapter)  # type: ignore[assignment]
            except (OSError, ValueError) as exc:
                raise ModelUnavailable(f"cannot load the adapter {self.adapter!r}: {exc}") from None
        if precision.label == "int8-dynamic":
            quantize_int8(model)  # after the adapter, whose own layers stay in float
        if precision.label == "int8-bnb":  # bitsandbytes placed the weights already
            self.model = model.eval()
        else:
            self.model = model.to(self.device).eval()  # type: ignore[arg-type]  # @wraps(nn.Module.to) hides self
        self.loaded_in = precision
        self.precision: str | None = precision.label
        self.processor.tokenizer.padding_side = "left"
        self.model_revision = _revision(self.model_id, self.model.config) or self.revision
        # The module holding M-RoPE's per-call offset (Qwen3VLModel / Qwen2_5_VLModel), if any.
        self._rope_holder = next((m for m in self.model.modules() if hasattr(m, "rope_deltas")), None)

    def _step_down(self, precision: Precision, why: str) -> None:
        """Load the model again in int8 after running out of memory in ``precision`` (once). The
        full-precision model is dropped first (every reference: the model, the M-RoPE holder
        inside it, the caches), so that the int8 copy has its memory."""
        self.model = None
        self._rope_holder = None
        self._prefixes.clear()
        self._system_prefixes.clear()
        release_memory()
        self.notify(f"{why}: loading it in {precision.int8().label} instead (recorded on its verdicts)")
        short = False
        try:
            self._load(precision.int8())
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            short = True
        if short:
            raise ModelUnavailable(f"{why}, and again in {precision.int8().label}")

    def _render(self, request: ModelRequest) -> str:
        """The request's chat as the model reads it, up to the assistant's turn."""
        return self.processor.apply_chat_template(request.prompt.messages, add_generation_prompt=True, tokenize=False)

    def _inputs(self, texts: list[str], images: list[Any]) -> Any:
        """Processor output (token ids, mask, pixels) for rendered ``texts`` and their images."""
        kwargs: dict[str, Any] = {"text": texts, "padding": True, "return_tensors": "pt"}
        if images:
            kwargs["images"] = images
            kwargs["images_kwargs"] = {"size": {"shortest_edge": MIN_PIXELS, "longest_edge": self.max_pixels}}
        return self.processor(**kwargs).to(self.device)

    # ----------------------------------------------------------------------------------------
    # Batches (verdicts)

    def _system_prefix(self, texts: list[str]) -> str | None:
        """The system message every text of the batch starts with, if they share one."""
        cut = texts[0].find(TURN_END)
        if cut < 0 or not texts[0].startswith(SYSTEM_START):
            return None
        prefix = texts[0][: cut + len(TURN_END)]
        return prefix if all(t.startswith(prefix) for t in texts) else None

    def _system_cache(self, prefix_text: str) -> _Prefix:
        """The system message run through the decoder once; kept for the next batches (one entry
        per prompt version in use)."""
        import torch
        from transformers import DynamicCache

        def run() -> _Prefix:
            ids = self.processor.tokenizer(prefix_text, add_special_tokens=False, return_tensors="pt")["input_ids"]
            ids = ids.to(self.device)
            cache = DynamicCache(config=self.model.config)
            if self._rope_holder is not None:
                self._rope_holder.rope_deltas = None  # text only: plain positions 0…L-1
            with torch.inference_mode():
                self.model(input_ids=ids, attention_mask=torch.ones_like(ids), past_key_values=cache,
                           use_cache=True, logits_to_keep=1)  # fmt: skip
            return _Prefix(ids=ids, cache=cache, rope_deltas=None)

        return _remember(self._system_prefixes, prefix_text, 2, run)

    def _batch_inputs(self, requests: list[ModelRequest]) -> tuple[Any, Any]:
        """Model inputs for a batch, and the key/value cache they continue (or None).

        The moderation prompt's system message (policy and schema: most of the prompt's tokens) is
        the same for every post, so it is run once and its cache is shared: each row is
        ``[system][padding][user turn]``, and only the user turns (images, post text) are
        prefilled per batch. The padding sits in the middle, masked; M-RoPE positions are
        computed from the attention mask, so they equal those of the unpadded prompt."""
        import torch
        from transformers import StaticCache

        texts = [self._render(r) for r in requests]
        images = [im for r in requests for im in r.images]
        prefix = self._system_prefix(texts) if self.share_system_prefix and self._rope_holder is not None else None
        if prefix is None:
            return self._inputs(texts, images), None
        entry = self._system_cache(prefix)
        inputs = self._inputs([t[len(prefix) :] for t in texts], images)  # the special token ends the prefix,
        rows, length = len(requests), entry.ids.shape[1]  # so the rest tokenises as it does in the whole
        inputs["input_ids"] = torch.cat([entry.ids.expand(rows, -1), inputs["input_ids"]], dim=1)
        for name in ("attention_mask", "mm_token_type_ids", "token_type_ids"):
            if name in inputs:
                fill = 1 if name == "attention_mask" else 0
                head = torch.full((rows, length), fill, dtype=inputs[name].dtype, device=inputs[name].device)
                inputs[name] = torch.cat([head, inputs[name]], dim=1)
        # A static cache (filled in place) instead of a copy of the dynamic one: a dynamic cache
        # concatenates, i.e. copies every row's keys and values, at every generated token.
        longest = max(r.max_new_tokens for r in requests)
        past = StaticCache(config=self.model.config, max_cache_len=inputs["input_ids"].shape[1] + longest + 1)
        for layer, cached in zip(past.layers, entry.cache.layers, strict=True):
            # the Qwen-VL models' caches hold attention layers only (no linear-attention layers)
            layer.update(cached.keys.expand(rows, -1, -1, -1), cached.values.expand(rows, -1, -1, -1))  # type: ignore[union-attr]
        return inputs, past

    def _logits_processors(self, requests: list[ModelRequest]) -> list[Any]:
        schemas = [r.json_schema for r in requests]
        if not self.constrained or all(s is None for s in schemas):
            return []
        from review.inference.constrained import json_schema_processor

        vocab = self.model.config.get_text_config().vocab_size  # (an int8 head has no weight tensor)
        budget = max(r.max_new_tokens for r in requests)
        return [json_schema_processor(self.processor.tokenizer, vocab, self.stop_ids, schemas, budget)]

    def _decode(
        self, new_tokens: list[int], request: ModelRequest, prompt_tokens: int, latency_ms: float
    ) -> Generation:
        stop = next((i for i, t in enumerate(new_tokens) if t in self.stop_ids), None)
        tokens = (new_tokens if stop is None else new_tokens[:stop])[: request.max_new_tokens]
        return Generation(
            text=self.processor.tokenizer.decode(tokens, skip_special_tokens=True),
            latency_ms=latency_ms,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(tokens),
            finish_reason="stop" if stop is not None and stop <= request.max_new_tokens else "length",
        )

    def _generate_kwargs(self, max_new_tokens: int) -> dict[str, Any]:
        return {
            "max_new_tokens": max_new_tokens,
            "do_sample": False,
            "eos_token_id": self.stop_ids,
            "pad_token_id": self.pad_id,
        }

    def generate(self, requests: list[ModelRequest]) -> list[Generation]:
        import torch

        if not requests:
            return []
        with self._lock:
            if self.model is None:  # a step down to int8 that ran out of memory too
                raise ModelUnavailable("the model ran out of memory in float and in int8: load it again")
            started = time.perf_counter()
            logits_processors = self._logits_processors(requests)
            inputs: Any = None
            past: Any = None
            short = None
            try:
                inputs, past = self._batch_inputs(requests)
                if self._rope_holder is not None:
                    self._rope_holder.rope_deltas = None  # M-RoPE offsets are computed afresh
                with torch.inference_mode():
                    output = self.model.generate(
                        **inputs,
                        past_key_values=past,
                        **self._generate_kwargs(max(r.max_new_tokens for r in requests)),
                        logits_processor=logits_processors,
                        # Each batch's static cache has its own size: compiling (transformers does
                        # so for static caches on CUDA) would recompile for every batch.
                        disable_compile=True,
                    )
            # What the model itself can raise (out of memory, an input it cannot take) is reported
            # per request as that post's failure; a bug in our code is not caught here. Out of
            # memory in the first batch loads the model in int8 and has the caller ask again.
            except (RuntimeError, ValueError, IndexError, torch.OutOfMemoryError) as exc:
                if self._answered or not is_out_of_memory(exc) or self.loaded_in.quantize == "int8":
                    return [_failure(exc, started) for _ in requests]
                short = f"out of memory in the first batch in {self.loaded_in.label}"
            if short:  # outside the except block, whose traceback holds the model's frames
                del inputs, past
                self._step_down(self.loaded_in, short)
                raise PrecisionChanged(f"{short}: the model was loaded again in {self.precision}")
            self._answered = True
        elapsed_ms = (time.perf_counter() - started) * 1000
        prompt_len = inputs["input_ids"].shape[1]
        return [
            self._decode(
                output[row, prompt_len:].tolist(),
                request,
                int(inputs["attention_mask"][row].sum()),
                elapsed_ms / len(requests),  # the batch's time, shared
            )
            for row, request in enumerate(requests)
        ]

    # ----------------------------------------------------------------------------------------
    # Conversations (follow-up questions)

    def _prefix(self, prefix_text: str, request: ModelRequest) -> _Prefix:
        """The cached prefix for these images and system message, run now if not cached."""
        import torch
        from transformers import DynamicCache

        def run() -> _Prefix:
            inputs = self._inputs([prefix_text], request.images)
            cache = DynamicCache(config=self.model.config)
            with torch.inference_mode():
                self.model(**inputs, past_key_values=cache, use_cache=True, logits_to_keep=1)
            rope = getattr(self._rope_holder, "rope_deltas", None)
            return _Prefix(ids=inputs["input_ids"], cache=cache, rope_deltas=None if rope is None else rope.clone())

        key = hashlib.sha256(f"{prefix_text}\0{self.max_pixels}\0{_images_digest(request.images)}".encode()).hexdigest()
        return _remember(self._prefixes, key, self.prefix_cache_size, run)

    def chat(self, request: ModelRequest) -> Generation:
        """Free-text answer to a conversation (no schema). The prefix through the last image is
        cached across calls, so a follow-up question does not run the vision tower again."""
        import torch

        text = self._render(request)
        cut = text.rfind(VISION_END)
        if not request.images or cut < 0 or self._rope_holder is None:
            try:
                return self.generate([request])[0]
            except PrecisionChanged:  # loaded again in int8: this answer is the int8 model's
                return self.generate([request])[0]
        cut += len(VISION_END)
        with self._lock:
            started = time.perf_counter()
            try:
                prefix = self._prefix(text[:cut], request)
                # The prefix ends on a special token, so tokenising the rest alone gives the same
                # ids as tokenising the whole text.
                rest = self.processor.tokenizer(text[cut:], add_special_tokens=False, return_tensors="pt")
                ids = torch.cat([prefix.ids, rest["input_ids"].to(prefix.ids.device)], dim=1)
                self._rope_holder.rope_deltas = prefix.rope_deltas
                try:
                    with torch.inference_mode():
                        output = self.model.generate(
                            input_ids=ids,
                            attention_mask=torch.ones_like(ids),
                            past_key_values=prefix.cache,
                            **self._generate_kwargs(request.max_new_tokens),
                        )
                finally:  # back to the prefix alone (every layer, copied), for the next question
                    _cut_back(prefix.cache, prefix.ids.shape[1])
            except (RuntimeError, ValueError, IndexError, torch.OutOfMemoryError) as exc:
                self._prefixes.clear()  # a cache left in an unknown state is not reused
                return _failure(exc, started)
            except BaseException:  # Ctrl-C or a bug: drop the caches, then let it through
                self._prefixes.clear()
                raise
        elapsed_ms = (time.perf_counter() - started) * 1000
        return self._decode(output[0, ids.shape[1] :].tolist(), request, ids.shape[1], elapsed_ms)

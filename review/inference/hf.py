"""The transformers provider: a Qwen-VL model (Qwen3-VL, Qwen2.5-VL) loaded in this process.

Loads a hub id or a local folder with ``AutoProcessor`` + ``AutoModelForImageTextToText`` (as
users load the real Qwen3-VL-2B-Instruct), on CUDA in bf16 when there is a GPU and on the CPU
in fp32 otherwise, optionally with a PEFT LoRA adapter. Batches are padded on the left and
generated greedily; with a JSON schema the decoding is constrained to it (see
:mod:`review.inference.constrained`), so every answer parses unless it runs out of tokens.

Follow-up questions (:meth:`TransformersProvider.chat`) keep the key/value cache of the
conversation's prefix — the system message and the images, through the last ``<|vision_end|>``
— in a small LRU: the vision tower and the prefill of the image tokens run once per
conversation, and each question only prefills its own turns. One model serves one call at a
time (a lock), since M-RoPE keeps per-call state on the model.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from review.inference.base import Generation, ModelRequest, ModelUnavailable

DEFAULT_MAX_PIXELS = 1024 * 28 * 28  # ≈ 0.8 MP per image: enough for text in screenshots
MIN_PIXELS = 32 * 32
VISION_END = "<|vision_end|>"  # Qwen-VL's token after each image: where a conversation's prefix ends


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
    """A conversation's prefix, run once: its token ids, its key/value cache and M-RoPE offset."""

    ids: Any  # (1, L) tensor
    cache: Any  # DynamicCache holding exactly L positions between calls
    rope_deltas: Any


def _images_digest(images: list[Any]) -> str:
    h = hashlib.sha256()
    for image in images:
        h.update(f"{image.mode}{image.size}".encode())
        h.update(image.tobytes())
    return h.hexdigest()


class TransformersProvider:
    name = "transformers"

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
    ) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.model_id = model_id
        self.adapter = adapter
        self.max_pixels = max_pixels
        self.constrained = constrained
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        check_loadable(model_id)
        try:
            pinned = {"revision": revision} if revision else {}
            self.processor = AutoProcessor.from_pretrained(model_id, **pinned)
            model = AutoModelForImageTextToText.from_pretrained(model_id, dtype=dtype, **pinned)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelUnavailable(f"cannot load the model {model_id!r}: {first}") from None
        if adapter:
            try:
                from peft import PeftModel
            except ImportError:
                raise ModelUnavailable("a LoRA adapter needs the peft package (pip install peft)") from None
            try:
                model = PeftModel.from_pretrained(model, adapter)
            except (OSError, ValueError) as exc:
                raise ModelUnavailable(f"cannot load the adapter {adapter!r}: {exc}") from None
        self.model = model.to(self.device).eval()
        self.processor.tokenizer.padding_side = "left"
        self.model_revision = _revision(model_id, self.model.config) or revision
        tok = self.processor.tokenizer
        self.stop_ids = [i for i in {tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id} if i is not None]
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self._lock = threading.Lock()
        self._prefixes: OrderedDict[str, _Prefix] = OrderedDict()
        self.prefix_cache_size = prefix_cache_size
        # The module holding M-RoPE's per-call offset (Qwen3VLModel / Qwen2_5_VLModel), if any.
        self._rope_holder = next((m for m in self.model.modules() if hasattr(m, "rope_deltas")), None)

    def _inputs(self, requests: list[ModelRequest], texts: list[str] | None = None) -> Any:
        texts = texts or [
            self.processor.apply_chat_template(r.prompt.messages, add_generation_prompt=True, tokenize=False)
            for r in requests
        ]
        images = [im for r in requests for im in r.images]
        kwargs: dict[str, Any] = {"text": texts, "padding": True, "return_tensors": "pt"}
        if images:
            kwargs["images"] = images
            kwargs["images_kwargs"] = {"size": {"shortest_edge": MIN_PIXELS, "longest_edge": self.max_pixels}}
        return self.processor(**kwargs).to(self.device)

    def _logits_processors(self, requests: list[ModelRequest]) -> list[Any]:
        schemas = [r.json_schema for r in requests]
        if not self.constrained or all(s is None for s in schemas):
            return []
        from review.inference.constrained import json_schema_processor

        vocab = self.model.get_output_embeddings().weight.shape[0]
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
            started = time.perf_counter()
            logits_processors = self._logits_processors(requests)
            try:
                inputs = self._inputs(requests)
                with torch.inference_mode():
                    output = self.model.generate(
                        **inputs,
                        **self._generate_kwargs(max(r.max_new_tokens for r in requests)),
                        logits_processor=logits_processors,
                    )
            # What the model itself can raise (out of memory, an input it cannot take) is reported
            # per request as that post's failure; a bug in our code is not caught here.
            except (RuntimeError, ValueError, IndexError, torch.OutOfMemoryError) as exc:
                elapsed = (time.perf_counter() - started) * 1000
                return [
                    Generation(text=None, error=f"{type(exc).__name__}: {exc}", latency_ms=elapsed) for _ in requests
                ]
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

        key = hashlib.sha256(f"{prefix_text}\0{self.max_pixels}\0{_images_digest(request.images)}".encode()).hexdigest()
        entry = self._prefixes.get(key)
        if entry is not None:
            self._prefixes.move_to_end(key)
            return entry
        inputs = self._inputs([ModelRequest(request.prompt, request.images)], texts=[prefix_text])
        cache = DynamicCache(config=self.model.config)
        with torch.inference_mode():
            self.model(**inputs, past_key_values=cache, use_cache=True, logits_to_keep=1)
        rope = getattr(self._rope_holder, "rope_deltas", None)
        entry = _Prefix(ids=inputs["input_ids"], cache=cache, rope_deltas=None if rope is None else rope.clone())
        self._prefixes[key] = entry
        while len(self._prefixes) > max(1, self.prefix_cache_size):
            self._prefixes.popitem(last=False)
        return entry

    def chat(self, request: ModelRequest) -> Generation:
        """Free-text answer to a conversation (no schema). The prefix through the last image is
        cached across calls, so a follow-up question does not run the vision tower again."""
        import torch

        text = self.processor.apply_chat_template(request.prompt.messages, add_generation_prompt=True, tokenize=False)
        cut = text.rfind(VISION_END)
        if not request.images or cut < 0 or self._rope_holder is None:
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
                finally:  # back to the prefix alone, for the next question
                    prefix.cache.crop(prefix.ids.shape[1] - prefix.cache.get_seq_length())
            except (RuntimeError, ValueError, IndexError, torch.OutOfMemoryError) as exc:
                self._prefixes.clear()  # a cache left in an unknown state is not reused
                elapsed = (time.perf_counter() - started) * 1000
                return Generation(text=None, error=f"{type(exc).__name__}: {exc}", latency_ms=elapsed)
        elapsed_ms = (time.perf_counter() - started) * 1000
        return self._decode(output[0, ids.shape[1] :].tolist(), request, ids.shape[1], elapsed_ms)

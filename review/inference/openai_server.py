"""The OpenAI-compatible provider: a model served elsewhere (vLLM above all; also LMDeploy or
``transformers serve``), reached over HTTP with the official ``openai`` client.

Images go as base64 JPEG data URLs (scaled to the pixel cap first), the verdict schema as
``response_format`` (vLLM enforces it with guided decoding; servers that ignore it still give
text that :mod:`review.inference.parsing` tries to read). Requests run with bounded
concurrency; each has a timeout, and connection errors, 429 and 5xx answers are retried with
exponential backoff by the client. A request that still fails becomes that post's error, never
the whole batch's.

A server that has just started may accept connections long before it can answer: llama.cpp's
``llama-server`` answers every request 503 "Loading model" until its weights are in. So the
provider waits, when it is made, until ``GET /health`` (llama-server, vLLM, ``transformers serve``)
stops answering 5xx, for a bounded time, rather than spend the batch's retries on a loading
server. A server without that route (404) counts as ready.
"""

from __future__ import annotations

import base64
import io
import math
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from PIL import Image

from review.inference.base import Generation, ModelRequest, ModelUnavailable
from review.inference.hf import DEFAULT_MAX_PIXELS
from review.text import one_line

if TYPE_CHECKING:  # imported when first used, like openai
    import httpx2

READY_POLL_S = 0.5  # between two GET /health while the server loads


def image_data_url(image: Image.Image, max_pixels: int = DEFAULT_MAX_PIXELS, quality: int = 90) -> str:
    """An RGB image as a JPEG data URL, scaled down (never up) to at most ``max_pixels``."""
    if image.width * image.height > max_pixels:
        scale = math.sqrt(max_pixels / (image.width * image.height))
        image = image.resize(
            (max(1, int(image.width * scale)), max(1, int(image.height * scale))), Image.Resampling.BICUBIC
        )
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def to_openai_messages(
    messages: list[dict[str, Any]], images: list[Image.Image], max_pixels: int
) -> list[dict[str, Any]]:
    """HF-style messages (image parts are placeholders) → OpenAI chat messages with data URLs."""
    remaining = iter(images)
    out: list[dict[str, Any]] = []
    for message in messages:
        parts: list[dict[str, Any]] = []
        for part in message["content"]:
            if part["type"] == "image":
                try:
                    image = next(remaining)
                except StopIteration:
                    raise ValueError("the prompt has more image parts than the post has images") from None
                parts.append({"type": "image_url", "image_url": {"url": image_data_url(image, max_pixels)}})
            else:
                parts.append({"type": "text", "text": part["text"]})
        if message["role"] != "user" and all(p["type"] == "text" for p in parts):
            out.append({"role": message["role"], "content": "".join(p["text"] for p in parts)})
        else:
            out.append({"role": message["role"], "content": parts})
    return out


def _error_message(answer: httpx2.Response) -> str:
    """The message of an error answer: ``error.message`` of an OpenAI-style JSON body (llama-server,
    vLLM), else the body's text."""
    try:
        body = answer.json()
    except ValueError:
        return answer.text
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return answer.text


class OpenAIProvider:
    name = "openai"
    prompt_version: str | None = None  # verdicts record the rendered prompt's version

    def __init__(
        self,
        base_url: str,
        model_id: str,
        *,
        api_key: str = "EMPTY",
        concurrency: int = 4,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        extra_body: dict[str, Any] | None = None,
        revision: str | None = None,
        ready_timeout_s: float = 120.0,
    ) -> None:
        from openai import OpenAI

        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model_id = model_id
        # The revision the server was started with (vllm serve --revision) when the operator says
        # so; else the server's own name for what it serves, when that differs from model_id.
        self.model_revision: str | None = revision
        self.precision: str | None = None  # the server knows; its API does not say
        self._revision_given = revision is not None
        self.adapter: str | None = None
        self.concurrency = max(1, concurrency)
        self.max_pixels = max_pixels
        self.extra_body = extra_body
        self._check_reachable()
        self._wait_until_ready(ready_timeout_s, api_key)
        self.client = OpenAI(base_url=self.base_url, api_key=api_key, timeout=timeout_s, max_retries=max_retries)

    def _check_reachable(self) -> None:
        parsed = urlparse(self.base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ModelUnavailable(f"{self.base_url!r} is not an http(s) URL of an OpenAI-compatible server")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname, port), timeout=5).close()
        except OSError as exc:
            reason = exc.strerror or exc
            raise ModelUnavailable(f"the model server at {self.base_url} cannot be reached ({reason})") from None

    def _wait_until_ready(self, timeout_s: float, api_key: str) -> None:
        """Poll ``GET /health`` (beside ``/v1``) until it answers anything but a 5xx or a dropped
        connection, for at most ``timeout_s``; then raise ModelUnavailable with the last answer."""
        import httpx2

        url = self.base_url.removesuffix("/v1") + "/health"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                # with the key: a gateway that guards /health would otherwise answer 401, read as ready
                answer = httpx2.get(url, headers={"Authorization": f"Bearer {api_key}"},
                                    timeout=min(5.0, max(timeout_s, 0.1)))  # fmt: skip
            except httpx2.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if answer.status_code < 500:
                    return
                last = f"{answer.status_code} {_error_message(answer)}".rstrip()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ModelUnavailable(
                    f"the model server at {self.base_url} is not ready after {timeout_s:g} s "
                    f"(GET {url}: {one_line(last, 200)})"
                )
            time.sleep(min(READY_POLL_S, remaining))

    def _one(self, request: ModelRequest) -> Generation:
        from openai import OpenAIError

        started = time.perf_counter()
        kwargs: dict[str, Any] = {
            "model": self.model_id,
            "messages": to_openai_messages(request.prompt.messages, request.images, self.max_pixels),
            "max_tokens": request.max_new_tokens,
            "temperature": 0,
        }
        if request.json_schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "verdict", "schema": request.json_schema, "strict": True},
            }
        if self.extra_body:
            kwargs["extra_body"] = self.extra_body
        try:
            response = self.client.chat.completions.create(**kwargs)
        except (OpenAIError, ValueError) as exc:
            elapsed = (time.perf_counter() - started) * 1000
            return Generation(text=None, error=f"{type(exc).__name__}: {exc}", latency_ms=elapsed)
        elapsed = (time.perf_counter() - started) * 1000
        if not self._revision_given and response.model and response.model != self.model_id:
            self.model_revision = response.model[:64]
        choice = response.choices[0] if response.choices else None
        usage = response.usage
        return Generation(
            text=choice.message.content if choice else None,
            error=None if choice else "the server returned no choice",
            latency_ms=elapsed,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            finish_reason=choice.finish_reason if choice else None,
        )

    def chat(self, request: ModelRequest) -> Generation:
        """A follow-up answer. The server keeps its own caches (vLLM's prefix caching reuses the
        image tokens of a conversation when the images are sent the same way each time)."""
        return self._one(request)

    def generate(self, requests: list[ModelRequest]) -> list[Generation]:
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(self._one, requests))

"""The verdict engine: the verdict schema, output parsing, and providers behind one interface."""

from __future__ import annotations

from collections.abc import Callable

from review.config import Settings
from review.errors import ConfigError
from review.inference.base import Provider


def load_provider(
    settings: Settings,
    *,
    name: str | None = None,
    model: str | None = None,
    base_url: str | None = None,
    adapter: str | None = None,
    revision: str | None = None,
    dtype: str | None = None,
    quantize: str | None = None,
    max_memory: str | None = None,
    on_load: Callable[[str], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> Provider:
    """The provider ``name`` (default: the settings') for ``model`` (default: the settings'):
    ``transformers`` loads it in this process, ``openai`` talks to a server such as vLLM,
    ``baseline`` is the offline rules. ``dtype``, ``quantize`` and ``max_memory`` (default: the
    settings') choose the transformers provider's precision; ``notify`` hears a step down to int8.
    Raises ModelUnavailable when the model cannot be loaded."""
    name = name or settings.provider
    model = model or settings.model
    if name == "baseline":
        from review.inference.baseline import BaselineProvider

        if adapter:
            raise ConfigError("the baseline provider takes no adapter")
        return BaselineProvider()
    if name == "transformers":
        from review.inference.hf import TransformersProvider

        if on_load:
            on_load(model)
        return TransformersProvider(model, adapter=adapter, revision=revision, max_pixels=settings.model_max_pixels,
                                    dtype=dtype or settings.model_dtype,
                                    quantize=quantize or settings.model_quantize,
                                    max_memory=max_memory or settings.model_max_memory, notify=notify)  # fmt: skip
    if name == "openai":
        from review.inference.openai_server import OpenAIProvider

        url = base_url or settings.model_base_url
        if not url:
            raise ConfigError("--provider openai needs --base-url (or MODEL_BASE_URL), e.g. http://127.0.0.1:8000/v1")
        if adapter:
            raise ConfigError("with --provider openai, serve the adapter on the server (vLLM --lora-modules)")
        return OpenAIProvider(url, model, revision=revision, max_pixels=settings.model_max_pixels)
    raise ConfigError(f"unknown provider {name!r}: use transformers, openai or baseline")

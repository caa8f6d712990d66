"""The one interface every verdict provider implements.

A provider turns rendered prompts plus the post's images into raw model text. It knows nothing
about the database; :mod:`review.scoring` renders prompts, calls a provider in batches, parses
the output (:mod:`review.inference.parsing`) and stores verdict rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from PIL import Image

from review.errors import ReviewError

if TYPE_CHECKING:  # review.prompts imports this package (the verdict schema): no import at run time
    from review.prompts import RenderedPrompt


class ModelUnavailable(ReviewError):
    """The configured model cannot be loaded or reached (no weights, no server, no network)."""


class PrecisionChanged(Exception):
    """The provider ran out of memory in its first batch and loaded its model again in another
    precision (int8): nothing was answered, and the caller asks again, so that the answers are
    recorded with the precision that made them."""


@dataclass(frozen=True)
class PostSignals:
    """What the cheap signals found in a post (the baseline provider decides from these)."""

    text: str = ""
    ocr_texts: list[str] = field(default_factory=list)  # per image, in order ("" when none read)
    nsfw_scores: list[float | None] = field(default_factory=list)  # per image (None: not computed)
    missing: int = 0  # images whose signals have not been computed yet


@dataclass(frozen=True)
class ModelRequest:
    """One prompt for the model: the rendered messages and the images their image parts use."""

    prompt: RenderedPrompt
    images: list[Image.Image] = field(default_factory=list)
    json_schema: dict | None = None  # constrain the answer to this schema (None: free text)
    max_new_tokens: int = 768
    signals: PostSignals = field(default_factory=PostSignals)


@dataclass
class Generation:
    """What the model said for one request, with the cost of saying it."""

    text: str | None
    error: str | None = None
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None  # "stop", "length", …


class Provider(Protocol):
    name: str  # "transformers", "openai", "baseline"
    model_id: str
    model_revision: str | None
    adapter: str | None
    # the weights' precision as run ("float32", "bfloat16", "int8-dynamic", "int8-bnb"); None when
    # the provider cannot tell (a server's model) or runs no model (the rules)
    precision: str | None
    # None for providers that answer the rendered prompt; a provider that reads no prompt (the
    # baseline) names the version of what it decides by, recorded on its verdicts instead.
    prompt_version: str | None

    def generate(self, requests: list[ModelRequest]) -> list[Generation]:
        """One Generation per request, in order. Never raises for one bad request: its
        Generation carries the error instead. May raise :class:`PrecisionChanged` once, for the
        first batch: ask again."""
        ...

    def chat(self, request: ModelRequest) -> Generation:
        """A free-text answer in a conversation about one post (follow-up questions). Providers
        that can, reuse the work on the conversation's images across its questions."""
        ...

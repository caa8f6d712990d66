"""The verdict a model gives one post: a pydantic model and the JSON schema sent to the model.

The category field is constrained to the policy taxonomy's ids (prompts/policy.toml), so the
schema is built per policy by :func:`verdict_json_schema`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from review.policy import Policy

Consistency = Literal["consistent", "mismatch", "not_applicable"]
Sentiment = Literal["positive", "neutral", "negative"]

# Bounds that keep an answer inside a token budget (and the constrained decoder finite).
MAX_DESCRIPTION = 500
MAX_OCR_TEXT = 1500
MAX_REASON = 200
MAX_RATIONALE = 200
MAX_TAGS = 8
MAX_TAG = 32


class ImageTextConsistency(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: Consistency
    reason: str = Field(max_length=MAX_REASON)


class ModelAnswer(BaseModel):
    """One model judgement of one post, as the model answers it."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(max_length=MAX_DESCRIPTION, description="what the image(s) show")
    ocr_text: str = Field(max_length=MAX_OCR_TEXT, description="text visible in the image(s), verbatim")
    violation: bool = Field(description="true exactly when category is not 'none'")
    category: str = Field(description="a policy category id")
    severity: int = Field(ge=0, le=3, description="0 none, 1 low, 2 medium, 3 high")
    confidence: float = Field(ge=0.0, le=1.0, description="how sure the judgement is")
    image_text_consistency: ImageTextConsistency
    sentiment: Sentiment
    tags: list[str] = Field(max_length=MAX_TAGS, description="short keywords")
    rationale: str = Field(max_length=MAX_RATIONALE, description="the evidence that decided the verdict")


def verdict_json_schema(policy: Policy) -> dict[str, Any]:
    """The JSON schema of :class:`ModelAnswer` with ``category`` limited to the policy's ids and
    every string bounded (what constrained decoding and ``response_format`` receive)."""
    schema = _without_titles(ModelAnswer.model_json_schema())
    props = schema["properties"]
    props["category"]["enum"] = policy.ids
    props["tags"]["items"] = {"type": "string", "maxLength": MAX_TAG}
    schema["additionalProperties"] = False
    return schema


def _without_titles(node: Any) -> Any:
    """Drop pydantic's "title" keys: noise for the model, tokens in every prompt."""
    if isinstance(node, dict):
        return {k: _without_titles(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_without_titles(v) for v in node]
    return node


def schema_text(policy: Policy) -> str:
    """The schema as compact, stable text (for prompts and hashing)."""
    return json.dumps(verdict_json_schema(policy), ensure_ascii=False, sort_keys=True, separators=(",", ":"))

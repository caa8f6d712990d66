"""Turning what a model actually wrote into a :class:`ModelAnswer`, or an honest failure.

Real output drifts from the schema even when asked nicely: code fences, prose around the
JSON, a reasoning block first, a category id that is not in the taxonomy, "85" for a
confidence, a rationale that runs long, an answer cut off by the token limit. :func:`parse`

- finds the JSON object (whole text, a fenced block, or the first balanced object in prose);
- repairs what has one obvious reading, and records each repair as a note
  (``status = "repaired"``): numbers clamped or rescaled, unknown categories mapped to
  ``other``, names of categories mapped to their ids, strings trimmed, types coerced;
- gives up with a reason (``status = "failed"``) when the core of a verdict is missing or the
  output is not JSON at all. The caller stores the raw output and the reason either way.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from review.inference.schema import (
    MAX_DESCRIPTION,
    MAX_OCR_TEXT,
    MAX_RATIONALE,
    MAX_REASON,
    MAX_TAG,
    MAX_TAGS,
    ModelAnswer,
)
from review.policy import FALLBACK, NO_VIOLATION, Policy, load_policy

ParseStatus = Literal["ok", "repaired", "failed"]

_VERDICT_KEYS = {"violation", "category", "confidence", "severity", "rationale"}
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_TRUE = {"true", "yes", "y", "1", "是", "违规", "有"}
_FALSE = {"false", "no", "n", "0", "否", "不违规", "无", "none"}
_SENTIMENTS = {"positive": "positive", "neutral": "neutral", "negative": "negative", "正面": "positive",
               "中性": "neutral", "负面": "negative", "积极": "positive", "消极": "negative"}  # fmt: skip
_CONSISTENCY = {"consistent": "consistent", "mismatch": "mismatch", "not_applicable": "not_applicable",
                "inconsistent": "mismatch", "n/a": "not_applicable", "na": "not_applicable",
                "一致": "consistent", "不一致": "mismatch", "不适用": "not_applicable"}  # fmt: skip


@dataclass
class ParseResult:
    status: ParseStatus
    verdict: ModelAnswer | None = None
    notes: list[str] = field(default_factory=list)  # each repair, in words
    error: str | None = None  # why it failed

    @property
    def usable(self) -> bool:
        return self.verdict is not None


def extract_json_object(text: str) -> tuple[dict[str, Any] | None, list[str], str | None]:
    """The verdict object in a model's output: (object, notes, error)."""
    notes: list[str] = []
    stripped = text.strip()
    if not stripped:
        return None, notes, "the output is empty"
    without_think = _THINK.sub("", stripped).strip()
    if without_think != stripped:
        notes.append("removed a <think> block")
        stripped = without_think
    candidates: list[tuple[str, str | None]] = [(stripped, None)]
    fenced = _FENCE.search(stripped)
    if fenced:
        candidates.append((fenced.group(1).strip(), "took the JSON out of a code fence"))
    for candidate, note in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value, notes + ([note] if note else []), None
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", stripped):
        try:
            value, _end = decoder.raw_decode(stripped, match.start())
        except ValueError:
            continue
        if isinstance(value, dict) and set(value) & _VERDICT_KEYS:  # not a nested part of a cut-off answer
            return value, [*notes, "took the JSON object out of surrounding text"], None
    if "{" in stripped and stripped.count("{") > stripped.count("}"):
        return None, notes, "the output ends before the JSON object closes (cut off by the token limit?)"
    return None, notes, "the output holds no JSON object"


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*(%?)\s*", value)
        if m:
            return float(m.group(1)) / (100 if m.group(2) else 1)
    return None


def _text(value: Any, limit: int, name: str, notes: list[str]) -> str:
    if value is None:
        notes.append(f"{name} was missing")
        return ""
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)
        notes.append(f"{name} was not a string")
    if len(value) > limit:
        notes.append(f"{name} cut to {limit} characters")
        value = value[: limit - 1] + "…"
    return value


def _category(value: Any, policy: Policy, notes: list[str]) -> str | None:
    if value is None:
        return None
    raw = str(value).strip()
    key = raw.lower().replace("-", "_").replace(" ", "_")
    if key in policy.ids:
        if key != raw:
            notes.append(f"category {raw!r} read as {key!r}")
        return key
    for c in policy.category:  # a name instead of an id
        if raw in (c.name_zh, c.name_en) or raw.lower() == c.name_en.lower():
            notes.append(f"category name {raw!r} mapped to {c.id!r}")
            return c.id
    notes.append(f"unknown category {raw!r} mapped to {FALLBACK!r}")
    return FALLBACK


def normalise(data: dict[str, Any], policy: Policy) -> tuple[ModelAnswer | None, list[str], str | None]:
    """Repair a parsed object into a ModelAnswer: (verdict, notes, error)."""
    notes: list[str] = []
    extra = sorted(set(data) - set(ModelAnswer.model_fields))
    if extra:
        notes.append(f"ignored unknown fields: {', '.join(extra)}")

    category = _category(data.get("category"), policy, notes)
    violation = _bool(data.get("violation"))
    if data.get("violation") is not None and violation is None:
        notes.append(f"violation {data.get('violation')!r} is not a yes/no")
    if violation is None and category is None:
        return None, notes, "neither violation nor category is given"
    if category is None:
        category = FALLBACK if violation else NO_VIOLATION
        notes.append(f"category missing; set to {category!r} from violation")
    if violation is None:
        violation = category != NO_VIOLATION
        notes.append("violation missing; set from category")
    if violation and category == NO_VIOLATION:
        category = FALLBACK
        notes.append(f"violation without a category; category set to {FALLBACK!r}")
    elif not violation and category != NO_VIOLATION:
        notes.append(f"category {category!r} given with violation false")

    confidence = _number(data.get("confidence"))
    if confidence is None:
        return None, notes, f"confidence {data.get('confidence')!r} is not a number"
    if 1 < confidence <= 100:
        notes.append(f"confidence {confidence:g} read as a percentage")
        confidence /= 100
    if not 0 <= confidence <= 1:
        notes.append(f"confidence {confidence:g} clamped to 0..1")
        confidence = min(1.0, max(0.0, confidence))

    severity_raw = _number(data.get("severity"))
    if severity_raw is None:
        severity = 0 if not violation else 2
        notes.append(f"severity missing or not a number; set to {severity}")
    else:
        severity = int(round(severity_raw))
        if not 0 <= severity <= 3:
            notes.append(f"severity {severity_raw:g} clamped to 0..3")
            severity = min(3, max(0, severity))
        elif severity != severity_raw:
            notes.append(f"severity {severity_raw:g} rounded to {severity}")

    itc = data.get("image_text_consistency")
    label: Any = itc.get("label") if isinstance(itc, dict) else itc
    reason: Any = itc.get("reason", "") if isinstance(itc, dict) else data.get("consistency_reason", "")
    label_key = _CONSISTENCY.get(str(label).strip().lower()) if label is not None else None
    if label_key is None:
        notes.append(f"image_text_consistency {label!r} unknown; set to 'not_applicable'")
        label_key = "not_applicable"
    elif not isinstance(itc, dict):
        notes.append("image_text_consistency was not an object")

    sentiment = _SENTIMENTS.get(str(data.get("sentiment", "")).strip().lower())
    if sentiment is None:
        notes.append(f"sentiment {data.get('sentiment')!r} unknown; set to 'neutral'")
        sentiment = "neutral"

    tags_raw = data.get("tags", [])
    if isinstance(tags_raw, str):
        tags_raw = [t for t in re.split(r"[,，;；、]\s*", tags_raw) if t.strip()]
        notes.append("tags were a string")
    if not isinstance(tags_raw, list):
        notes.append("tags were not a list")
        tags_raw = []
    tags = [str(t).strip()[:MAX_TAG] for t in tags_raw if str(t).strip()]
    if len(tags) > MAX_TAGS:
        notes.append(f"tags cut to {MAX_TAGS}")
        tags = tags[:MAX_TAGS]

    try:
        verdict = ModelAnswer(
            description=_text(data.get("description"), MAX_DESCRIPTION, "description", notes),
            ocr_text=_text(data.get("ocr_text", ""), MAX_OCR_TEXT, "ocr_text", notes),
            violation=violation,
            category=category,
            severity=severity,
            confidence=confidence,
            image_text_consistency={"label": label_key, "reason": _text(reason, MAX_REASON, "reason", notes)},
            sentiment=sentiment,
            tags=tags,
            rationale=_text(data.get("rationale"), MAX_RATIONALE, "rationale", notes),
        )
    except ValidationError as exc:  # should not happen after the repairs above
        return None, notes, f"the verdict does not fit the schema: {exc.errors()[0]['msg']}"
    return verdict, notes, None


def parse(text: str | None, policy: Policy | None = None) -> ParseResult:
    """Parse a model's raw output into a verdict (see the module docstring)."""
    policy = policy or load_policy()
    if text is None:
        return ParseResult(status="failed", error="there is no output")
    data, notes, error = extract_json_object(text)
    if data is None:
        return ParseResult(status="failed", notes=notes, error=error)
    verdict, more, error = normalise(data, policy)
    notes += more
    if verdict is None:
        return ParseResult(status="failed", notes=notes, error=error)
    return ParseResult(status="repaired" if notes else "ok", verdict=verdict, notes=notes)

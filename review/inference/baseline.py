"""The baseline provider: a verdict from cheap signals and the rules in ``prompts/rules.toml``.

It needs no model download, so a fresh machine gets real verdicts with rationales, and it is a
yardstick for the vision-language model. It reads the post text, the OCR text of the images and
their NSFW scores (``ModelRequest.signals``), and an English profanity score
(``alt-profanity-check``), and answers in the verdict schema. Its rationale quotes the evidence
that fired; its confidence grows with the strength and number of distinct pieces of evidence.
It never looks at the picture beyond those signals, says so in its description, and is labelled
``baseline`` everywhere (provider name, model id, prompt version).
"""

from __future__ import annotations

import hashlib
import re
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from review.errors import ConfigError
from review.inference.base import Generation, ModelRequest
from review.inference.schema import MAX_OCR_TEXT, MAX_TAG, MAX_TAGS, ModelAnswer
from review.policy import PROMPTS_DIR, Policy, load_policy

RULES_FILE = PROMPTS_DIR / "rules.toml"
UNSEEN_CONFIDENCE = 0.3  # "nothing found" while some images were never read
CJK = re.compile(r"[\u4e00-\u9fff]")


@dataclass(frozen=True)
class Rule:
    id: str
    category: str
    severity: int
    weight: float
    quote: str
    patterns: tuple[re.Pattern[str], ...]


@dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...]
    nsfw_violation: float
    nsfw_suspect: float
    profanity: float
    min_confidence_clean: float
    digest: str


def load_rules(path: Path = RULES_FILE, policy: Policy | None = None) -> Rules:
    policy = policy or load_policy()
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"baseline rules file {path} not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    return _parse(data, policy, hashlib.sha256(raw + policy.digest.encode()).hexdigest(), path)


def _parse(data: dict, policy: Policy, digest: str, path: Path) -> Rules:
    rules = []
    for i, item in enumerate(data.get("rule", []), start=1):
        where = f"{path} rule {i} ({item.get('id', '?')})"
        if item.get("category") not in policy.ids:
            raise ConfigError(f"{where}: category {item.get('category')!r} is not in the policy")
        try:
            patterns = tuple(re.compile(p, re.IGNORECASE) for p in item["patterns"])
            rules.append(Rule(str(item["id"]), item["category"], int(item["severity"]), float(item["weight"]),
                              str(item["quote"]), patterns))  # fmt: skip
        except KeyError as exc:
            raise ConfigError(f"{where}: missing {exc.args[0]!r}") from None
        except re.error as exc:
            raise ConfigError(f"{where}: bad pattern: {exc}") from None
        if not 0 <= rules[-1].severity <= 3 or not 0 <= rules[-1].weight <= 1:
            raise ConfigError(f"{where}: severity must be 0–3 and weight 0–1")
    limits = data.get("thresholds", {})
    return Rules(
        rules=tuple(rules),
        nsfw_violation=float(limits.get("nsfw_violation", 0.8)),
        nsfw_suspect=float(limits.get("nsfw_suspect", 0.5)),
        profanity=float(limits.get("profanity", 0.8)),
        min_confidence_clean=float(limits.get("min_confidence_clean", 0.55)),
        digest=digest,
    )


@dataclass(frozen=True)
class Evidence:
    category: str
    severity: int
    weight: float
    what: str  # "absolute advertising claim"
    snippet: str  # the words that fired
    where: str  # "text", "image text", "image 1"


def _snippet(text: str, match: re.Match[str]) -> str:
    return " ".join(text[match.start() : match.end()].split())[:40]


def find_evidence(rules: Rules, text: str, ocr_texts: list[str], nsfw: list[float | None]) -> list[Evidence]:
    """Every piece of evidence the rules, the NSFW scores and the profanity model find."""
    found: list[Evidence] = []
    sources = [("text", text)] + [(f"image {i} text" if len(ocr_texts) > 1 else "image text", t)
                                  for i, t in enumerate(ocr_texts, start=1) if t]  # fmt: skip
    for rule in rules.rules:
        seen: set[str] = set()
        for where, body in sources:
            for pattern in rule.patterns:
                for match in pattern.finditer(body):
                    snippet = _snippet(body, match)
                    if snippet.casefold() not in seen:
                        seen.add(snippet.casefold())
                        found.append(Evidence(rule.category, rule.severity, rule.weight, rule.quote, snippet, where))
    for i, score in enumerate(nsfw, start=1):
        if score is None:
            continue
        where = f"image {i}" if len(nsfw) > 1 else "the image"
        if score >= rules.nsfw_violation:
            found.append(Evidence("sexual", 2, score, "NSFW score", f"{score:.2f}", where))
        elif score >= rules.nsfw_suspect:
            found.append(Evidence("sexual", 1, score * 0.8, "borderline NSFW score", f"{score:.2f}", where))
    for where, body in sources:
        profanity = profanity_score(body)
        if profanity is not None and profanity >= rules.profanity:
            quoted = " ".join(latin_words(body))
            quoted = quoted if len(quoted) <= 40 else quoted[:39] + "…"
            what = f"English profanity (p={profanity:.2f})"
            found.append(Evidence("hate_harassment", 1, profanity, what, quoted, where))
    return found


@cache
def _profanity_model() -> Callable[[list[str]], Sequence[float]]:
    import warnings

    with warnings.catch_warnings():  # the pickled model warns about its scikit-learn version
        warnings.simplefilter("ignore")
        from profanity_check import predict_prob

    return predict_prob


def latin_words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z][A-Za-z'\-]+", text)


def profanity_score(text: str) -> float | None:
    """alt-profanity-check's probability for the Latin-script part of ``text`` (None if none)."""
    latin = " ".join(latin_words(text))
    if len(latin) < 3:
        return None
    return round(float(_profanity_model()([latin])[0]), 3)


def sentiment(text: str) -> str:
    """snownlp's sentiment for Chinese text; neutral for other text (no model for it here)."""
    chinese = "".join(CJK.findall(text))
    if len(chinese) < 2:
        return "neutral"
    from snownlp import SnowNLP

    score = SnowNLP(text).sentiments
    return "positive" if score >= 0.7 else "negative" if score <= 0.3 else "neutral"


def _rationale(evidence: list[Evidence], top: Evidence) -> str:
    parts = [f"{top.what}: “{top.snippet}” in {top.where}"]
    for e in evidence:
        if e is not top and len(parts) < 3 and e.what != top.what:
            parts.append(f"{e.what}: “{e.snippet}” in {e.where}")
    text = "Baseline rules — " + "; ".join(parts)
    return text if len(text) <= 200 else text[:199] + "…"


def verdict_from_signals(
    rules: Rules, text: str, ocr_texts: list[str], nsfw: list[float | None], n_images: int, missing: int = 0
) -> ModelAnswer:
    """The baseline's verdict. ``missing``: images whose signals were not computed yet; with
    nothing found, the verdict then says so and its confidence drops to ``UNSEEN_CONFIDENCE``."""
    evidence = find_evidence(rules, text, ocr_texts, nsfw)
    ocr_text = "\n".join(t for t in ocr_texts if t)
    lines = sum(len(t.splitlines()) for t in ocr_texts if t)
    description = (
        f"Baseline (rules over text and signals; the picture itself is not interpreted): {n_images} image(s)"
        + (f", {lines} line(s) of text read in the image(s)" if lines else "")
        + "."
    )
    scored = [s for s in nsfw if s is not None]
    tags = ["baseline", *sorted({e.what.split(" (")[0].replace(" ", "_")[:MAX_TAG] for e in evidence})][:MAX_TAGS]
    common = {
        "description": description,
        "ocr_text": ocr_text[:MAX_OCR_TEXT],
        "sentiment": sentiment(text + ocr_text),
        "tags": tags,
        "image_text_consistency": {"label": "not_applicable", "reason": "the baseline does not compare image and text"},
    }
    if not evidence:
        if missing:
            note = f"; {missing} image(s) not read yet (run python -m review signals)"
            confidence = UNSEEN_CONFIDENCE
        else:
            note = f"; highest NSFW score {max(scored):.2f}" if scored else ""
            confidence = rules.min_confidence_clean
        return ModelAnswer(violation=False, category="none", severity=0, confidence=confidence,
                       rationale=f"Baseline rules — nothing matched in the text or image text{note}.",
                       **common)  # fmt: skip
    top = max(evidence, key=lambda e: (e.severity, e.weight))
    backing = {(e.what, e.snippet.casefold()) for e in evidence} - {(top.what, top.snippet.casefold())}
    confidence = min(0.95, top.weight + 0.1 * len(backing))
    return ModelAnswer(violation=top.severity > 0, category=top.category, severity=top.severity,
                   confidence=round(confidence, 2), rationale=_rationale(evidence, top), **common)  # fmt: skip


class BaselineProvider:
    """``--provider baseline``: the same interface and verdict schema as the model providers."""

    name = "baseline"
    model_id = "baseline-rules"
    adapter: str | None = None

    def __init__(self, rules_file: Path = RULES_FILE, policy: Policy | None = None) -> None:
        self.policy = policy or load_policy()
        self.rules = load_rules(rules_file, self.policy)
        self.model_revision: str | None = f"rules-{self.rules.digest[:12]}"
        self.precision: str | None = None  # rules, no weights
        # The baseline reads no prompt: its "prompt version" is its rules and policy.
        self.prompt_version: str | None = f"baseline@{self.rules.digest[:12]}"

    def generate(self, requests: list[ModelRequest]) -> list[Generation]:
        out = []
        for request in requests:
            started = time.perf_counter()
            signals = request.signals
            verdict = verdict_from_signals(self.rules, signals.text, signals.ocr_texts, signals.nsfw_scores,
                                           len(request.images), signals.missing)  # fmt: skip
            out.append(Generation(text=verdict.model_dump_json(), latency_ms=(time.perf_counter() - started) * 1000,
                                  prompt_tokens=0, completion_tokens=0, finish_reason="stop"))  # fmt: skip
        return out

    def chat(self, request: ModelRequest) -> Generation:
        return Generation(text=None, error="the baseline provider cannot answer questions: configure a model")

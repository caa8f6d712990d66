"""The baseline provider: a verdict from cheap signals and the rules in ``prompts/rules.toml``.

It needs no model download, so a fresh machine gets real verdicts with rationales, and it is a
yardstick for the vision-language model. It reads the post text, the OCR text of the images and
their NSFW scores (``ModelRequest.signals``), and an English profanity score
(``alt-profanity-check``), and answers in the verdict schema. Its rationale quotes the evidence
that fired. Evidence is weighed, not counted: the pieces for one category combine as independent
signals, a weak one alone (a link, a swear word with no target) stays under the violation line,
and the confidence grows with the strength of the evidence (an NSFW score's never past the
score); ``prompts/rules.toml`` says how. It never looks at the picture beyond those signals,
says so in its description, and is labelled ``baseline`` everywhere (provider name, model id,
prompt version).
"""

from __future__ import annotations

import hashlib
import math
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
# What the rules read as a link, blanked out before any rule without ``urls = true`` reads the text.
URL = re.compile(r"(?:https?://|www\.)[^\s，。、]+|(?<![@\w.])(?:[a-z0-9-]+\.)+[a-z]{2,}/[^\s，。、]*", re.IGNORECASE)


@dataclass(frozen=True)
class Rule:
    id: str
    category: str
    severity: int
    weight: float
    quote: str
    patterns: tuple[re.Pattern[str], ...]
    urls: bool = False  # reads the text with its links; other rules read it with the links blanked out
    needs_target: bool = False  # an insult: full weight only with a target in the same text


@dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...]
    targets: tuple[re.Pattern[str], ...]
    nsfw_violation: float
    nsfw_suspect: float
    profanity: float
    profanity_weight: float
    untargeted: float
    repeat: float
    violation: float
    max_confidence: float
    min_confidence_clean: float
    digest: str


THRESHOLDS = {  # [thresholds] key → its value where the rules file leaves it out
    "nsfw_violation": 0.8,
    "nsfw_suspect": 0.5,
    "profanity": 0.8,
    "profanity_weight": 0.7,
    "untargeted": 0.35,
    "repeat": 0.3,
    "violation": 0.5,
    "max_confidence": 0.95,
    "min_confidence_clean": 0.7,
}


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
        flags = {key: item.get(key, False) for key in ("urls", "needs_target")}
        if not all(isinstance(flag, bool) for flag in flags.values()):
            raise ConfigError(f"{where}: urls and needs_target are true or false")
        try:
            rules.append(Rule(str(item["id"]), item["category"], int(item["severity"]), float(item["weight"]),
                              str(item["quote"]), _patterns(item["patterns"], where), **flags))  # fmt: skip
        except KeyError as exc:
            raise ConfigError(f"{where}: missing {exc.args[0]!r}") from None
        if not 0 <= rules[-1].severity <= 3 or not 0 <= rules[-1].weight <= 1:
            raise ConfigError(f"{where}: severity must be 0–3 and weight 0–1")
    given = data.get("thresholds", {})
    if unknown := sorted(set(given) - set(THRESHOLDS)):
        raise ConfigError(f"{path} [thresholds]: unknown {', '.join(unknown)}; known: {', '.join(THRESHOLDS)}")
    limits = {key: given.get(key, default) for key, default in THRESHOLDS.items()}
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1 for v in limits.values()):
        raise ConfigError(f"{path} [thresholds]: every value is a number between 0 and 1")
    targets = _patterns(data.get("targets", {}).get("patterns", []), f"{path} [targets]")
    return Rules(rules=tuple(rules), targets=targets, digest=digest, **{k: float(v) for k, v in limits.items()})


def _patterns(patterns: list[str], where: str) -> tuple[re.Pattern[str], ...]:
    try:
        return tuple(re.compile(p, re.IGNORECASE) for p in patterns)
    except re.error as exc:
        raise ConfigError(f"{where}: bad pattern: {exc}") from None


@dataclass(frozen=True)
class Evidence:
    category: str
    severity: int
    weight: float  # how much this piece alone makes a violation likely (0–1)
    what: str  # "absolute advertising claim"
    snippet: str  # the words that fired
    where: str  # "text", "image text", "image 1"
    ceiling: float = 1.0  # the most confidence it can back (an NSFW score backs no more than itself)


def _snippet(text: str, match: re.Match[str]) -> str:
    return " ".join(text[match.start() : match.end()].split())[:40]


def find_evidence(rules: Rules, text: str, ocr_texts: list[str], nsfw: list[float | None]) -> list[Evidence]:
    """Every piece of evidence the rules, the NSFW scores and the profanity model find, weighed:
    a further match of one rule at ``repeat`` times its weight, an insult with no target in its
    text at ``untargeted`` times its weight and at most severity 1."""
    found: list[Evidence] = []
    sources = [("text", text)] + [(f"image {i} text" if len(ocr_texts) > 1 else "image text", t)
                                  for i, t in enumerate(ocr_texts, start=1) if t]  # fmt: skip
    unlinked = {where: URL.sub(" ", body) for where, body in sources}
    targeted = {where: any(t.search(body) for t in rules.targets) for where, body in unlinked.items()}
    for rule in rules.rules:
        seen: set[str] = set()
        for where, body in sources:
            read = body if rule.urls else unlinked[where]
            aimless = rule.needs_target and not targeted[where]
            for pattern in rule.patterns:
                for match in pattern.finditer(read):
                    snippet = _snippet(read, match)
                    if snippet.casefold() in seen:
                        continue
                    weight = rule.weight * (rules.repeat if seen else 1.0) * (rules.untargeted if aimless else 1.0)
                    seen.add(snippet.casefold())
                    what = f"{rule.quote} (no target)" if aimless else rule.quote
                    found.append(Evidence(rule.category, min(rule.severity, 1) if aimless else rule.severity,
                                          weight, what, snippet, where))  # fmt: skip
    for i, score in enumerate(nsfw, start=1):
        if score is None or score < rules.nsfw_suspect:
            continue
        where = f"image {i}" if len(nsfw) > 1 else "the image"
        strong = score >= rules.nsfw_violation
        what = "NSFW score" if strong else "borderline NSFW score"
        found.append(Evidence("sexual", 2 if strong else 1, score, what, f"{score:.2f}", where, ceiling=score))
    for where, body in unlinked.items():
        profanity = profanity_score(body)
        if profanity is not None and profanity >= rules.profanity:
            quoted = " ".join(latin_words(body))
            quoted = quoted if len(quoted) <= 40 else quoted[:39] + "…"
            aimless = not targeted[where]
            weight = profanity * rules.profanity_weight * (rules.untargeted if aimless else 1.0)
            what = f"English profanity (p={profanity:.2f}{', no target' if aimless else ''})"
            found.append(Evidence("hate_harassment", 1, weight, what, quoted, where))
    return found


def strengths(rules: Rules, evidence: list[Evidence]) -> dict[str, float]:
    """Each category's strength of evidence: its pieces as independent signals, 1 − Π(1 − weight),
    at most ``max_confidence`` and never above the highest ceiling among them."""
    pieces: dict[str, list[Evidence]] = {}
    for e in evidence:
        pieces.setdefault(e.category, []).append(e)
    return {
        category: min(1 - math.prod(1 - e.weight for e in found), max(e.ceiling for e in found), rules.max_confidence)
        for category, found in pieces.items()
    }


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


def _quotes(evidence: list[Evidence], first: Evidence) -> str:
    parts = [f"{first.what}: “{first.snippet}” in {first.where}"]
    for e in evidence:
        if e is not first and len(parts) < 3 and e.what != first.what:
            parts.append(f"{e.what}: “{e.snippet}” in {e.where}")
    return "; ".join(parts)


def _clip(rationale: str) -> str:
    return rationale if len(rationale) <= 200 else rationale[:199] + "…"


def verdict_from_signals(
    rules: Rules, text: str, ocr_texts: list[str], nsfw: list[float | None], n_images: int, missing: int = 0
) -> ModelAnswer:
    """The baseline's verdict: the categories whose strength reaches ``violation``, the highest
    severity then the strongest first, at its strength; else "none", at ``min_confidence_clean``
    times (1 − the strongest weak evidence), never under 0.5 (a "none" less sure than that would
    mean a violation). ``missing``: images whose signals were not computed yet; a "none" verdict
    then says so and its confidence drops to ``UNSEEN_CONFIDENCE``."""
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
    strength = strengths(rules, evidence)
    severity = {c: max(e.severity for e in evidence if e.category == c) for c in strength}
    over = [c for c, s in strength.items() if s >= rules.violation and severity[c] > 0]
    if over:
        category = max(over, key=lambda c: (severity[c], strength[c]))
        top = max((e for e in evidence if e.category == category), key=lambda e: (e.severity, e.weight))
        return ModelAnswer(violation=True, category=category, severity=severity[category],
                           confidence=round(strength[category], 2),
                           rationale=_clip("Baseline rules — " + _quotes(evidence, top)), **common)  # fmt: skip
    if missing:
        note = f"; {missing} image(s) not read yet (run python -m review signals)"
        confidence = UNSEEN_CONFIDENCE
    else:
        note = f"; highest NSFW score {max(scored):.2f}" if scored else ""
        confidence = max(
            min(0.5, rules.min_confidence_clean), rules.min_confidence_clean * (1 - max(strength.values(), default=0.0))
        )
    if evidence:
        weak = max(evidence, key=lambda e: e.weight)
        found = f"nothing reached the violation line ({rules.violation:.2f}); weak evidence: {_quotes(evidence, weak)}"
    else:
        found = "nothing matched in the text or image text"
    return ModelAnswer(violation=False, category="none", severity=0, confidence=round(confidence, 2),
                       rationale=_clip(f"Baseline rules — {found}{note}."), **common)  # fmt: skip


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

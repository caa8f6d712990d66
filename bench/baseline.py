"""The baseline provider on the two written corpora of tests/data/baseline/: how often it flags
ordinary posts, how many clear violations it catches (and in the right category), and how its
confidences spread over the Accuracy page's calibration bins.

    python bench/baseline.py [--rules prompts/rules.toml]

ordinary.jsonl: news headlines, chatter and product captions in English and Chinese, with short
links, hashtags, mentions, emoji and mild swearing; violations.jsonl: clear cases of the demo's
kinds, each with its category. Each line is a post as the baseline reads it: its text, the OCR
text and NSFW score of each image. Prints one JSON object; docs/BENCHMARKS.md records a run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from review.inference.baseline import RULES_FILE, Rules, load_rules, verdict_from_signals  # noqa: E402
from review.metrics.accuracy import CALIBRATION_BINS  # noqa: E402

CORPORA = ROOT / "tests" / "data" / "baseline"


def figures(rules: Rules, name: str) -> dict[str, object]:
    rows = [json.loads(line) for line in (CORPORA / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
    started = time.perf_counter()
    verdicts = [verdict_from_signals(rules, r["text"], r["ocr"], r["nsfw"], len(r["ocr"])) for r in rows]
    elapsed = time.perf_counter() - started
    flagged = sum(v.violation for v in verdicts)
    confidences = [v.confidence for v in verdicts]
    bins = Counter(f"{b / CALIBRATION_BINS:.1f}" for b in (min(int(c * CALIBRATION_BINS), 9) for c in confidences))
    out: dict[str, object] = {
        "posts": len(rows),
        "flagged": flagged,
        "flag_rate": round(flagged / len(rows), 4),
        "categories": dict(Counter(v.category for v in verdicts).most_common()),
        "confidence": {
            "min": min(confidences),
            "median": statistics.median(confidences),
            "max": max(confidences),
            "distinct": len(set(confidences)),
            "posts_per_bin": dict(sorted(bins.items())),
        },
        "ms_per_post": round(elapsed * 1000 / len(rows), 2),
    }
    if "category" in rows[0]:
        right = sum(v.violation and v.category == r["category"] for v, r in zip(verdicts, rows, strict=True))
        out["category_right"] = right
        out["category_right_rate"] = round(right / len(rows), 4)
        out["missed"] = [r["text"][:60] for v, r in zip(verdicts, rows, strict=True) if v.category != r["category"]]
    else:
        out["flagged_posts"] = [f"{v.category}: {r['text'][:60]}" for v, r in zip(verdicts, rows, strict=True)
                                if v.violation]  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=Path, default=RULES_FILE, help="the rules file to measure")
    args = parser.parse_args()
    rules = load_rules(args.rules)
    verdict_from_signals(rules, "warm-up", [], [], 0)  # loads the profanity model outside the timing
    report = {"rules": str(args.rules), "digest": rules.digest[:12]}
    report |= {name: figures(rules, name) for name in ("ordinary", "violations")}
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()

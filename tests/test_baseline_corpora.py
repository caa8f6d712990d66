"""review/inference/baseline.py and prompts/rules.toml on two written corpora (tests/data/baseline/):
ordinary posts (news, chatter, product captions, in English and Chinese, with short links,
hashtags, mentions, emoji and mild swearing) are left alone, clear violations of the demo's kinds
are still caught, and the confidence follows the strength of the evidence.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from review.errors import ConfigError
from review.inference.baseline import RULES_FILE, load_rules, verdict_from_signals
from review.inference.schema import ModelAnswer
from review.metrics.accuracy import CALIBRATION_BINS

CORPORA = Path(__file__).parent / "data" / "baseline"


def _verdict(text: str, ocr: list[str] | None = None, nsfw: list[float | None] | None = None) -> ModelAnswer:
    ocr = ocr if ocr is not None else []
    return verdict_from_signals(load_rules(), text, ocr, nsfw if nsfw is not None else [0.02] * len(ocr), len(ocr))


@cache  # read once for the tests that share it
def _corpus(name: str) -> list[tuple[dict, ModelAnswer]]:
    rows = [json.loads(line) for line in (CORPORA / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
    return [(row, _verdict(row["text"], row["ocr"], row["nsfw"])) for row in rows]


def test_ordinary_posts_are_not_flagged() -> None:
    verdicts = _corpus("ordinary")
    flagged = [(row["text"], v.category) for row, v in verdicts if v.violation]
    assert len(verdicts) >= 150
    assert len(flagged) / len(verdicts) < 0.10, flagged
    # The measured false alarms of real tweets, one by one.
    for text in ("Storm update https://t.co/Ab12Cd34Ef #sandy", "pic.twitter.com/vxR4ab12Cd", "http://t.co/wxK2p9dLm1",
                 "scary shit #hurricane http://t.co/Qz81kLm0Pa", "@wxnews2020 thanks for the update"):  # fmt: skip
        assert not _verdict(text).violation, text
    swearing = _verdict("scary shit #hurricane")
    assert swearing.confidence < _verdict("a quiet evening").confidence and "no target" in swearing.rationale
    children = _verdict("my two kids at the beach", [""], [0.85])  # open_nsfw's false alarm on a harmless photo
    assert children.category == "sexual" and children.confidence <= 0.85


def test_clear_violations_are_still_caught() -> None:
    verdicts = _corpus("violations")
    caught = sum(v.violation for _, v in verdicts)
    right = sum(v.violation and v.category == row["category"] for row, v in verdicts)
    assert len({row["category"] for row, _ in verdicts}) == 7  # every kind the demo has, and self-harm
    assert caught / len(verdicts) >= 0.9 and right / len(verdicts) >= 0.9, [
        (row["text"], v.category) for row, v in verdicts if v.category != row["category"]
    ]
    # Hate needs a target, and then its kind sets the severity: dehumanising words, a call to harm.
    vermin = _verdict("immigrants are vermin")
    assert (vermin.category, vermin.severity) == ("hate_harassment", 2)
    assert _verdict("kill all the jews").severity == 3 and _verdict("kill all the mosquitoes").category == "none"
    # Contact details outside a link still count, next to one.
    assert _verdict("同款便宜出，加微信 fashion_store01 https://t.co/Ab12Cd34Ef").category == "fraud_spam"
    assert _verdict("Join t.me/crypto_pumps_vip now").category == "fraud_spam"


def test_confidence_follows_the_strength_of_the_evidence() -> None:
    giveaway = _verdict("免费领取 iPhone")
    with_contact = _verdict("免费领取 iPhone，私信 QQ 123456789")
    assert giveaway.violation and with_contact.confidence > giveaway.confidence  # two independent signals
    assert _verdict("免费领取 iPhone https://t.co/Ab12Cd34Ef").confidence > giveaway.confidence  # a link adds a little
    # An insult needs a target: the same swearing aimed at someone is harassment, at most low severity alone.
    aimed = _verdict("you are a worthless piece of shit")
    assert (aimed.category, aimed.severity) == ("hate_harassment", 1)
    assert not _verdict("this piece of shit printer jammed again").violation
    assert _verdict("这游戏真傻逼").category == "none" and _verdict("你这个傻逼").category == "hate_harassment"
    # An NSFW score backs a verdict no surer than itself, however many images say so.
    assert _verdict("", ["", ""], [0.9, 0.92]).confidence == 0.92
    # Over both corpora the confidences spread over the calibration bins the Accuracy page draws.
    confidences = [v.confidence for name in ("ordinary", "violations") for _, v in _corpus(name)]
    assert len({int(c * CALIBRATION_BINS) for c in confidences}) >= 4 and len(set(confidences)) >= 15


def test_new_rule_fields_are_checked(tmp_path: Path) -> None:
    rules = RULES_FILE.read_text(encoding="utf-8")
    cases = {
        "thresholds": (rules.replace("[thresholds]\n", "[thresholds]\nviolaton = 0.4\n"), "unknown violaton"),
        "range": (rules.replace("violation = 0.50", "violation = 5"), "between 0 and 1"),
        "flag": (rules.replace("needs_target = true\n", "needs_target = 1\n", 1), "true or false"),
        "targets": (rules.replace("'你|您|楼主|博主'", "'('"), r"\[targets\]: bad pattern"),
    }
    for name, (text, message) in cases.items():
        assert text != rules, name
        (tmp_path / f"{name}.toml").write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match=message):
            load_rules(tmp_path / f"{name}.toml")

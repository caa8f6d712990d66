"""review/inference/baseline.py: the baseline provider decides from the signals for the right reasons
(quoting its evidence and weighing it), and its rules file is checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from review.errors import ConfigError
from review.inference.baseline import RULES_FILE, BaselineProvider, load_rules, verdict_from_signals


def _baseline(text: str, ocr: list[str] | None = None, nsfw: list[float | None] | None = None):
    ocr = ocr if ocr is not None else [""]
    return verdict_from_signals(load_rules(), text, ocr, nsfw if nsfw is not None else [0.01] * len(ocr), len(ocr))


def test_baseline_quotes_the_evidence_and_weighs_it() -> None:
    contact = _baseline("想要同款的姐妹加我微信 wx: meiyan_8888，私聊有优惠")
    assert (contact.violation, contact.category, contact.severity) == (True, "fraud_spam", 2)
    assert "wx: meiyan_8888" in contact.rationale and contact.rationale.startswith("Baseline")
    ad = _baseline("今天的好物", ["全网最低价 国家级品质\n100%有效"])
    assert ad.category == "false_advertising" and "in image text" in ad.rationale
    single = _baseline("这款面霜是最好的")
    assert single.violation and single.confidence < ad.confidence  # more distinct evidence, more confidence
    clean = _baseline("新买的马克杯，颜色很喜欢")
    assert not clean.violation and clean.category == "none" and 0.5 < clean.confidence <= 0.7  # it is blind
    assert "nothing matched" in clean.rationale
    assert clean.tags == ["baseline"]
    rude = _baseline("You are all idiots, get lost and never come back")
    assert rude.category == "hate_harassment" and "idiots" in rude.rationale
    nude = _baseline("", [""], [0.93])
    assert (nude.category, nude.severity) == ("sexual", 2) and "0.93" in nude.rationale
    borderline = _baseline("", [""], [0.6])
    assert borderline.category == "sexual" and borderline.confidence < nude.confidence
    assert _baseline("", ["GRAPHIC CONTENT\n血腥慎入"]).category == "violence_gore"
    assert _baseline("I want to kill myself").category == "self_harm"
    assert not _baseline("gorgeous sunset, Algore").violation
    gun = _baseline("出售仿真枪，货到付款")
    assert (gun.category, gun.severity) == ("illegal_goods", 3)
    assert _baseline("Lose 10 kg in 7 days with this tea").category == "false_advertising"
    assert len(_baseline("最好 " * 300).rationale) <= 200
    for harmless in ("I paid with WeChat payments", "Download WeChat Desktop", "nice tg channel",
                     "qq 12345 是我的分数", "Vitamin_C serum, my TV: samsung_55"):  # fmt: skip
        assert not _baseline(harmless).violation, harmless
    for solicitation in ("联系 V: fapiao_2024", "老师带单 VX wm_8899", "QQ群：12345", "DM me on Telegram @win_prize"):
        assert _baseline(solicitation).category == "fraud_spam", solicitation
    unseen = verdict_from_signals(load_rules(), "a photo", [""], [None], 1, missing=1)
    assert unseen.confidence == 0.3 and "not read yet" in unseen.rationale


def test_baseline_rules_file_is_checked(tmp_path: Path) -> None:
    bad = tmp_path / "rules.toml"
    rule = '[[rule]]\nid = "x"\ncategory = "{}"\nseverity = 1\nweight = 0.5\nquote = "q"\npatterns = ["{}"]\n'
    bad.write_text(rule.format("no_such", "a"))
    with pytest.raises(ConfigError, match="no_such"):
        load_rules(bad)
    bad.write_text(rule.format("other", "("))
    with pytest.raises(ConfigError, match="bad pattern"):
        load_rules(bad)
    edited = tmp_path / "edited.toml"
    edited.write_text(RULES_FILE.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    assert BaselineProvider(edited).prompt_version != BaselineProvider().prompt_version

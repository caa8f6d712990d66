"""review/inference/parsing.py: parsing model output into verdicts, on outputs written the way Qwen3-VL
answers (clean JSON, fenced, wrapped in prose, after a <think> block, cut off, off-taxonomy, out of
range, Chinese values, refusals). Each case checks the status, the verdict fields and the repair
notes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from review.inference.parsing import parse
from review.inference.schema import MAX_RATIONALE, ModelAnswer, verdict_json_schema
from review.policy import load_policy

OUTPUTS = Path(__file__).parent / "data" / "model_outputs"


def _parse(name: str):
    return parse((OUTPUTS / name).read_text(encoding="utf-8"))


def test_clean_json_is_ok() -> None:
    result = _parse("good_fire.txt")
    assert result.status == "ok" and result.notes == []
    v = result.verdict
    assert v is not None
    assert (v.violation, v.category, v.severity, v.confidence) == (True, "misinformation", 1, 0.78)
    assert v.image_text_consistency.label == "mismatch"
    assert v.ocr_text == "岁月静好"


@pytest.mark.parametrize(
    ("name", "category", "note"),
    [
        ("fenced_ad.txt", "false_advertising", "code fence"),
        ("prose_wechat.txt", "fraud_spam", "surrounding text"),
        ("think_block.txt", "fraud_spam", "<think>"),
    ],
)
def test_json_is_found_inside_wrappers(name: str, category: str, note: str) -> None:
    result = _parse(name)
    assert result.status == "repaired"
    assert result.verdict is not None and result.verdict.category == category
    assert any(note in n for n in result.notes), result.notes


def test_fenced_output_keeps_multiline_ocr() -> None:
    v = _parse("fenced_ad.txt").verdict
    assert v is not None
    assert v.ocr_text.splitlines() == ["全网最好的美白面霜", "100%有效 · 7天见效", "限时 ¥199 原价¥999"]


def test_unknown_category_goes_to_other_and_is_flagged() -> None:
    result = _parse("wrong_category.txt")
    assert result.status == "repaired"
    assert result.verdict is not None and result.verdict.category == "other" and result.verdict.violation
    assert "unknown category 'job_scam' mapped to 'other'" in result.notes


def test_category_names_map_to_ids() -> None:
    result = _parse("category_name.txt")
    assert result.verdict is not None and result.verdict.category == "false_advertising"
    assert any("mapped to 'false_advertising'" in n for n in result.notes)


def test_out_of_range_and_loose_types_are_repaired() -> None:
    result = _parse("out_of_range.txt")
    v = result.verdict
    assert result.status == "repaired" and v is not None
    assert v.violation is True
    assert v.category == "false_advertising"
    assert v.severity == 3 and v.confidence == pytest.approx(0.92)
    assert v.image_text_consistency.label == "consistent"
    assert v.sentiment == "positive"
    assert v.tags == ["weight loss", "miracle claim"]
    notes = " | ".join(result.notes)
    for expected in ("severity 5 clamped", "confidence 92 read as a percentage", "ignored unknown fields: language"):
        assert expected in notes


def test_chinese_values_are_understood() -> None:
    result = _parse("chinese_values.txt")
    v = result.verdict
    assert v is not None
    assert (v.violation, v.category, v.severity, v.confidence) == (True, "violence_gore", 2, 0.6)
    assert v.sentiment == "negative" and v.image_text_consistency.label == "consistent"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated.txt", "cut off by the token limit"),
        ("refusal.txt", "no JSON object"),
        ("empty.txt", "empty"),
        ("missing_confidence.txt", "confidence None is not a number"),
    ],
)
def test_unusable_outputs_fail_with_a_reason(name: str, reason: str) -> None:
    result = _parse(name)
    assert result.status == "failed" and result.verdict is None
    assert result.error is not None and reason in result.error


def test_long_strings_are_cut_and_flagged() -> None:
    text = (
        (OUTPUTS / "good_fire.txt")
        .read_text(encoding="utf-8")
        .replace('"rationale": "', '"rationale": "' + "x" * 300, 1)
    )
    result = parse(text)
    assert result.verdict is not None and len(result.verdict.rationale) == MAX_RATIONALE
    assert f"rationale cut to {MAX_RATIONALE} characters" in result.notes


def test_violation_and_category_are_made_consistent() -> None:
    result = parse('{"violation": true, "category": "none", "confidence": 0.7}')
    assert result.verdict is not None and result.verdict.category == "other"
    result = parse('{"category": "sexual", "confidence": 0.7}')
    assert result.verdict is not None and result.verdict.violation is True
    assert parse('{"description": "x", "confidence": 0.7}').error == "neither violation nor category is given"
    assert parse(None).status == "failed"


def test_schema_lists_the_policy_categories_and_matches_the_model() -> None:
    policy = load_policy()
    schema = verdict_json_schema(policy)
    assert schema["properties"]["category"]["enum"] == policy.ids
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(ModelAnswer.model_fields)
    assert "title" not in schema["properties"]["category"]

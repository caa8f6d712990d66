"""review/policy.py: the policy taxonomy in prompts/policy.toml: complete, consistent (ids, and the keys that pick
categories on the review pages), reloaded when edited."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from review.errors import ConfigError
from review.policy import POLICY_FILE, RESERVED_KEYS, load_policy

REQUIRED = {
    "none", "sexual", "violence_gore", "hate_harassment", "self_harm", "illegal_goods", "fraud_spam",
    "false_advertising", "misinformation", "minors_safety", "privacy_pii", "ip_infringement", "other",
}  # fmt: skip


def test_shipped_taxonomy_is_complete() -> None:
    policy = load_policy()
    assert set(policy.ids) == REQUIRED
    assert len(policy.digest) == 64
    for category in policy.category:
        assert category.name_zh and category.name_en and category.definition and category.severity
    blurred = {c.id for c in policy.category if c.blur}
    assert {"sexual", "violence_gore", "self_harm", "minors_safety"} <= blurred
    assert "none" not in blurred
    assert policy.get("fraud_spam").name_zh == "诈骗与引流"
    with pytest.raises(KeyError):
        policy.get("nope")


def test_every_category_has_its_own_key() -> None:
    policy = load_policy()
    keys = [c.key for c in policy.category]
    assert len(set(keys)) == len(keys) and not set(keys) & RESERVED_KEYS
    assert all(len(k) == 1 and (k.isdigit() or k.islower()) for k in keys)
    assert policy.get("none").key == "0" and policy.get("fraud_spam").key == "6"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('key = "6"', 'key = "5"', "'illegal_goods' and 'fraud_spam' have the same key '5'"),
        ('key = "6"', 'key = "o"', "key 'o' is a shortcut of the Review page"),  # O is overturn
        ('key = "6"', 'key = "r"', "key 'r' is a shortcut"),  # Streamlit's rerun
        ('key = "6"', 'key = "66"', "must be one digit or lowercase letter"),
        ('key = "6"', 'key = "F"', "must be one digit or lowercase letter"),
        ('key = "6"', 'key = "٦"', "must be one digit or lowercase letter"),  # an Arabic-Indic six
        ('key = "6"\n', "", r"category\.6\.key\s+Field required"),  # every category needs one
    ],
)
def test_bad_category_keys_are_refused(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = tmp_path / "policy.toml"
    text = POLICY_FILE.read_text(encoding="utf-8")
    assert text.count(old) == 1
    path.write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_policy(path)


def test_edits_are_picked_up_and_bad_files_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    text = POLICY_FILE.read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    first = load_policy(path)
    path.write_text(text.replace('name_en = "Fraud, scam and spam"', 'name_en = "Scams"'), encoding="utf-8")
    os.utime(path, ns=(1, 2))  # a different mtime, whatever the clock's resolution
    second = load_policy(path)
    assert second.get("fraud_spam").name_en == "Scams" and second.digest != first.digest

    path.write_text(text.replace('id = "other"', 'id = "none"'), encoding="utf-8")
    with pytest.raises(ConfigError, match="unique"):
        load_policy(path)
    path.write_text(text.replace('id = "other"', 'id = "misc"'), encoding="utf-8")
    with pytest.raises(ConfigError, match="'other'"):
        load_policy(path)
    path.write_text("version = ", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_policy(path)
    with pytest.raises(ConfigError, match="not found"):
        load_policy(tmp_path / "missing.toml")


def test_each_label_carries_the_action_its_category_and_severity_call_for() -> None:
    policy = load_policy()
    assert policy.action_for(False, "sexual", 3) == "none"  # no violation: nothing to do, whatever the rest
    assert policy.action_for(True, "none", 0) == "none"
    assert [policy.action_for(True, "sexual", s) for s in (1, 2, 3)] == ["restrict", "remove", "remove"]
    assert [policy.action_for(True, "misinformation", s) for s in (1, 2, 3)] == ["label", "label", "remove"]
    assert policy.action_for(True, "no_such_category", 2) == policy.action_for(True, "other", 2) == "restrict"
    assert all(c.action in ("none", "label", "restrict", "remove") for c in policy.category)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('action = "none"', 'action = "remove"', "'none' must have action"),
        ('action = "none"\n', "", r"category\.0\.action\s+Field required"),  # no default guesses an action
        ('action = "restrict"', 'action = "ban"', "Input should be 'none', 'label', 'restrict' or 'remove'"),
        ('action_by_severity = { "3" = "remove" }', 'action_by_severity = { "high" = "remove" }', "not \\['high'\\]"),
    ],
)
def test_bad_actions_are_refused(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = tmp_path / "policy.toml"
    text = POLICY_FILE.read_text(encoding="utf-8")
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_policy(path)


def test_editing_what_the_model_does_not_read_keeps_the_prompt_version(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    text = POLICY_FILE.read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    before = load_policy(path).digest
    edited = text.replace('action = "restrict"', 'action = "remove"', 1).replace("blur = true", "blur = false", 1)
    path.write_text(edited.replace('key = "p"', 'key = "q"'), encoding="utf-8")
    os.utime(path, ns=(3, 4))
    assert load_policy(path).digest == before == load_policy().digest

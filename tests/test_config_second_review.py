"""review/config.py, the second-review settings: the share drawn and whether the verdict is hidden,
from the environment and the config file, refused when out of range or unreadable, and
``settings_env`` (the settings a worker process is started with) round-tripping every setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from review.config import Settings, load_settings, settings_env
from review.errors import ConfigError


@pytest.fixture
def no_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory without a review.toml (load_settings reads ./review.toml)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_second_review_settings_are_parsed(no_config_file: Path) -> None:
    default = load_settings({})
    assert (default.second_review_share, default.second_review_hide_verdict) == (0.1, False)
    got = load_settings({"SECOND_REVIEW_SHARE": "0.25", "SECOND_REVIEW_HIDE_VERDICT": "yes"})
    assert (got.second_review_share, got.second_review_hide_verdict) == (0.25, True)
    for text, value in (("0", 0.0), ("1", 1.0), ("1.0", 1.0), (" 0.5 ", 0.5)):
        assert load_settings({"SECOND_REVIEW_SHARE": text}).second_review_share == value
    for text, value in (("true", True), ("ON", True), ("1", True), ("false", False), ("no", False), ("0", False)):
        assert load_settings({"SECOND_REVIEW_HIDE_VERDICT": text}).second_review_hide_verdict is value
    config = no_config_file / "desk.toml"
    config.write_text("second_review_share = 0.3\nsecond_review_hide_verdict = true\n", encoding="utf-8")
    from_file = load_settings({"REVIEW_CONFIG": str(config)})
    assert (from_file.second_review_share, from_file.second_review_hide_verdict) == (0.3, True)
    env_wins = load_settings({"REVIEW_CONFIG": str(config), "SECOND_REVIEW_SHARE": "0.05"})
    assert env_wins.second_review_share == 0.05 and env_wins.second_review_hide_verdict is True


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("SECOND_REVIEW_SHARE", "1.5", "between 0 and 1"),
        ("SECOND_REVIEW_SHARE", "-0.1", "between 0 and 1"),
        ("SECOND_REVIEW_SHARE", "nan", "between 0 and 1"),
        ("SECOND_REVIEW_SHARE", "inf", "between 0 and 1"),
        ("SECOND_REVIEW_SHARE", "10%", "must be a number"),
        ("SECOND_REVIEW_SHARE", "a tenth", "must be a number"),
        ("SECOND_REVIEW_HIDE_VERDICT", "maybe", "must be true or false"),
        ("SECOND_REVIEW_HIDE_VERDICT", "2", "must be true or false"),
    ],
)
def test_second_review_settings_are_refused(no_config_file: Path, var: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({var: value})


def test_a_share_out_of_range_in_the_config_file_is_refused(no_config_file: Path) -> None:
    config = no_config_file / "desk.toml"
    config.write_text("second_review_share = 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="between 0 and 1"):
        load_settings({"REVIEW_CONFIG": str(config)})
    config.write_text('second_review_hide_verdict = "sometimes"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="true or false"):
        load_settings({"REVIEW_CONFIG": str(config)})


def test_settings_env_round_trips(no_config_file: Path, tmp_path: Path) -> None:
    assert load_settings(settings_env(Settings())) == Settings()
    custom = Settings(
        database_url=f"sqlite:///{tmp_path / 'other.db'}",
        media_dir=tmp_path / "media store",
        max_image_pixels=12_345_678,
        max_image_bytes=1_000_000,
        max_text_chars=5000,
        thumbnail_size=200,
        provider="openai",
        model="some/model-7B",
        model_base_url="http://127.0.0.1:8000/v1",
        model_max_pixels=200_704,
        second_review_share=0.35,
        second_review_hide_verdict=True,
    )
    env = settings_env(custom)
    assert env["SECOND_REVIEW_SHARE"] == "0.35" and env["SECOND_REVIEW_HIDE_VERDICT"] == "true"
    assert load_settings(env) == custom
    for share in (0.0, 1.0, 1 / 3, 0.1 + 0.2):
        again = Settings(second_review_share=share)
        assert load_settings(settings_env(again)) == again

"""review/config.py, settings: defaults, TOML file, environment overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from review.config import Settings, load_settings
from review.errors import ConfigError


def test_defaults_live_under_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    assert settings.database_url == "sqlite:///data/review.db"
    assert settings.media_dir == Path("data/media")


def test_toml_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "review.toml").write_text(
        'database_url = "sqlite:///x.db"\nmedia_dir = "/srv/media"\nmax_text_chars = 500\n', encoding="utf-8"
    )
    settings = load_settings({})
    assert (settings.database_url, settings.media_dir, settings.max_text_chars) == (
        "sqlite:///x.db",
        Path("/srv/media"),
        500,
    )
    settings = load_settings({"DATABASE_URL": "postgresql://h/db", "MAX_IMAGE_PIXELS": "1_000_000"})
    assert settings.database_url == "postgresql://h/db"
    assert settings.max_image_pixels == 1_000_000
    assert settings.max_text_chars == 500  # still from the file


def test_bad_settings_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="MAX_TEXT_CHARS|max_text_chars"):
        load_settings({"MAX_TEXT_CHARS": "lots"})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({"REVIEW_CONFIG": str(tmp_path / "missing.toml")})
    (tmp_path / "review.toml").write_text("colour = 'blue'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        load_settings({})
    (tmp_path / "review.toml").write_text("database_url = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read settings file"):
        load_settings({})


def test_with_overrides_coerces() -> None:
    assert Settings().with_overrides(thumbnail_size="128").thumbnail_size == 128


def test_trusted_proxy_header_is_off_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sign-in throttling takes the client from a proxy's header only when an operator names it
    (a client that reaches the app directly could write the header itself)."""
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).trusted_proxy_header == ""
    assert load_settings({"TRUSTED_PROXY_HEADER": " X-Forwarded-For "}).trusted_proxy_header == "X-Forwarded-For"
    (tmp_path / "review.toml").write_text('trusted_proxy_header = "X-Real-IP"\n', encoding="utf-8")
    assert load_settings({}).trusted_proxy_header == "X-Real-IP"
    for bad in ("X-Forwarded-For: 1.2.3.4", "X Forwarded", "x" * 65):
        with pytest.raises(ConfigError, match="trusted_proxy_header must be a header name"):
            load_settings({"TRUSTED_PROXY_HEADER": bad})

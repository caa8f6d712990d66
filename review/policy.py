"""The policy taxonomy from ``prompts/policy.toml``: categories, their names, blur flags and the
key that picks each one on the review pages.

One place for this fact: prompts, pages, metrics and exports all ask :func:`load_policy`.
"""

from __future__ import annotations

import hashlib
import string
import tomllib
from functools import cache
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, model_validator

from review.errors import ConfigError

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"
POLICY_FILE = PROMPTS_DIR / "policy.toml"
NO_VIOLATION = "none"
FALLBACK = "other"
# Single keys the Review page already uses (pages/review.py: N next, Y confirm, O overturn,
# E escalate, S skip, H history, U undo, V reveal) and the two Streamlit keeps for itself (C, R):
# a category's key may be none of them. tests/test_app_review.py checks this list against the page.
RESERVED_KEYS = frozenset("nyoeshuvcr")


class Category(BaseModel):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")
    key: str  # the keyboard shortcut that picks this category: one digit or lowercase letter
    name_en: str
    name_zh: str
    definition: str
    severity: str  # guidance on the 0-3 scale for this category
    blur: bool = False  # blur this category's media until a moderator reveals it

    def label(self) -> str:
        return f"{self.name_zh} / {self.name_en}"


class Policy(BaseModel):
    version: int
    category: list[Category]
    digest: str = ""  # sha256 of the file: part of every prompt version

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        ids = [c.id for c in self.category]
        if len(ids) != len(set(ids)):
            raise ValueError("category ids must be unique")
        keys: dict[str, str] = {}
        for c in self.category:
            if len(c.key) != 1 or c.key not in string.digits + string.ascii_lowercase:
                raise ValueError(f"category {c.id!r}: key {c.key!r} must be one digit or lowercase letter")
            if c.key in RESERVED_KEYS:
                taken = " ".join(sorted(RESERVED_KEYS))
                raise ValueError(f"category {c.id!r}: key {c.key!r} is a shortcut of the Review page ({taken})")
            if c.key in keys:
                raise ValueError(f"categories {keys[c.key]!r} and {c.id!r} have the same key {c.key!r}")
            keys[c.key] = c.id
        for required in (NO_VIOLATION, FALLBACK):
            if required not in ids:
                raise ValueError(f"the taxonomy must define the category {required!r}")
        return self

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.category]

    def get(self, category_id: str) -> Category:
        for c in self.category:
            if c.id == category_id:
                return c
        raise KeyError(category_id)


def load_policy(path: Path = POLICY_FILE) -> Policy:
    """The taxonomy, re-read when the file changes (operators edit it while the app runs)."""
    path = path.resolve()
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise ConfigError(f"policy taxonomy not found at {path}") from None
    return _load(path, mtime)


@cache
def _load(path: Path, _mtime_ns: int) -> Policy:
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
        policy = Policy.model_validate(data)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"policy taxonomy {path} is not valid TOML: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(f"policy taxonomy {path} is invalid: {exc}") from None
    return policy.model_copy(update={"digest": hashlib.sha256(raw).hexdigest()})

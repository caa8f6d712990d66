"""The policy taxonomy from ``prompts/policy.toml``: categories, their names, blur flags, the
key that picks each one on the review pages, and the action the platform should take on a post
a moderator put in it (``Policy.action_for``; every decision the API and the webhooks carry has it).

One place for this fact: prompts, pages, metrics and exports all ask :func:`load_policy`.
"""

from __future__ import annotations

import hashlib
import json
import string
import tomllib
from functools import cache
from pathlib import Path
from typing import Literal

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
# What the platform should do with a post, mildest first: nothing, a warning label, reduced reach
# (or age gate), take it down.
PolicyAction = Literal["none", "label", "restrict", "remove"]
ACTIONS: tuple[PolicyAction, ...] = ("none", "label", "restrict", "remove")
# The fields of a category the model reads (the prompts' text and the answer's schema): the
# policy's digest, part of every prompt version, covers these and nothing else, so that editing a
# key, a blur flag or an action does not start a new prompt version.
MODEL_FIELDS = ("id", "name_en", "name_zh", "definition", "severity")


class Category(BaseModel):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")
    key: str  # the keyboard shortcut that picks this category: one digit or lowercase letter
    name_en: str
    name_zh: str
    definition: str
    severity: str  # guidance on the 0-3 scale for this category
    blur: bool = False  # blur this category's media until a moderator reveals it
    action: PolicyAction  # what the platform should do with a post in this category: no default, an operator says
    # per severity ("1".."3"), where it differs from ``action``
    action_by_severity: dict[str, PolicyAction] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _severities(self) -> Category:
        wrong = sorted(set(self.action_by_severity) - {"0", "1", "2", "3"})
        if wrong:
            raise ValueError(f'category {self.id!r}: action_by_severity keys are severities "0"-"3", not {wrong}')
        return self

    def label(self) -> str:
        return f"{self.name_zh} / {self.name_en}"


class Policy(BaseModel):
    version: int
    category: list[Category]
    digest: str = ""  # sha256 of what the model reads (_model_digest): part of every prompt version

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
        none = self.get(NO_VIOLATION)
        if none.action != "none" or any(a != "none" for a in none.action_by_severity.values()):
            raise ValueError(f'category {NO_VIOLATION!r} must have action = "none"')
        return self

    def action_for(self, violation: bool | None, category: str | None, severity: int | None) -> PolicyAction:
        """The platform's action for a moderator's label: ``none`` for no violation; else the
        category's action at that severity (an unknown category: the fallback's)."""
        if not violation or category is None:
            return "none"
        try:
            chosen = self.get(category)
        except KeyError:
            chosen = self.get(FALLBACK)
        key = str(severity) if severity is not None else ""
        return chosen.action_by_severity.get(key, chosen.action)

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
    return policy.model_copy(update={"digest": _model_digest(policy)})


def _model_digest(policy: Policy) -> str:
    """sha256 of what the model reads of the taxonomy (its version and :data:`MODEL_FIELDS`)."""
    facts = {"version": policy.version, "category": [{f: getattr(c, f) for f in MODEL_FIELDS} for c in policy.category]}
    return hashlib.sha256(json.dumps(facts, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()

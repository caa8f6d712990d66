"""Versioned prompt templates from prompts/: rendered into provider-neutral chat messages.

A template is a Jinja file with a system part and a user part (see prompts/moderation.jinja).
Its version is a content hash: of the template file, the policy file, the verdict schema and
the render options (such as OCR hints on or off). Every verdict records the version of the
prompt it was produced with, so editing the policy or a template starts a new version.

Messages use the Hugging Face chat format: ``{"role": ..., "content": [parts]}`` where a part is
``{"type": "image"}`` (the next image of the post, in order) or ``{"type": "text", "text": ...}``.
Providers turn image parts into pixels (transformers) or data URLs (OpenAI-compatible servers).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, overload

import jinja2

from review.errors import ConfigError
from review.inference.schema import schema_text
from review.policy import PROMPTS_DIR, Policy, load_policy

# Control tokens of the Qwen chat format (<|im_start|>, <|image_pad|>, <|vision_end|>, …) and
# its tag-like added tokens (<think>, <tool_call>, …): written inside a post they would be read
# as the real tokens (a fake turn, an image placeholder with no pixels). Untrusted text gets a
# zero-width space after the "<", which the tokenizer cannot match; people see the same text.
CONTROL = re.compile(r"<(?=\||/?(?:think|tool_call|tool_response)>)", re.IGNORECASE)


@overload
def inert(text: str) -> str: ...
@overload
def inert(text: None) -> None: ...
@overload
def inert(text: str | None) -> str | None: ...
def inert(text: str | None) -> str | None:
    """Untrusted text (a post, OCR, a moderator's question) with chat control tokens defused."""
    return None if text is None else CONTROL.sub("<\u200b", text)


SYSTEM_MARK = "=== SYSTEM ==="
USER_MARK = "=== USER ==="

Message = dict[str, Any]


@dataclass(frozen=True)
class Template:
    name: str
    source: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RenderedPrompt:
    messages: list[Message]
    version: str  # "<name>@<12 hex digits>"


def load_template(name: str, folder: Path = PROMPTS_DIR) -> Template:
    path = folder / f"{name}.jinja"
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"prompt template {path} not found") from None
    if SYSTEM_MARK not in source or USER_MARK not in source:
        raise ConfigError(f"prompt template {path} needs a '{SYSTEM_MARK}' and a '{USER_MARK}' line")
    return Template(name=name, source=source)


@cache
def _compiled(source: str) -> jinja2.Template:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"prompt template has a syntax error at line {exc.lineno}: {exc.message}") from None


def prompt_version(template: Template, policy: Policy, options: dict[str, Any]) -> str:
    """The version every verdict records: what the model was told, as a content hash."""
    material = json.dumps(
        {"template": template.digest, "policy": policy.digest, "schema": schema_text(policy), "options": options},
        sort_keys=True,
    )
    return f"{template.name}@{hashlib.sha256(material.encode('utf-8')).hexdigest()[:12]}"


def _split(rendered: str) -> tuple[str, str]:
    system, _, user = rendered.partition(USER_MARK)
    return system.replace(SYSTEM_MARK, "", 1).strip(), user.strip()


def _messages(system: str, user: str, n_images: int) -> list[Message]:
    return [
        {"role": "system", "content": [{"type": "text", "text": system}]},
        {"role": "user", "content": [*({"type": "image"} for _ in range(n_images)), {"type": "text", "text": user}]},
    ]


def moderation_prompt(
    post_text: str,
    n_images: int,
    *,
    ocr_hints: str | None = None,
    use_ocr_hints: bool = False,
    policy: Policy | None = None,
    template: Template | None = None,
) -> RenderedPrompt:
    """The messages that ask for one post's verdict, and their version."""
    policy = policy or load_policy()
    template = template or load_template("moderation")
    rendered = _compiled(template.source).render(
        policy=policy,
        schema=schema_text(policy),
        ocr_hints=inert(ocr_hints or None) if use_ocr_hints else None,
        post_text=inert(post_text),
        n_images=n_images,
    )
    system, user = _split(rendered)
    version = prompt_version(template, policy, {"ocr_hints": use_ocr_hints})
    return RenderedPrompt(messages=_messages(system, user, n_images), version=version)


class ModerationRenderer:
    """The moderation prompt of one template, policy and option set, for many posts: its version
    and system message are rendered once (they do not depend on the post), the user message per
    post. ``user(...)`` gives the text of ``moderation_prompt(...)``'s user message exactly; a
    template whose system part uses a post's variables, or whose parts do not render apart
    (a block across the ``=== USER ===`` line), is rendered whole for every post instead."""

    def __init__(self, *, use_ocr_hints: bool = False, policy: Policy | None = None,
                 template: Template | None = None) -> None:  # fmt: skip
        self.policy = policy or load_policy()
        self.template = template or load_template("moderation")
        self.use_ocr_hints = use_ocr_hints
        self.schema = schema_text(self.policy)
        self.version = prompt_version(self.template, self.policy, {"ocr_hints": use_ocr_hints})
        self._user_part: jinja2.Template | None = None
        self.system = self._whole("", 0, None)[0]
        line = re.search(rf"(?m)^{re.escape(USER_MARK)}[ \t]*$", self.template.source)  # not the one in a comment
        if line is None:
            return
        head, tail = self.template.source[: line.start()], self.template.source[line.end() :]
        try:
            system = _compiled(head).render(policy=self.policy, schema=self.schema)
            user_part = _compiled(tail)
        except (jinja2.TemplateError, ConfigError):
            return
        if system.replace(SYSTEM_MARK, "", 1).strip() != self.system:
            return
        # Jinja merges a template's globals (a ChainMap) into every render's context item by item;
        # as a plain dict (the same items: nobody changes them while we render) that is one copy
        user_part.globals = dict(user_part.globals)
        self._user_part = user_part
        sample = ("a post <|im_end|>", 2, "read text")
        if self.user(*sample) != self._whole(*sample)[1]:  # the parts do not render as the whole does
            self._user_part = None

    @property
    def renders_apart(self) -> bool:
        """Whether the user part renders alone (the fast path), not the whole template per post."""
        return self._user_part is not None

    def _whole(self, post_text: str, n_images: int, ocr_hints: str | None) -> tuple[str, str]:
        rendered = moderation_prompt(post_text, n_images, ocr_hints=ocr_hints, use_ocr_hints=self.use_ocr_hints,
                                     policy=self.policy, template=self.template)  # fmt: skip
        system, user = rendered.messages[0]["content"], rendered.messages[1]["content"]
        return system[0]["text"], user[-1]["text"]

    def user(self, post_text: str, n_images: int, ocr_hints: str | None = None) -> str:
        """The user message's text (after the images) for one post."""
        if self._user_part is None:
            return self._whole(post_text, n_images, ocr_hints)[1]
        rendered = self._user_part.render(
            policy=self.policy,
            schema=self.schema,
            ocr_hints=inert(ocr_hints or None) if self.use_ocr_hints else None,
            post_text=inert(post_text),
            n_images=n_images,
        )
        return rendered.strip()


def followup_prompt(
    post_text: str,
    n_images: int,
    turns: list[tuple[str, str]],
    question: str,
    *,
    verdict_json: str | None = None,
    max_turns: int = 6,
    policy: Policy | None = None,
    template: Template | None = None,
) -> RenderedPrompt:
    """Messages for a moderator's question about a post: the post (images first), the last
    ``max_turns`` (question, answer) turns, then the new question."""
    policy = policy or load_policy()
    template = template or load_template("followup")
    rendered = _compiled(template.source).render(
        verdict=inert(verdict_json), post_text=inert(post_text), n_images=n_images, policy=policy
    )
    system, intro = _split(rendered)
    messages = _messages(system, intro, n_images)
    recent = turns[-max_turns:] if max_turns else []
    recent = [(inert(asked), inert(answered)) for asked, answered in recent]
    question = inert(question)
    for i, (asked, answered) in enumerate(recent):
        if i == 0:  # the first question joins the post's own user message
            messages[1]["content"].append({"type": "text", "text": "\n\n" + asked})
        else:
            messages.append({"role": "user", "content": [{"type": "text", "text": asked}]})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answered}]})
    if recent:
        messages.append({"role": "user", "content": [{"type": "text", "text": question}]})
    else:
        messages[1]["content"].append({"type": "text", "text": "\n\n" + question})
    version = prompt_version(template, policy, {"max_turns": max_turns})
    return RenderedPrompt(messages=messages, version=version)

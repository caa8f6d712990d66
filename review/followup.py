"""Follow-up questions: a moderator asks the model about the post on screen.

:func:`load_post` gathers what the model needs once per conversation (the post's text, its
images and the verdict on screen); :func:`ask` answers one question with the last few turns of
the conversation, through the provider's :meth:`~review.inference.base.Provider.chat`. The
transformers provider keeps the conversation's image prefix cached, so the vision tower runs
once per conversation, not once per question. The review page keeps the turns; this module
keeps no state of its own.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image
from sqlalchemy.orm import Session

from db.models import Verdict
from review.config import Settings
from review.errors import ReviewError
from review.inference.base import ModelRequest, Provider
from review.inputs import load_inputs
from review.media import load_normalised
from review.prompts import followup_prompt
from review.verdicts import current_verdict, is_usable
from review.visibility import Viewer, sights

DEFAULT_MAX_TURNS = 6  # earlier turns than this are left out of the prompt
DEFAULT_MAX_NEW_TOKENS = 512
MAX_QUESTION_CHARS = 2000


@dataclass
class PostContext:
    post_id: int
    text: str
    images: list[Image.Image]
    verdict_json: str | None  # the verdict the moderator sees, as the model is shown it


@dataclass
class Turn:
    question: str
    answer: str
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    latency_ms: float | None = None
    prompt_version: str | None = None
    error: str | None = None  # set when the model gave no answer


VERDICT_FIELDS = ("violation", "category", "severity", "confidence", "image_text_consistency",
                  "consistency_reason", "sentiment", "tags", "ocr_text", "description", "rationale")  # fmt: skip


def verdict_summary(verdict: Verdict | None) -> str | None:
    """A verdict as the follow-up prompt shows it: the parsed fields only (never raw output)."""
    if verdict is None or not is_usable(verdict.parse_status):
        return None
    return json.dumps({f: getattr(verdict, f) for f in VERDICT_FIELDS}, ensure_ascii=False)


def load_post(
    session: Session, settings: Settings, viewer: Viewer, post_id: int, *, reviewing: bool = False
) -> PostContext:
    """What a conversation about ``post_id`` needs, with its current verdict unless ``viewer``
    may not see it (a blind second review: ``review.visibility``; ``reviewing``: the post under
    review on the viewer's review desk): then the model is not shown it either."""
    found = load_inputs(session, [post_id])
    if not found:
        raise ReviewError(f"there is no post {post_id}")
    post = found[0]
    images = [load_normalised(Path(settings.media_dir), m.path, settings.max_image_pixels) for m in post.media]
    hidden = sights(session, viewer, [post_id], reviewing=reviewing)[post_id].verdict_hidden
    verdict = None if hidden else current_verdict(session, post_id)
    return PostContext(post_id=post_id, text=post.text, images=images, verdict_json=verdict_summary(verdict))


def ask(
    provider: Provider,
    post: PostContext,
    turns: list[Turn],
    question: str,
    *,
    max_turns: int = DEFAULT_MAX_TURNS,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> Turn:
    """Answer ``question`` about ``post`` given the conversation so far. A model failure comes
    back as a turn with ``error`` set (and no answer), so the conversation can go on."""
    question = question.strip()
    if not question:
        raise ReviewError("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise ReviewError(f"the question is longer than {MAX_QUESTION_CHARS} characters")
    answered = [(t.question, t.answer) for t in turns if t.error is None]
    prompt = followup_prompt(
        post.text, len(post.images), answered, question, verdict_json=post.verdict_json, max_turns=max_turns
    )
    generation = provider.chat(ModelRequest(prompt, post.images, json_schema=None, max_new_tokens=max_new_tokens))
    return Turn(
        question=question,
        answer=(generation.text or "").strip(),
        latency_ms=generation.latency_ms,
        prompt_version=prompt.version,
        error=generation.error,
    )


def conversation_json(post: PostContext, turns: list[Turn], provider: Provider) -> str:
    """The conversation as a JSON document (for the review page's download button)."""
    return json.dumps(
        {
            "post_id": post.post_id,
            "provider": provider.name,
            "model_id": provider.model_id,
            "model_revision": provider.model_revision,
            "model_precision": provider.precision,
            "verdict_shown": json.loads(post.verdict_json) if post.verdict_json else None,
            "turns": [asdict(t) for t in turns],
        },
        ensure_ascii=False,
        indent=2,
    )

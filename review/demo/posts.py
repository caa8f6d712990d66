"""The demo posts: ``posts.toml`` read, and its pictures drawn, into ``DemoPost``s.

The file holds the posts as data (texts, authors, scenarios, the label a careful moderator
gives, and for each image the drawing and its parameters); this module turns a picture's
description into pixels with the drawings of ``drawings.py``. One random stream, seeded here,
feeds the drawings that take one, in file order, so every run draws the same pixels.
"""

from __future__ import annotations

import inspect
import random
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from PIL import Image

from review.demo import drawings

POSTS_FILE = Path(__file__).with_name("posts.toml")
SEED = 20261101  # of the random stream shared by the file's drawings

# The drawings a picture in posts.toml may name (its `draw`).
DRAWINGS: dict[str, Callable[..., Image.Image]] = {
    draw.__name__: draw
    for draw in (
        drawings.ad_card,
        drawings.beach_scene,
        drawings.cat_picture,
        drawings.crop_fraction,
        drawings.falling_chart,
        drawings.fire_scene,
        drawings.graphic_placeholder,
        drawings.long_screenshot,
        drawings.meme,
        drawings.product_photo,
        drawings.resized,
        drawings.storm_scene,
        drawings.with_caption_bar,
    )
}


@dataclass
class DemoPost:
    """One demo post; ``images`` holds (file name, picture, save options: ``format``, ``quality``)."""

    text: str
    author: str
    scenario: str
    intended: str  # what a careful moderator decides: a policy category, or "none"
    images: list[tuple[str, Image.Image, dict[str, Any]]] = field(default_factory=list)


@cache
def _posts_data() -> dict[str, Any]:
    with POSTS_FILE.open("rb") as f:
        return tomllib.load(f)


def intended_labels() -> tuple[str, ...]:
    """What a careful moderator decides for each demo post, in order, without drawing anything."""
    return tuple(entry["intended"] for entry in _posts_data()["post"])


def demo_posts() -> list[DemoPost]:
    """The demo posts of ``posts.toml``, in order, their pictures drawn."""
    data = _posts_data()
    rng = random.Random(SEED)
    shared: dict[str, Image.Image] = {}
    for name, picture in data["shared"].items():  # drawn first, in file order
        shared[name] = _draw(picture, rng, shared)
    return [
        DemoPost(
            entry["text"],
            entry["author"],
            entry["scenario"],
            entry["intended"],
            [
                (image["file"], _draw(image["picture"], rng, shared), _save_options(image))
                for image in entry.get("image", [])
            ],
        )
        for entry in data["post"]
    ]


def _draw(picture: str | dict[str, Any], rng: random.Random, shared: dict[str, Image.Image]) -> Image.Image:
    """A picture's pixels: a shared picture by name, or a drawing called with its parameters. A
    nested ``picture`` parameter is drawn first; a drawing that takes ``rng`` gets the shared
    stream, or its own when the description gives a ``seed``."""
    if isinstance(picture, str):
        return shared[picture]
    draw = DRAWINGS[picture["draw"]]
    params = {key: _plain(value) for key, value in picture.items() if key not in ("draw", "seed", "picture")}
    if "picture" in picture:
        params["picture"] = _draw(picture["picture"], rng, shared)
    if "rng" in inspect.signature(draw).parameters:
        params["rng"] = random.Random(picture["seed"]) if "seed" in picture else rng
    return draw(**params)


def _plain(value: Any) -> Any:
    """TOML arrays as the tuples the drawings take (colours, sizes, lines, rows)."""
    return tuple(_plain(v) for v in value) if isinstance(value, list) else value


def _save_options(image: dict[str, Any]) -> dict[str, Any]:
    return {key: image[key] for key in ("format", "quality") if key in image}

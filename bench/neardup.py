"""Near-duplicate clusters on edited copies: pairwise precision and recall, before and after issue 19.

    python bench/neardup.py [--seed 19] [--photos 60] [--templates 20]

A generated set (deterministic from the seed; no real photos are available offline): synthetic
"photos" (a sky and ground gradient, blurred shapes, grain, sometimes a sign with text), each with
copies edited as reposts edit them: colour filters (sepia, grayscale, warm and cool tints,
saturation up and down, contrast, brightness, fade, Instagram-like curves), crops (5-20 %),
text overlays, caption bars, re-encodes (JPEG quality 50-90, WebP, PNG), resizes, and a filter
followed by a crop and a re-encode. Beside them, unrelated look-alikes: pictures drawn on one
template (same layout, different colours and words, as the demo's ads are), which a colour check
must keep apart, and pictures that share a dominant colour but not a layout.

A second set holds the demo's ads (one template in a dozen colours) each with a copy per colour
filter: the hard case, where a filter can make one ad much like another.

Every image goes through `review.signals.runner.Clusters` (what the signals runner uses), in a
shuffled order, once with the colour check as it was before issue 19 (mean colour difference at
most 20 of 255) and once with today's (`review.signals.neardup.colours_agree`). Pairwise: recall
is the share of same-origin pairs that share a cluster, precision the share of pairs sharing a
cluster that share an origin. Per kind of edit: the share of copies in their original's cluster.

Prints one JSON object; docs/BENCHMARKS.md records a run.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter  # noqa: E402

from review.demo.drawings import ad_card, cjk_font  # noqa: E402
from review.demo.posts import POSTS_FILE  # noqa: E402
from review.media import colour_difference, perceptual_hash  # noqa: E402
from review.signals.neardup import colours_agree  # noqa: E402
from review.signals.runner import Clusters, ImageHashes  # noqa: E402

RGB = tuple[int, int, int]
Agree = Callable[[bytes, bytes], bool]
WORDS = ["BREAKING", "SHARK ON THE HIGHWAY", "NOT FAKE", "洪水", "快转发", "LIVE", "EXCLUSIVE", "RT PLS", "真的假的"]


def _colour(rng: random.Random) -> RGB:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def _gradient(size: tuple[int, int], top: RGB, bottom: RGB) -> Image.Image:
    w, h = size
    t = np.linspace(0.0, 1.0, h)[:, None]
    column = np.array(top, float)[None, :] * (1 - t) + np.array(bottom, float)[None, :] * t
    return Image.fromarray(np.repeat(column[:, None, :], w, axis=1).astype(np.uint8))


def photo(rng: random.Random) -> Image.Image:
    """A synthetic photo: sky and ground, soft shapes, grain; some with a sign that has words."""
    w, h = rng.choice([(640, 480), (480, 640), (600, 600), (800, 450), (720, 540)])
    horizon = rng.randrange(h // 3, 2 * h // 3)
    sky = _gradient((w, horizon), _colour(rng), _colour(rng))
    ground = _gradient((w, h - horizon), _colour(rng), _colour(rng))
    image = Image.new("RGB", (w, h))
    image.paste(sky, (0, 0))
    image.paste(ground, (0, horizon))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randrange(5, 14)):
        x, y = rng.randrange(-50, w), rng.randrange(h // 5, h)
        box = (x, y, x + rng.randrange(30, w // 2), y + rng.randrange(30, h // 2))
        kind = rng.random()
        if kind < 0.4:
            draw.ellipse(box, fill=_colour(rng))
        elif kind < 0.8:
            draw.rectangle(box, fill=_colour(rng))
        else:
            draw.polygon([(x, box[3]), ((x + box[2]) // 2, y), (box[2], box[3])], fill=_colour(rng))
    if rng.random() < 0.4:
        x, y = rng.randrange(w // 2), rng.randrange(h // 2)
        draw.rectangle((x, y, x + w // 3, y + h // 8), fill=_colour(rng))
        draw.text((x + 8, y + 4), rng.choice(WORDS), font=cjk_font(max(14, h // 18)), fill=_colour(rng))
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.8, 2.5)))
    grain = np.random.default_rng(rng.randrange(2**32)).normal(0, rng.uniform(2, 9), (h, w, 1))
    return Image.fromarray(np.clip(np.asarray(image, float) + grain, 0, 255).astype(np.uint8))


def template_family(rng: random.Random, members: int) -> list[Image.Image]:
    """Pictures drawn on one template with their own colours and words (an ad series): the same
    layout, so their perceptual hashes are a few bits apart, but unrelated pictures."""
    w, h = rng.choice([(720, 720), (640, 800), (800, 600)])
    shapes = [(rng.randrange(w // 2), rng.randrange(h // 3, h - h // 4), rng.randrange(80, w // 2)) for _ in range(2)]
    out = []
    for _ in range(members):
        image = _gradient((w, h), _colour(rng), _colour(rng))
        draw = ImageDraw.Draw(image)
        for x, y, size in shapes:
            draw.rounded_rectangle((x, y, x + size, y + size), radius=size // 5, fill=_colour(rng))
        words = [rng.choice(WORDS) for _ in range(2)]
        for i, line in enumerate(words):
            draw.text((w // 10, h // 14 + i * h // 9), line, font=cjk_font(h // 13), fill=_colour(rng))
        out.append(image.filter(ImageFilter.GaussianBlur(0.6)))
    return out


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def demo_ads() -> list[Image.Image]:
    """The demo's ads (``ad_card`` in review/demo/posts.toml): one template in a dozen colours,
    the pictures the colour check was made for."""
    data = tomllib.loads(POSTS_FILE.read_text(encoding="utf-8"))
    pictures = [*data["shared"].values(), *(i["picture"] for post in data["post"] for i in post.get("image", []))]
    return [
        ad_card(**{key: _tuples(value) for key, value in picture.items() if key != "draw"})
        for picture in pictures
        if isinstance(picture, dict) and picture.get("draw") == "ad_card"
    ]


def same_colour(rng: random.Random, base: RGB) -> Image.Image:
    """A picture dominated by ``base``, with its own layout."""
    w, h = rng.choice([(640, 480), (600, 600)])
    image = Image.new("RGB", (w, h), base)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randrange(3, 8)):
        x, y = rng.randrange(w), rng.randrange(h)
        shade = tuple(max(0, min(255, c + rng.randrange(-90, 90))) for c in base)
        draw.ellipse((x, y, x + rng.randrange(40, 250), y + rng.randrange(40, 250)), fill=shade)
    return image.filter(ImageFilter.GaussianBlur(1.5))


# ---------------------------------------------------------------------------------------------
# Edits


def _matrix(image: Image.Image, m: list[list[float]], offset: tuple[float, float, float] = (0, 0, 0)) -> Image.Image:
    a = np.asarray(image.convert("RGB"), float) @ np.array(m).T + np.array(offset)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _curves(image: Image.Image, points: dict[int, list[tuple[int, int]]]) -> Image.Image:
    """Per-channel tone curves through control points, as photo apps' filters are made."""
    lut: list[int] = []
    for channel in range(3):
        xs, ys = zip(*[(0, 0), *points.get(channel, []), (255, 255)], strict=True)
        lut += np.clip(np.interp(np.arange(256), xs, ys), 0, 255).astype(int).tolist()
    return image.convert("RGB").point(lut)


def _encoded(image: Image.Image, fmt: str, **options: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _crop(image: Image.Image, share: float, where: str) -> Image.Image:
    w, h = image.size
    dx, dy = round(w * share), round(h * share)
    boxes = {"centre": (dx // 2, dy // 2, w - dx + dx // 2, h - dy + dy // 2), "corner": (0, 0, w - dx, h - dy)}
    return image.crop(boxes[where])


def _overlay(image: Image.Image, rng: random.Random) -> Image.Image:
    out = image.copy()
    w, h = out.size
    draw = ImageDraw.Draw(out)
    text = rng.choice(WORDS)
    y = rng.choice([h // 20, h - h // 7])
    draw.text((w // 12 + 2, y + 2), text, font=cjk_font(h // 12), fill=(0, 0, 0))
    draw.text((w // 12, y), text, font=cjk_font(h // 12), fill=(255, 255, 255))
    return out


def _caption_bar(image: Image.Image, rng: random.Random) -> Image.Image:
    w, h = image.size
    bar = h // 6
    out = Image.new("RGB", (w, h + bar), "white")
    out.paste(image, (0, bar))
    ImageDraw.Draw(out).text((12, bar // 5), rng.choice(WORDS), font=cjk_font(bar // 2), fill="black")
    return out


SEPIA = [[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]]

FILTERS: dict[str, Callable[[Image.Image, random.Random], Image.Image]] = {
    "sepia": lambda im, rng: _matrix(im, SEPIA),
    "grayscale": lambda im, rng: im.convert("L").convert("RGB"),
    "warm tint": lambda im, rng: _matrix(im, [[1.12, 0, 0], [0, 1.02, 0], [0, 0, 0.82]], (8, 2, -6)),
    "cool tint": lambda im, rng: _matrix(im, [[0.85, 0, 0], [0, 1.0, 0], [0, 0, 1.15]], (-6, 2, 10)),
    "saturation up": lambda im, rng: ImageEnhance.Color(im).enhance(rng.uniform(1.4, 1.8)),
    "saturation down": lambda im, rng: ImageEnhance.Color(im).enhance(rng.uniform(0.3, 0.6)),
    "contrast up": lambda im, rng: ImageEnhance.Contrast(im).enhance(rng.uniform(1.25, 1.5)),
    "contrast down": lambda im, rng: ImageEnhance.Contrast(im).enhance(rng.uniform(0.6, 0.8)),
    "brighter": lambda im, rng: ImageEnhance.Brightness(im).enhance(rng.uniform(1.15, 1.35)),
    "darker": lambda im, rng: ImageEnhance.Brightness(im).enhance(rng.uniform(0.65, 0.85)),
    "fade": lambda im, rng: _curves(im, {c: [(0, 40), (255, 225)] for c in range(3)}),
    "curves: warm lift": lambda im, rng: _curves(im, {0: [(64, 80), (192, 215)], 2: [(64, 50), (192, 180)]}),
    "curves: cool shadows": lambda im, rng: _curves(im, {0: [(64, 52)], 1: [(128, 135)], 2: [(64, 84), (192, 200)]}),
    "curves: S contrast": lambda im, rng: _curves(im, {c: [(64, 48), (192, 210)] for c in range(3)}),
}

EDITS: dict[str, Callable[[Image.Image, random.Random], Image.Image]] = {
    **{f"filter: {name}": edit for name, edit in FILTERS.items()},
    "crop 5 % centred": lambda im, rng: _crop(im, 0.05, "centre"),
    "crop 5 % at a corner": lambda im, rng: _crop(im, 0.05, "corner"),
    "crop 10-20 % centred": lambda im, rng: _crop(im, rng.uniform(0.1, 0.2), "centre"),
    "text overlay": _overlay,
    "caption bar": _caption_bar,
    "JPEG quality 50-90": lambda im, rng: _encoded(im, "JPEG", quality=rng.randrange(50, 91)),
    "WebP": lambda im, rng: _encoded(im, "WEBP", quality=80),
    "PNG": lambda im, rng: _encoded(im, "PNG"),
    "resized 40-80 %": lambda im, rng: im.resize(
        (round(im.width * (s := rng.uniform(0.4, 0.8))), round(im.height * s)), Image.Resampling.BICUBIC
    ),
    "filter + crop 5 % + JPEG": lambda im, rng: _encoded(
        _crop(FILTERS[rng.choice(list(FILTERS))](im, rng), 0.05, "centre"), "JPEG", quality=rng.randrange(60, 91)
    ),
}


LOOKALIKES = ("template look-alike", "same colour", "demo ad")


@dataclass(frozen=True)
class Item:
    origin: str  # images of one origin are copies of one picture
    kind: str  # "original", an edit's name, or an unrelated picture's: LOOKALIKES
    hashes: ImageHashes


def image_hashes(image: Image.Image) -> ImageHashes:
    return ImageHashes.of_image(perceptual_hash(image), image)


def generated_set(
    seed: int, photos: int, templates: int, edits: list[str] | None = None, demo: bool = True
) -> list[Item]:
    """Originals with one copy per edit (``edits``: all of :data:`EDITS` when None), template
    families of 3 look-alikes each, as many pairs of same-colour pictures, and (``demo``) the
    demo's ads; shuffled."""
    rng = random.Random(seed)
    items: list[Item] = []
    for p in range(photos):
        original = photo(rng)
        items.append(Item(f"photo {p}", "original", image_hashes(original)))
        for name in edits or list(EDITS):
            items.append(Item(f"photo {p}", name, image_hashes(EDITS[name](original, rng))))
    for t in range(templates):
        for m, image in enumerate(template_family(rng, 3)):
            items.append(Item(f"template {t}.{m}", "template look-alike", image_hashes(image)))
        base = _colour(rng)
        for m in range(2):
            items.append(Item(f"colour {t}.{m}", "same colour", image_hashes(same_colour(rng, base))))
    if demo:
        items += [Item(f"demo ad {i}", "demo ad", image_hashes(image)) for i, image in enumerate(demo_ads())]
    rng.shuffle(items)
    return items


def filtered_demo_ads(seed: int) -> list[Item]:
    """The demo's ads each with one copy per colour filter, shuffled: the hard case, since a
    filter can turn one ad of the template into much what another is."""
    rng = random.Random(seed)
    items: list[Item] = []
    for i, ad in enumerate(demo_ads()):
        items.append(Item(f"demo ad {i}", "original", image_hashes(ad)))
        items += [
            Item(f"demo ad {i}", f"filter: {name}", image_hashes(edit(ad, rng))) for name, edit in FILTERS.items()
        ]
    rng.shuffle(items)
    return items


def before_issue_19(a: bytes, b: bytes) -> bool:
    """The colour check as it was: a mean colour difference of at most 20 (of 255)."""
    return colour_difference(a, b) <= 20.0


def measure(items: list[Item], agree: Agree) -> dict:
    """Cluster the items in order with ``agree`` as the colour check: pairwise precision and
    recall, each edit's share of copies in their original's cluster, the most clusters one
    photo's copies fell into, and the pairs of unrelated look-alikes of each kind joined."""
    clusters = Clusters(agree=agree)
    for key, item in enumerate(items):
        clusters.assign(key, item.hashes)
    cluster = clusters.cluster_of
    true_pairs = joined_pairs = both = 0
    lookalikes_joined = dict.fromkeys(LOOKALIKES, 0)
    for a, b in combinations(range(len(items)), 2):
        same, joined = items[a].origin == items[b].origin, cluster[a] == cluster[b]
        true_pairs += same
        joined_pairs += joined
        both += same and joined
        if joined and not same and items[a].kind == items[b].kind in lookalikes_joined:
            lookalikes_joined[items[a].kind] += 1
    originals = {item.origin: cluster[k] for k, item in enumerate(items) if item.kind == "original"}
    kept: dict[str, list[bool]] = {}
    clusters_of: dict[str, set[int]] = {}
    for k, item in enumerate(items):
        if item.origin in originals:
            clusters_of.setdefault(item.origin, set()).add(cluster[k])
            if item.kind != "original":
                kept.setdefault(item.kind, []).append(cluster[k] == originals[item.origin])
    return {
        "precision": round(both / joined_pairs, 3) if joined_pairs else None,
        "recall": round(both / true_pairs, 3) if true_pairs else None,
        "pairs wrongly joined": joined_pairs - both,
        "look-alike pairs joined": lookalikes_joined,
        "most clusters of one photo": max((len(c) for c in clusters_of.values()), default=0),
        "copies in their original's cluster": {kind: round(sum(v) / len(v), 2) for kind, v in sorted(kept.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--templates", type=int, default=20)
    args = parser.parse_args()
    started = time.perf_counter()
    photos = generated_set(args.seed, args.photos, args.templates)
    ads = filtered_demo_ads(args.seed)
    built = time.perf_counter() - started
    result = {
        "seed": args.seed,
        "seconds to draw and hash": round(built, 1),
        "photos": {
            "images": len(photos),
            "photos": args.photos,
            "edits per photo": len(EDITS),
            "template families (3 each)": args.templates,
            "same-colour pictures": 2 * args.templates,
            "demo ads": sum(item.kind == "demo ad" for item in photos),
            "before (mean colour difference <= 20)": measure(photos, before_issue_19),
            "after (colours_agree)": measure(photos, colours_agree),
        },
        "demo ads with filtered copies": {
            "images": len(ads),
            "before (mean colour difference <= 20)": measure(ads, before_issue_19),
            "after (colours_agree)": measure(ads, colours_agree),
        },
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()

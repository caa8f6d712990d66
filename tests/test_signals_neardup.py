"""review/signals/neardup.py, near duplicates: the multi-index lookup equals a brute-force scan, and clusters of real
images join reposts (re-encoded, resized, cropped, captioned, watermarked) to their original."""

from __future__ import annotations

import io
import random
from itertools import combinations

import pytest
from PIL import Image, ImageDraw

from review.demo.drawings import cjk_font
from review.media import perceptual_hash
from review.signals.neardup import MultiIndex
from review.signals.runner import Clusters, ImageHashes


def _brute(keys: list[int], hashes: list[int], query: int, radius: int) -> list[tuple[int, int]]:
    found = [(k, bin(h ^ query).count("1")) for k, h in zip(keys, hashes, strict=True)]
    return sorted(((k, d) for k, d in found if d <= radius), key=lambda kd: (kd[1], kd[0]))


def _flip(rng: random.Random, value: int, bits: int) -> int:
    for b in rng.sample(range(64), bits):
        value ^= 1 << b
    return value


@pytest.mark.parametrize("radius", [0, 3, 8, 11])
def test_lookup_equals_a_scan(radius: int) -> None:
    rng = random.Random(radius)
    centres = [rng.getrandbits(64) for _ in range(40)]
    # Clustered data (many hashes a few bits from a centre), as reposts make, plus random ones.
    hashes = [_flip(rng, rng.choice(centres), rng.randrange(0, 14)) for _ in range(3000)]
    hashes += [rng.getrandbits(64) for _ in range(3000)]
    keys = list(range(len(hashes)))
    index = MultiIndex(keys[:5000], hashes[:5000], tail_limit=300)
    for k in keys[5000:]:  # the rest arrive one by one: some stay in the tail, some are merged
        index.add(k, hashes[k])
    assert len(index) == len(hashes)
    for _ in range(60):
        query = _flip(rng, rng.choice(centres), rng.randrange(0, 10)) if rng.random() < 0.7 else rng.getrandbits(64)
        assert index.near(query, radius) == _brute(keys, hashes, query, radius)


def test_extreme_values_and_an_empty_index() -> None:
    assert MultiIndex().near(0, 8) == []
    top = (1 << 64) - 1
    index = MultiIndex([1, 2, 3], [0, top, top ^ 0b111])
    assert index.near(top, 8) == [(2, 0), (3, 3)]
    assert index.near(0, 2) == [(1, 0)]
    with pytest.raises(ValueError):
        MultiIndex([1], [])


# ------------------------------------------------------------------------------------------
# Clusters on real images: reposts join their original, unrelated pictures do not.


def _picture(rng: random.Random, label: int) -> Image.Image:
    """A synthetic picture: coloured shapes on a coloured ground, half of them with a price tag."""
    w, h = rng.choice([(640, 480), (480, 640), (600, 600), (800, 450)])
    image = Image.new("RGB", (w, h), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randrange(6, 16)):
        x, y = rng.randrange(w), rng.randrange(h)
        shape = rng.choice([draw.ellipse, draw.rectangle])
        size = (x, y, x + rng.randrange(40, 300), y + rng.randrange(40, 300))
        shape(size, fill=tuple(rng.randrange(256) for _ in range(3)))
    if rng.random() < 0.5:
        draw.text((20, 20), f"限时特价 ¥{label}", font=cjk_font(40), fill="white")
    return image


def _reposts(image: Image.Image) -> dict[str, Image.Image]:
    """What reposting does to a picture."""
    w, h = image.size
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=25)
    out = {"re-encoded at quality 25": Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")}
    out["resized to 50 %"] = image.resize((w // 2, h // 2), Image.Resampling.BICUBIC)
    out["cropped 5 % (centred)"] = image.crop((w // 40, h // 40, w - w // 40, h - h // 40))
    out["cropped 5 % at a corner"] = image.crop((0, 0, round(w * 0.95), round(h * 0.95)))
    out["cropped 5 % at the other corner"] = image.crop((round(w * 0.05), round(h * 0.05), w, h))
    bar = int(h * 0.18)
    captioned = Image.new("RGB", (w, h + bar), "white")
    captioned.paste(image, (0, bar))
    ImageDraw.Draw(captioned).text(
        (16, bar // 4), "转发：太好笑了哈哈哈", font=cjk_font(max(14, bar // 2)), fill="black"
    )
    out["caption bar added"] = captioned
    marked = image.copy()
    ImageDraw.Draw(marked).text((w - 260, h - 60), "@repost_bot", font=cjk_font(36), fill=(255, 255, 255))
    out["watermarked"] = marked
    return out


def _hashes(image: Image.Image) -> ImageHashes:
    return ImageHashes.of_image(perceptual_hash(image), image)


def test_reposts_join_their_original_and_unrelated_pictures_do_not() -> None:
    """Pairwise precision and recall of the clusters, with the runner's radius, on 40 originals
    × 7 kinds of repost plus 80 unrelated pictures, added in a random order (a repost may come
    before its original)."""
    rng = random.Random(2026)
    items: list[tuple[str, Image.Image, str]] = []  # (true group, image, kind)
    for i in range(40):
        original = _picture(rng, i)
        items.append((f"g{i}", original, "original"))
        items += [(f"g{i}", repost, kind) for kind, repost in _reposts(original).items()]
    items += [(f"u{i}", _picture(rng, 1000 + i), "unrelated") for i in range(80)]
    rng.shuffle(items)
    clusters = Clusters()
    for key, (_, image, _) in enumerate(items):
        clusters.assign(key, _hashes(image))
    true_pairs = predicted_pairs = both = 0
    missed: dict[str, int] = {}
    for a, b in combinations(range(len(items)), 2):
        same = items[a][0] == items[b][0]
        joined = clusters.cluster_of[a] == clusters.cluster_of[b]
        true_pairs += same
        predicted_pairs += joined
        both += same and joined
        if same and not joined:
            for kind in {items[a][2], items[b][2]} - {"original"}:
                missed[kind] = missed.get(kind, 0) + 1
    precision, recall = both / predicted_pairs, both / true_pairs
    assert precision >= 0.95 and recall >= 0.95, (precision, recall, missed)
    # Without the content and corner hashes, caption bars and corner crops are lost.
    plain = Clusters()
    for key, (_, image, _) in enumerate(items):
        plain.assign(key, ImageHashes.of(perceptual_hash(image)))
    kinds = {kind: [k for k, item in enumerate(items) if item[2] == kind] for kind in ("caption bar added",)}
    originals = {item[0]: k for k, item in enumerate(items) if item[2] == "original"}
    lost = [k for k in kinds["caption bar added"] if plain.cluster_of[k] != plain.cluster_of[originals[items[k][0]]]]
    assert len(lost) > 30


def test_clusters_reload_from_stored_hashes() -> None:
    """Clusters rebuilt from stored rows answer as the ones built image by image."""
    rng = random.Random(7)
    images = [_picture(rng, i) for i in range(6)]
    images.append(_reposts(images[0])["cropped 5 % at a corner"])
    built = Clusters()
    stored = []
    for key, image in enumerate(images):
        hashes = _hashes(image)
        cluster, _, _ = built.assign(key, hashes)
        stored.append((key, hashes, cluster))
    reloaded = Clusters(stored)
    probe = _hashes(_reposts(images[0])["resized to 50 %"])
    assert reloaded.nearest(probe) == built.nearest(probe)
    assert reloaded.nearest(probe)[1] in (0, 6)
    assert built.cluster_of[6] == 0

"""Issue 19, near duplicates of edited copies: the colour check (review.signals.neardup.colours_agree,
as the signals runner's Clusters use it) lets colour-filtered copies of a photo join it, and keeps
pictures drawn on one template in other colours apart. The sets are bench/neardup.py's, smaller."""

from __future__ import annotations

import random

import pytest
from PIL import Image

from bench.neardup import (
    EDITS,
    FILTERS,
    Item,
    before_issue_19,
    demo_ads,
    filtered_demo_ads,
    generated_set,
    image_hashes,
    measure,
    photo,
    template_family,
)
from review.media import colour_signature
from review.signals.neardup import colours_agree
from review.signals.runner import Clusters

FILTER_EDITS = [name for name in EDITS if name.startswith("filter")]


def _signature(image: Image.Image) -> bytes:
    return bytes.fromhex(colour_signature(image))


@pytest.fixture
def photos() -> list[Item]:
    """6 photos, each with a copy per colour filter (and one filtered, cropped and re-encoded),
    4 template families of 3 look-alikes, 8 same-colour pictures and the demo's ads."""
    return generated_set(1919, photos=6, templates=4, edits=FILTER_EDITS)


def test_filtered_copies_join_their_original_and_look_alikes_stay_apart(photos: list[Item]) -> None:
    before, after = measure(photos, before_issue_19), measure(photos, colours_agree)
    # The set is one the old check failed: copies strewn over several clusters.
    assert before["recall"] < 0.75 and before["most clusters of one photo"] >= 3, before
    assert after["recall"] >= 0.9 and after["most clusters of one photo"] <= 2, after
    shares = after["copies in their original's cluster"]
    for name in ("filter: grayscale", "filter: sepia", "filter: darker", "filter: saturation down"):
        assert shares[name] >= 5 / 6, (name, shares)
    # Nothing unrelated joined: template look-alikes, same-colour pictures, the demo's ads.
    assert after["precision"] == 1.0 and after["pairs wrongly joined"] == 0, after
    assert after["look-alike pairs joined"] == {"template look-alike": 0, "same colour": 0, "demo ad": 0}


def test_filters_agree_both_ways_and_recolourings_do_not() -> None:
    """Each filter's copy agrees with its photo, whichever comes first; a template's members in
    their own colours, and two flat pictures of different brightness, do not."""
    rng = random.Random(19)
    original = photo(rng)
    for name, edit in FILTERS.items():
        copy = _signature(edit(original, rng))
        assert colours_agree(_signature(original), copy) and colours_agree(copy, _signature(original)), name
    grey = _signature(FILTERS["grayscale"](original, rng))
    assert not before_issue_19(_signature(original), grey)  # what issue 19 found
    for family in (template_family(rng, 3) for _ in range(4)):
        signatures = [_signature(image) for image in family]
        assert not any(colours_agree(a, b) for a in signatures for b in signatures if a is not b)
    # Flat pictures: any brightness filter maps one onto another, so only close colours agree.
    black, white = (_signature(Image.new("RGB", (64, 64), (v, v, v))) for v in (30, 220))
    assert not colours_agree(black, white)


def test_demo_ads_keep_their_own_clusters() -> None:
    """The demo's ads, drawn on one template, each stay alone. With a copy of every ad through
    every filter among them (the hard case: darkening one ad makes it much like another) the
    copies join their own ad far more often than with the old check, and no more wrongly."""
    clusters = Clusters()
    for key, ad in enumerate(demo_ads()):
        clusters.assign(key, image_hashes(ad))
    assert len(set(clusters.cluster_of.values())) == len(clusters.cluster_of) == 12
    items = filtered_demo_ads(19)
    before, after = measure(items, before_issue_19), measure(items, colours_agree)
    assert after["recall"] >= before["recall"] + 0.2 and after["recall"] >= 0.9, (before, after)
    assert after["pairs wrongly joined"] <= before["pairs wrongly joined"], (before, after)

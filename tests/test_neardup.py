"""The multi-index near-duplicate lookup equals a brute-force scan, on random and clustered hashes."""

from __future__ import annotations

import random

import pytest

from review.signals.neardup import MultiIndex


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

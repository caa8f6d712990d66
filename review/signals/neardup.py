"""Near-duplicate lookup over 64-bit perceptual hashes: multi-index hashing.

A hash is cut into 4 chunks of 16 bits. If two hashes differ in at most ``r`` bits, then by the
pigeonhole principle at least one chunk differs in at most ``r // 4`` bits; so a query looks up,
in each chunk's table, every 16-bit value within that many bits of its own chunk (137 values for
r = 8), and checks only those candidates' full distance. Each table is a sorted array plus a
65,537-entry offset array (numpy, no per-entry Python objects): about 24 bytes per stored hash
for all four tables, and a lookup costs a few hundred array slices instead of a scan.

New hashes go to a small unsorted tail that is scanned directly and merged into the tables when
it grows past ``tail_limit``.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import combinations

import numpy as np

CHUNKS = 4
CHUNK_BITS = 16
CHUNK_MASK = (1 << CHUNK_BITS) - 1


def phash_int(hex_hash: str) -> int:
    return int(hex_hash, 16)


def _masks(radius: int) -> np.ndarray:
    """All 16-bit XOR masks with at most ``radius`` bits set."""
    out = [0]
    for k in range(1, radius + 1):
        out += [sum(1 << b for b in bits) for bits in combinations(range(CHUNK_BITS), k)]
    return np.array(out, dtype=np.int64)


def _popcount(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x)


class MultiIndex:
    """Hashes with integer keys (media ids); ``near(h, r)`` gives the keys within ``r`` bits."""

    def __init__(self, keys: Iterable[int] = (), hashes: Iterable[int] = (), tail_limit: int = 4096) -> None:
        self.tail_limit = tail_limit
        self._keys = np.fromiter(keys, dtype=np.int64)
        self._hashes = np.fromiter(hashes, dtype=np.uint64)
        if len(self._keys) != len(self._hashes):
            raise ValueError("keys and hashes differ in length")
        self._tail_keys: list[int] = []
        self._tail_hashes: list[int] = []
        self._build()

    def __len__(self) -> int:
        return len(self._keys) + len(self._tail_keys)

    def _build(self) -> None:
        self._orders = []
        self._offsets = []
        for c in range(CHUNKS):
            chunk = ((self._hashes >> np.uint64(c * CHUNK_BITS)) & np.uint64(CHUNK_MASK)).astype(np.int64)
            order = np.argsort(chunk, kind="stable")
            counts = np.bincount(chunk, minlength=1 << CHUNK_BITS)
            offsets = np.zeros((1 << CHUNK_BITS) + 1, dtype=np.int64)
            np.cumsum(counts, out=offsets[1:])
            self._orders.append(order)
            self._offsets.append(offsets)

    def add(self, key: int, hash_value: int) -> None:
        self._tail_keys.append(key)
        self._tail_hashes.append(hash_value)
        if len(self._tail_keys) >= self.tail_limit:
            self._keys = np.concatenate([self._keys, np.array(self._tail_keys, dtype=np.int64)])
            self._hashes = np.concatenate([self._hashes, np.array(self._tail_hashes, dtype=np.uint64)])
            self._tail_keys, self._tail_hashes = [], []
            self._build()

    def near(self, hash_value: int, radius: int) -> list[tuple[int, int]]:
        """(key, distance) of every stored hash within ``radius`` bits, nearest first."""
        query = np.uint64(hash_value)
        found: list[np.ndarray] = []
        masks = _masks(radius // CHUNKS)
        for c in range(CHUNKS):
            mine = (hash_value >> (c * CHUNK_BITS)) & CHUNK_MASK
            probes = mine ^ masks
            starts = self._offsets[c][probes]
            ends = self._offsets[c][probes + 1]
            order = self._orders[c]
            found.extend(order[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True) if e > s)
        result: list[tuple[int, int]] = []
        if found:
            rows = np.unique(np.concatenate(found))
            distances = _popcount(self._hashes[rows] ^ query)
            close = distances <= radius
            result = list(zip(self._keys[rows[close]].tolist(), distances[close].tolist(), strict=True))
        if self._tail_keys:
            tail = _popcount(np.array(self._tail_hashes, dtype=np.uint64) ^ query)
            result += [(k, int(d)) for k, d in zip(self._tail_keys, tail.tolist(), strict=True) if d <= radius]
        return sorted(result, key=lambda kd: (kd[1], kd[0]))

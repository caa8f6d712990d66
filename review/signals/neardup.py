"""Near duplicates: lookup over 64-bit perceptual hashes by multi-index hashing, and the colour check.

A hash is cut into 4 chunks of 16 bits. If two hashes differ in at most ``r`` bits, then by the
pigeonhole principle at least one chunk differs in at most ``r // 4`` bits; so a query looks up,
in each chunk's table, every 16-bit value within that many bits of its own chunk (137 values for
r = 8), and checks only those candidates' full distance. Each table is a sorted array plus a
65,537-entry offset array (numpy, no per-entry Python objects): about 24 bytes per stored hash
for all four tables, and a lookup costs a few hundred array slices instead of a scan.

New hashes go to a small unsorted tail that is scanned directly and merged into the tables when
it grows past ``tail_limit``.

A perceptual hash sees only brightness structure, so pictures drawn on one template in different
colours are a few bits apart; :func:`colours_agree` tells them from copies of one picture by their
colour signatures (:func:`review.media.colour_signature`), and lets a copy through whose colours
differ by a photo filter (its docstring says which).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import combinations

import numpy as np

from review.media import colour_difference

CHUNKS = 4
CHUNK_BITS = 16
CHUNK_MASK = (1 << CHUNK_BITS) - 1


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
        keys, distances = self.near_many([hash_value], radius)
        return sorted(zip(keys.tolist(), distances.tolist(), strict=True), key=lambda kd: (kd[1], kd[0]))

    def near_many(self, hash_values: list[int], radius: int) -> tuple[np.ndarray, np.ndarray]:
        """Keys and distances of the stored hashes within ``radius`` bits of any of
        ``hash_values`` (for each key, its smallest distance), in no particular order. One
        vectorised pass for all the queries: no Python loop over probes or candidates."""
        if not hash_values:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        queries = np.array(hash_values, dtype=np.uint64)
        masks = _masks(radius // CHUNKS)
        keys, distances = [], []
        if len(self._keys):
            for c in range(CHUNKS):
                mine = ((queries >> np.uint64(c * CHUNK_BITS)) & np.uint64(CHUNK_MASK)).astype(np.int64)
                probes = (mine[:, None] ^ masks[None, :]).ravel()  # query-major: query i owns a block
                starts = self._offsets[c][probes]
                lengths = self._offsets[c][probes + 1] - starts
                total = int(lengths.sum())
                if not total:
                    continue
                # positions starts[j] .. starts[j] + lengths[j] - 1 for every probe j, flattened
                first = np.cumsum(lengths) - lengths
                positions = np.arange(total) - np.repeat(first - starts, lengths)
                rows = self._orders[c][positions]
                asked = np.repeat(np.repeat(np.arange(len(queries)), len(masks)), lengths)
                found = _popcount(self._hashes[rows] ^ queries[asked]).astype(np.int64)
                close = found <= radius
                keys.append(self._keys[rows[close]])
                distances.append(found[close])
        if self._tail_keys:
            tail = np.array(self._tail_hashes, dtype=np.uint64)
            found = _popcount(tail[None, :] ^ queries[:, None]).astype(np.int64)  # (queries, tail)
            best = found.min(axis=0)
            close = best <= radius
            keys.append(np.array(self._tail_keys, dtype=np.int64)[close])
            distances.append(best[close])
        if not keys:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        all_keys, all_distances = np.concatenate(keys), np.concatenate(distances)
        order = np.lexsort((all_distances, all_keys))  # by key, then distance: keep each key's first
        all_keys, all_distances = all_keys[order], all_distances[order]
        first = np.ones(len(all_keys), dtype=bool)
        first[1:] = all_keys[1:] != all_keys[:-1]
        return all_keys[first], all_distances[first]


# Colour check (measured by bench/neardup.py on generated photos, filtered copies and template
# look-alikes, and on the demo's ads; figures in docs/BENCHMARKS.md).
CLOSE_COLOURS = 20.0  # mean difference (of 255) under which two signatures agree as they are
FILTER_RESIDUAL = 4.0  # RMS error (of 255) left by the best filter that maps one signature onto the other
TONED_RESIDUAL = 1.5  # RMS error of a toned picture's chroma as a function of its brightness
SATURATIONS = np.linspace(0.25, 2.0, 36)  # saturation factors a filter may apply
GAINS = (0.5, 2.0)  # the gains a filter may apply to a channel (or to the brightness)
MIN_SPREAD = 8.0  # brightness spread (SD over the cells) below which no filter can be told apart
LUMA = np.array([0.299, 0.587, 0.114])


def _cells(signature: bytes) -> np.ndarray:
    """A colour signature as its 16 cells' (red, green, blue), floats."""
    return np.frombuffer(signature, np.uint8).reshape(-1, 3).astype(np.float64)


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares lines ``y ≈ gain · x + offset`` along the cells axis (the second last) of
    ``x`` and ``y``, not counting clipped targets (0-4 and 251-255: a filter that brightens
    clips, which no line follows) unless fewer than 8 are left; the gains, and the RMS error of
    the clipped prediction over all cells."""
    y = np.broadcast_to(y, x.shape)
    keep = (y > 4) & (y < 251)
    keep |= keep.sum(axis=-2, keepdims=True) < 8
    n = keep.sum(axis=-2, keepdims=True)
    mean_x, mean_y = (np.where(keep, v, 0).sum(axis=-2, keepdims=True) / n for v in (x, y))
    sxx = np.where(keep, (x - mean_x) ** 2, 0).sum(axis=-2, keepdims=True)
    sxy = np.where(keep, (x - mean_x) * (y - mean_y), 0).sum(axis=-2, keepdims=True)
    gain = np.where(sxx > 1e-9, sxy / np.maximum(sxx, 1e-9), 1.0)  # a flat channel: any gain fits
    predicted = np.clip(gain * (x - mean_x) + mean_y, 0, 255)
    return gain.squeeze(-2), np.sqrt(((predicted - y) ** 2).mean(axis=-2))


def _filtered(original: np.ndarray, copy: np.ndarray) -> bool:
    """Whether ``copy`` is ``original`` through a colour filter: a saturation change (one factor
    for the picture) then a gain and an offset per channel (tints, brightness, contrast, fades,
    gentle tone curves); or, when the copy is toned (grayscale, sepia, duotone: its colour a
    function of its brightness), a gain and an offset of the brightness."""
    luma = original @ LUMA
    saturated = luma[None, :, None] + SATURATIONS[:, None, None] * (original - luma[:, None])[None]
    gains, errors = _fit(saturated, copy[None])  # (saturation, channel)
    plausible = ((gains >= GAINS[0]) & (gains <= GAINS[1])).all(axis=1)
    if (plausible & (errors.max(axis=1) <= FILTER_RESIDUAL)).any():
        return True
    copy_luma = copy @ LUMA
    chroma = np.stack([copy[:, 0] - copy_luma, copy[:, 2] - copy_luma], axis=1)
    curve = np.stack([copy_luma**2 / 255, copy_luma, np.ones_like(copy_luma)], axis=1)
    fitted, *_ = np.linalg.lstsq(curve, chroma, rcond=None)
    if np.sqrt(((curve @ fitted - chroma) ** 2).mean()) > TONED_RESIDUAL:
        return False
    gain, error = _fit(luma[:, None], copy_luma[:, None])
    return bool(GAINS[0] <= gain[0] <= GAINS[1] and error[0] <= FILTER_RESIDUAL)


def colours_agree(a: bytes, b: bytes) -> bool:
    """Whether two colour signatures may be one picture: their colours are close, or one is the
    other through a photo filter (:func:`_filtered`, either way round). Pictures drawn on one
    template in other colours are not: their colours change region by region, not as a filter
    changes all of a picture's. Flat pictures (one colour, a few words) agree only when close. The
    4×4 grid is coarse: a template recoloured much as a filter would (a blue ad desaturated beside
    a grey one) still agrees."""
    if colour_difference(a, b) <= CLOSE_COLOURS:
        return True
    first, second = _cells(a), _cells(b)
    if min((first @ LUMA).std(), (second @ LUMA).std()) < MIN_SPREAD:
        return False  # a flat picture: any filter maps it onto any other flat one
    return _filtered(first, second) or _filtered(second, first)

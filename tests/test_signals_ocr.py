"""review/signals/ocr.py with the real rapidocr model on synthetic images: Chinese and English
drawn by Pillow are read, and tiling recovers a line across a tile border of a long screenshot
that is lost when read whole; the tile spans cover each side with overlap.
"""

from __future__ import annotations

import random

import pytest
from PIL import Image, ImageDraw

from review.demo.drawings import cjk_font
from review.signals import ocr
from review.signals.ocr import OVERLAP, TILE, _spans
from tests.conftest import ad_image


def _squash(text: str) -> str:
    return "".join(text.split()).lower()


def test_ocr_reads_chinese_and_english_on_an_ad() -> None:
    result = ocr.read(ad_image())
    text = _squash(result.text)
    for expected in ("全网最低价", "限时抢购", "¥99", "today", "shop8888", "领红包", "freeshipping"):
        assert _squash(expected) in text, (expected, result.text)
    assert result.tiles == 1
    # reading order: the banner first, the last line last
    assert result.lines[0].text.startswith("全网") and "shipping" in result.lines[-1].text.lower()
    assert all(0 <= line.score <= 1 and line.box[0] < line.box[2] for line in result.lines)


def test_tiling_recovers_a_line_across_a_tile_border() -> None:
    spans = _spans(6000)
    border = spans[0][1]  # the first tile's lower edge, inside the second tile's overlap
    assert len(spans) > 1 and spans[1][0] < border
    image = Image.new("RGB", (600, 6000), "white")
    draw = ImageDraw.Draw(image)
    rng = random.Random(3)
    for y in range(60, 6000, 300):  # price lines all the way down a long screenshot
        if abs(y - border) > 120:
            draw.text((30, y), f"商品{y // 300} 价格 ¥{rng.randrange(10, 999)}", font=cjk_font(34), fill="black")
    draw.text((30, border - 20), "跨界一行 PRICE 520", font=cjk_font(40), fill=(180, 0, 0))  # straddles the cut
    result = ocr.read(image)
    text = _squash(result.text)
    assert _squash("跨界一行 PRICE 520") in text, result.text
    assert text.count("520") == 1  # read once, not once per tile
    assert result.tiles == len(spans)
    assert sum(f"商品{i}" in text for i in range(20)) >= 15


def test_tiles_read_a_long_screenshot_that_is_lost_when_read_whole() -> None:
    """rapidocr scales an input down to 2,000 pixels on its long side: a 9,000-pixel screenshot
    loses its small text that way, and keeps it in tiles."""
    image = Image.new("RGB", (720, 9000), "white")
    draw = ImageDraw.Draw(image)
    for n, y in enumerate(range(60, 8940, 300)):
        draw.text((30, y), f"商品{n} 价格 ¥{100 + n}", font=cjk_font(24), fill="black")
    tiled = _squash(ocr.read(image).text)
    whole = _squash(" ".join(text for text, _, _ in ocr._read_tile(image)))
    found_tiled = sum(f"商品{n}价格¥{100 + n}" in tiled for n in range(30))
    found_whole = sum(f"商品{n}价格¥{100 + n}" in whole for n in range(30))
    assert found_tiled >= 28 and found_whole <= 20, (found_tiled, found_whole)


@pytest.mark.parametrize("length", [100, 1248, 1249, 2000, 6000])
def test_tile_spans_cover_the_side_with_overlap(length: int) -> None:
    spans = _spans(length)
    assert spans[0][0] == 0 and spans[-1][1] == length
    for (a0, a1), (b0, b1) in zip(spans, spans[1:], strict=False):
        assert b0 < a1 and a1 - b0 >= OVERLAP  # consecutive tiles overlap by at least OVERLAP
        assert a1 - a0 <= TILE and b1 - b0 <= TILE

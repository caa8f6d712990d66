"""Text in images with rapidocr (PP-OCR detection + recognition as ONNX models bundled in the
wheel; Chinese and English; nothing is downloaded).

Long screenshots and big images dense with text are read in overlapping tiles: rapidocr scales
any input down to 2,000 pixels on its long side (``Global.max_side_len``), so a 720×9000
screenshot read whole shrinks 24-pixel text below what the detector finds (measured: 15 of 30
lines read whole, 30 of 30 in tiles; tests/test_signals_ocr.py). Tiles overlap by more than
a line's height, so every line lies whole inside some tile; boxes that touch a tile's inner cut
are dropped (the neighbouring tile has the line whole), duplicates from the overlaps are merged,
and the lines are put in reading order (top to bottom, left to right within a row).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from functools import cache
from importlib.metadata import version
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from rapidocr import RapidOCR

TILE = 960  # tile side, in pixels of the stored image
OVERLAP = 200  # more than two lines of text at any size a phone screenshot uses
EDGE = 4  # a box within this many pixels of an inner cut is taken as cut by it
SINGLE_PASS_LIMIT = int(TILE * 1.3)  # sides up to this are read whole


@dataclass(frozen=True)
class Line:
    text: str
    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in the image's pixels

    def as_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class OcrResult:
    lines: list[Line]
    tiles: int

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    def as_json(self) -> dict:
        return {"text": self.text, "lines": [line.as_json() for line in self.lines], "tiles": self.tiles}


def producer_version() -> str:
    return f"rapidocr-{version('rapidocr')}"


@cache
def _engine() -> RapidOCR:
    import logging

    from rapidocr import RapidOCR

    logging.getLogger("RapidOCR").setLevel(logging.ERROR)
    return RapidOCR(params={"Global.log_level": "error"})  # "no text found" is not worth a warning


_lock = threading.Lock()  # one engine per process; its sessions are not shared across threads


def _spans(length: int) -> list[tuple[int, int]]:
    """Start and end of each tile along one side."""
    if length <= SINGLE_PASS_LIMIT:
        return [(0, length)]
    stride = TILE - OVERLAP
    starts = list(range(0, max(1, length - OVERLAP), stride))
    spans = [(s, min(s + TILE, length)) for s in starts]
    if spans[-1][1] < length:
        spans.append((max(0, length - TILE), length))
    # A last tile that adds only the overlap is folded into its neighbour.
    if len(spans) > 1 and spans[-1][1] - spans[-2][1] <= 0:
        spans.pop()
    return spans


def _read_tile(tile: Image.Image) -> list[tuple[str, float, np.ndarray]]:
    from rapidocr.utils.output import RapidOCROutput

    with _lock:
        out = _engine()(np.asarray(tile.convert("RGB"))[:, :, ::-1])  # BGR, as OpenCV reads
    # The full pipeline's answer; rapidocr's other output types (detection, classification or
    # recognition alone) carry no boxed lines.
    if not isinstance(out, RapidOCROutput) or out.boxes is None or out.txts is None or out.scores is None:
        return []
    return list(zip(out.txts, [float(s) for s in out.scores], out.boxes, strict=True))


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    if inter == 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return inter / smaller if smaller > 0 else 0.0


def reading_order(lines: list[Line]) -> list[Line]:
    """Top to bottom; lines whose vertical centres are within half a line height form a row,
    read left to right."""
    rows: list[list[Line]] = []
    for line in sorted(lines, key=lambda ln: (ln.box[1] + ln.box[3]) / 2):
        centre = (line.box[1] + line.box[3]) / 2
        if rows:
            last = rows[-1][-1]
            height = max(1.0, min(last.box[3] - last.box[1], line.box[3] - line.box[1]))
            if abs(centre - (last.box[1] + last.box[3]) / 2) <= height / 2:
                rows[-1].append(line)
                continue
        rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda ln: ln.box[0])]


def read(image: Image.Image, min_score: float = 0.5) -> OcrResult:
    """All text lines of ``image`` (RGB), in reading order."""
    width, height = image.size
    xs, ys = _spans(width), _spans(height)
    whole: list[Line] = []
    cut_lines: list[Line] = []  # touching an inner cut: used only where no tile read the line whole
    for y0, y1 in ys:
        for x0, x1 in xs:
            inner = (x0 > 0, y0 > 0, x1 < width, y1 < height)  # which sides are cuts, not image edges
            for text, score, quad in _read_tile(image.crop((x0, y0, x1, y1))):
                if score < min_score or not text.strip():
                    continue
                bx0, by0 = float(quad[:, 0].min()), float(quad[:, 1].min())
                bx1, by1 = float(quad[:, 0].max()), float(quad[:, 1].max())
                cut = (
                    (inner[0] and bx0 <= EDGE)
                    or (inner[1] and by0 <= EDGE)
                    or (inner[2] and bx1 >= (x1 - x0) - EDGE)
                    or (inner[3] and by1 >= (y1 - y0) - EDGE)
                )
                box = (round(bx0 + x0, 1), round(by0 + y0, 1), round(bx1 + x0, 1), round(by1 + y0, 1))
                (cut_lines if cut else whole).append(Line(text=text.strip(), score=round(score, 4), box=box))
    merged: list[Line] = []
    for line in sorted(whole, key=lambda ln: -ln.score):  # the surest reading of a duplicate wins
        if all(_iou(line.box, kept.box) < 0.6 for kept in merged):
            merged.append(line)
    for line in sorted(cut_lines, key=lambda ln: -ln.score):  # e.g. a line wider than a tile
        if all(_iou(line.box, kept.box) < 0.3 for kept in merged):
            merged.append(line)
    return OcrResult(lines=reading_order(merged), tiles=len(xs) * len(ys))

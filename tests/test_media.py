"""review/media.py: safe decoding, reduced decodes within a memory bound, mode normalisation, the
content-addressed store and its garbage collection, hashing.

Every input is generated here with Pillow, numpy, zlib or plain bytes; nothing is downloaded, and
only the garbage collection uses a database. The memory bound is measured in a child process. The
decompression bomb is a real, valid 30000×30000 PNG written by hand (about
100 KB on disk, 900 megapixels decoded) and must be refused from its header alone.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps, features
from sqlalchemy import select

from db.models import Media
from review.auth import PermissionDenied
from review.cli import main
from review.config import Settings
from review.desk import Desk
from review.errors import MediaError
from review.media import (
    collect_garbage,
    data_uri,
    decode_image,
    load_normalised,
    prepare_image,
    read_image_file,
    store_image,
    write_image,
)
from tests.conftest import REPO, account, audit_rows, hamming, jsonl_bytes, png_bytes

MAX_PIXELS = Settings().max_image_pixels


THUMB = 64


# --------------------------------------------------------------------------- helpers


def _encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _bilevel_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit grayscale PNG of any size, compressed row by row (never held whole)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, colour type 0 (grey)
    row = b"\x00" + bytes((width + 7) // 8)  # filter byte 0 + packed pixels
    comp = zlib.compressobj(9)
    parts = []
    rows_per_block = 1000
    for start in range(0, height, rows_per_block):
        parts.append(comp.compress(row * min(rows_per_block, height - start)))
    parts.append(comp.flush())
    idat = b"".join(parts)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _photo(size: tuple[int, int] = (256, 192)) -> Image.Image:
    """A deterministic photo-like RGB image: smooth gradients plus a few shapes."""
    w, h = size
    x = np.linspace(0, 1, w)[None, :]
    y = np.linspace(0, 1, h)[:, None]
    arr = np.stack(
        [255 * x * np.ones_like(y), 255 * y * np.ones_like(x), 255 * (0.5 + 0.5 * np.sin(6 * x + 4 * y))], axis=-1
    ).astype(np.uint8)
    im = Image.fromarray(arr)
    draw = ImageDraw.Draw(im)
    draw.ellipse((w * 0.1, h * 0.2, w * 0.45, h * 0.7), fill=(250, 240, 30))
    draw.rectangle((w * 0.6, h * 0.1, w * 0.9, h * 0.5), fill=(20, 20, 120))
    return im


def _unrelated() -> Image.Image:
    """A checkerboard with diagonal stripes: structurally nothing like :func:`_photo`."""
    yy, xx = np.mgrid[0:192, 0:256]
    arr = (((xx // 16 + yy // 16) % 2) * 200 + ((xx + yy) // 8 % 2) * 55).astype(np.uint8)
    return Image.fromarray(arr).convert("RGB")


def _jpeg_bytes() -> bytes:
    return _encode(_photo(), "JPEG", quality=90)


def _close(pixel: tuple[int, ...], expected: tuple[int, int, int], tol: int = 24) -> bool:
    return all(abs(p - e) <= tol for p, e in zip(pixel, expected, strict=True))


# --------------------------------------------------------------------------- refusals


def test_truncated_jpeg_is_refused_as_truncated() -> None:
    data = _jpeg_bytes()
    with pytest.raises(MediaError, match="truncated"):
        decode_image(data[: len(data) // 2], MAX_PIXELS)


def test_truncated_jpeg_is_not_stored(tmp_path: Path) -> None:
    data = _jpeg_bytes()
    media = tmp_path / "media"
    with pytest.raises(MediaError, match="truncated"):
        store_image(data[: len(data) // 2], media, max_pixels=MAX_PIXELS, thumbnail_size=THUMB)
    assert not media.exists() or not any(p.is_file() for p in media.rglob("*"))


def test_zero_bytes_are_refused_as_empty() -> None:
    with pytest.raises(MediaError, match="empty"):
        decode_image(b"", MAX_PIXELS)


def test_zero_byte_file_is_refused_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"")
    with pytest.raises(MediaError, match=r"empty \(0 bytes\)") as info:
        read_image_file(path, max_bytes=1 << 20)
    assert "photo.jpg" in str(info.value)


def test_missing_file_is_refused_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="not found") as info:
        read_image_file(tmp_path / "nope.png", max_bytes=1 << 20)
    assert "nope.png" in str(info.value)


def test_directory_is_not_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="not a regular file"):
        read_image_file(tmp_path, max_bytes=1 << 20)


def test_text_file_named_jpg_is_refused_by_content(tmp_path: Path) -> None:
    path = tmp_path / "holiday.jpg"
    path.write_text("user,comment\nalice,this is a CSV export, not a photo\n", encoding="utf-8")
    data = read_image_file(path, max_bytes=1 << 20)
    with pytest.raises(MediaError, match="text file") as info:
        decode_image(data, MAX_PIXELS)
    assert "user,comment" not in str(info.value)  # the content is not echoed: it may be private


def test_svg_is_refused_with_advice(tmp_path: Path) -> None:
    svg = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        b'<script>alert(1)</script><rect width="10" height="10"/></svg>\n'
    )
    with pytest.raises(MediaError, match="SVG") as info:
        store_image(svg, tmp_path / "media", max_pixels=MAX_PIXELS, thumbnail_size=THUMB)
    assert "PNG" in str(info.value)  # tells the person what to do instead
    assert not (tmp_path / "media").exists()


def test_bare_svg_element_is_refused_as_svg() -> None:
    with pytest.raises(MediaError, match="SVG"):
        decode_image(b'\xef\xbb\xbf  <svg xmlns="http://www.w3.org/2000/svg"/>', MAX_PIXELS)


@pytest.mark.parametrize(
    "svg",
    [
        b'<!-- Created with Inkscape -->\n<svg xmlns="http://www.w3.org/2000/svg"/>',
        b'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n'
        b'<svg xmlns="http://www.w3.org/2000/svg"/>',
    ],
    ids=["comment-first", "doctype-first"],
)
def test_svg_with_leading_comment_or_doctype_is_refused_as_svg(svg: bytes) -> None:
    with pytest.raises(MediaError) as info:
        decode_image(svg, MAX_PIXELS)
    message = str(info.value)
    assert "text file" not in message, message
    assert "SVG" in message and "PNG" in message, message


def test_html_page_is_refused_as_html() -> None:
    page = b"\n<!DOCTYPE html>\n<html><head><title>Login</title></head><body>hi</body></html>\n"
    with pytest.raises(MediaError, match="HTML"):
        decode_image(page, MAX_PIXELS)


def test_pdf_is_refused_as_pdf() -> None:
    pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
    with pytest.raises(MediaError, match="PDF"):
        decode_image(pdf, MAX_PIXELS)


def test_unknown_binary_lists_accepted_formats() -> None:
    with pytest.raises(MediaError, match="not a recognised image format") as info:
        decode_image(bytes(range(256)) * 4, MAX_PIXELS)
    assert "JPEG" in str(info.value) and "PNG" in str(info.value)


def test_handmade_bomb_png_is_valid() -> None:
    """The generator itself: a small instance decodes to the size and colour it claims."""
    data = _bilevel_png(37, 11)
    im = Image.open(io.BytesIO(data))
    im.load()
    assert (im.format, im.mode, im.size) == ("PNG", "1", (37, 11))
    assert im.getextrema() == (0, 0)


def test_decompression_bomb_is_refused_fast_without_decoding(tmp_path: Path) -> None:
    data = _bilevel_png(30000, 30000)
    assert 50_000 < len(data) < 300_000  # tiny on disk, 900 megapixels decoded
    media = tmp_path / "media"
    start = time.perf_counter()
    with pytest.raises(MediaError, match="megapixels") as info:
        decode_image(data, MAX_PIXELS)
    with pytest.raises(MediaError, match="megapixels"):
        store_image(data, media, max_pixels=MAX_PIXELS, thumbnail_size=THUMB)
    elapsed = time.perf_counter() - start
    assert elapsed < 5, f"refusing the bomb took {elapsed:.1f}s: were the pixels decoded?"
    assert "decompression bomb" in str(info.value)
    assert "MAX_IMAGE_PIXELS" in str(info.value)
    assert not media.exists()


def test_image_over_configured_pixel_limit_is_refused_with_its_size() -> None:
    data = _encode(Image.new("RGB", (300, 200)), "PNG")
    with pytest.raises(MediaError, match="megapixels") as info:
        decode_image(data, max_pixels=50_000)
    assert "300×200" in str(info.value)


def test_pixel_limit_message_does_not_contradict_itself() -> None:
    data = _bilevel_png(7100, 7100)  # 50.41 MP, refused from the header before decoding
    with pytest.raises(MediaError) as info:
        decode_image(data, MAX_PIXELS)
    numbers = [float(n) for n in re.findall(r"([\d.]+) megapixels", str(info.value))]
    assert len(numbers) == 2, str(info.value)
    image_mp, limit_mp = numbers
    assert image_mp > limit_mp, str(info.value)


def test_configured_pixel_limit_wins_over_pillows_global_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # Scaled-down stand-in for MAX_IMAGE_PIXELS=400_000_000 and a 300 MP panorama: Pillow's own
    # guard is lowered to 1 MP, so that Pillow alone would refuse (above twice its setting) a
    # 2.5 MP image that the operator's 3 MP limit allows.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    data = _bilevel_png(2500, 1000)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))
    decoded = decode_image(data, max_pixels=3_000_000)
    assert decoded.image.size == (2500, 1000)
    assert Image.MAX_IMAGE_PIXELS == 1_500_001  # raised only as far as the operator's limit needs


def test_pillows_guard_still_applies_below_our_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow's process-wide guard is not switched off, and its refusal reads like ours."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    data = _bilevel_png(2500, 1000)
    with pytest.raises(MediaError, match="MAX_IMAGE_PIXELS"):
        decode_image(data, max_pixels=1_000_000)
    assert Image.MAX_IMAGE_PIXELS == 1_000_000


def test_file_over_max_bytes_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(_encode(_photo(), "PNG"))
    with pytest.raises(MediaError, match="refused") as info:
        read_image_file(path, max_bytes=1000)
    message = str(info.value)
    assert "MAX_IMAGE_BYTES" in message
    assert "big.png" in message
    # at the limit itself the file is read unchanged
    assert read_image_file(path, max_bytes=path.stat().st_size) == path.read_bytes()


def test_byte_limit_message_does_not_contradict_itself(tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    path.write_bytes(b"\0" * int(1.7 * 2**20))
    with pytest.raises(MediaError) as info:
        read_image_file(path, max_bytes=int(1.6 * 2**20))
    numbers = [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) bytes", str(info.value))]
    assert numbers == [path.stat().st_size, int(1.6 * 2**20)], str(info.value)


# --------------------------------------------------------------------------- accepted and normalised


def test_plain_jpeg_is_decoded_as_rgb() -> None:
    decoded = decode_image(_jpeg_bytes(), MAX_PIXELS)
    assert (decoded.format, decoded.mime, decoded.ext) == ("JPEG", "image/jpeg", "jpg")
    assert decoded.image.mode == "RGB"
    assert (decoded.width, decoded.height, decoded.frames) == (256, 192, 1)


def test_cmyk_jpeg_converts_to_rgb_colours() -> None:
    im = Image.new("CMYK", (60, 40), (255, 0, 0, 0))  # pure cyan
    im.paste((0, 0, 0, 0), (30, 0, 60, 40))  # right half: no ink → white
    data = _encode(im, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    decoded = decode_image(data, MAX_PIXELS)
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == (60, 40)
    r, g, b = decoded.image.getpixel((10, 20))
    assert r < 60 and g > 200 and b > 200, (r, g, b)
    assert _close(decoded.image.getpixel((50, 20)), (255, 255, 255))


def test_16_bit_grayscale_png_keeps_its_range() -> None:
    ramp = np.linspace(0, 65535, 256).round().astype(np.uint16)
    arr = np.tile(ramp, (8, 1))
    src = Image.fromarray(arr)
    assert src.mode == "I;16"
    data = _encode(src, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    decoded = decode_image(data, MAX_PIXELS)
    out = np.asarray(decoded.image)
    assert decoded.image.mode == "RGB" and decoded.image.size == (256, 8)
    assert out[:, :4].max() < 10, "the dark end must stay dark"
    assert out[:, -4:].min() > 245, "the bright end must be bright"
    mid = int(out[0, 128, 0])
    assert 100 < mid < 155, f"mid-grey came out as {mid}"
    # monotonic: a gradient, not a clipped step
    assert np.all(np.diff(out[0, :, 0].astype(int)) >= 0)
    assert len(np.unique(out[0, :, 0])) > 200


def test_animated_gif_uses_first_frame_and_counts_frames() -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (40, 30), c) for c in colours]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    decoded = decode_image(data, MAX_PIXELS)
    assert (decoded.format, decoded.mime, decoded.frames) == ("GIF", "image/gif", 3)
    assert decoded.image.mode == "RGB" and decoded.image.size == (40, 30)
    assert _close(decoded.image.getpixel((20, 15)), colours[0], tol=8)


def test_animated_webp_uses_first_frame_and_counts_frames() -> None:
    if not features.check("webp"):
        pytest.skip("this Pillow has no WebP support")
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (40, 30), c) for c in colours]
    try:
        data = _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    except (OSError, ValueError, KeyError) as exc:
        pytest.skip(f"this Pillow cannot write animated WebP: {exc}")
    if getattr(Image.open(io.BytesIO(data)), "n_frames", 1) != 3:
        pytest.skip("this Pillow wrote a still WebP instead of an animation")
    decoded = decode_image(data, MAX_PIXELS)
    assert (decoded.format, decoded.mime, decoded.ext, decoded.frames) == ("WEBP", "image/webp", "webp", 3)
    assert decoded.image.mode == "RGB" and decoded.image.size == (40, 30)
    assert _close(decoded.image.getpixel((20, 15)), colours[0], tol=8)


def test_exif_orientation_6_is_applied() -> None:
    im = Image.new("RGB", (200, 100), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 100, 100))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(im, "JPEG", exif=exif, quality=95)
    # Orientation 6 = "rotate 90° clockwise to display": Pillow's own reading puts the left half on top.
    reference = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert reference.size == (100, 200)
    assert _close(reference.getpixel((50, 40)), (255, 0, 0))
    assert _close(reference.getpixel((50, 160)), (0, 0, 255))

    decoded = decode_image(data, MAX_PIXELS)
    assert (decoded.width, decoded.height) == (100, 200)
    assert decoded.image.size == (100, 200)
    assert _close(decoded.image.getpixel((50, 40)), (255, 0, 0)), "red (the left half) must be on top"
    assert _close(decoded.image.getpixel((50, 160)), (0, 0, 255)), "blue must be at the bottom"


def test_palette_image_with_transparency_becomes_white() -> None:
    im = Image.new("P", (20, 10), 0)
    im.putpalette([255, 0, 0] + [0, 128, 0] + [0, 0, 0] * 254)  # 0 = red, 1 = green
    im.paste(1, (10, 0, 20, 10))
    data = _encode(im, "PNG", transparency=0)  # the red half is transparent
    assert Image.open(io.BytesIO(data)).mode == "P"
    out = decode_image(data, MAX_PIXELS).image
    assert out.mode == "RGB" and out.size == (20, 10)
    assert out.getpixel((3, 5)) == (255, 255, 255)
    assert out.getpixel((15, 5)) == (0, 128, 0)


def test_transparent_gif_becomes_white() -> None:
    im = Image.new("P", (20, 10), 0)
    im.putpalette([255, 0, 0] + [0, 0, 255] + [0, 0, 0] * 254)
    im.paste(1, (10, 0, 20, 10))
    data = _encode(im, "GIF", transparency=0)
    out = decode_image(data, MAX_PIXELS).image
    assert out.getpixel((3, 5)) == (255, 255, 255)
    assert out.getpixel((15, 5)) == (0, 0, 255)


def test_la_image_transparent_pixels_become_white() -> None:
    lum = np.full((10, 20), 40, np.uint8)
    alpha = np.zeros((10, 20), np.uint8)
    alpha[:, 10:] = 255  # left half fully transparent, right half opaque dark grey
    im = Image.merge("LA", [Image.fromarray(lum), Image.fromarray(alpha)])
    data = _encode(im, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "LA"
    out = decode_image(data, MAX_PIXELS).image
    assert out.mode == "RGB" and out.size == (20, 10)
    assert out.getpixel((3, 5)) == (255, 255, 255)
    assert out.getpixel((15, 5)) == (40, 40, 40)


def test_rgba_png_transparent_pixels_become_white() -> None:
    im = Image.new("RGBA", (20, 10), (255, 0, 0, 0))
    im.paste((0, 0, 255, 255), (10, 0, 20, 10))
    out = decode_image(_encode(im, "PNG"), MAX_PIXELS).image
    assert out.getpixel((3, 5)) == (255, 255, 255)
    assert out.getpixel((15, 5)) == (0, 0, 255)


def test_bilevel_mode_1_image_becomes_black_and_white_rgb() -> None:
    im = Image.new("1", (16, 8), 0)
    im.paste(1, (8, 0, 16, 8))
    data = _encode(im, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "1"
    out = decode_image(data, MAX_PIXELS).image
    assert out.mode == "RGB" and out.size == (16, 8)
    assert out.getpixel((2, 4)) == (0, 0, 0)
    assert out.getpixel((12, 4)) == (255, 255, 255)


def test_float_mode_f_tiff_keeps_its_range() -> None:
    arr = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (4, 1))
    im = Image.fromarray(arr)
    assert im.mode == "F"
    data = _encode(im, "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "F"
    decoded = decode_image(data, MAX_PIXELS)
    out = np.asarray(decoded.image)
    assert decoded.format == "TIFF" and decoded.image.mode == "RGB" and decoded.image.size == (64, 4)
    assert out[:, 0].max() < 10
    assert out[:, -1].min() > 245
    assert 100 < int(out[0, 32, 0]) < 155


def test_float_mode_f_in_0_255_range_is_not_clipped() -> None:
    arr = np.tile(np.linspace(0.0, 255.0, 64, dtype=np.float32), (4, 1))
    out = np.asarray(decode_image(_encode(Image.fromarray(arr), "TIFF"), MAX_PIXELS).image)
    assert out[:, 0].max() < 10
    assert out[:, -1].min() > 245
    assert 100 < int(out[0, 32, 0]) < 155


# --------------------------------------------------------------------------- the media store


def test_store_image_writes_original_content_addressed(tmp_path: Path) -> None:
    data = _jpeg_bytes()
    media = tmp_path / "media"
    stored = store_image(data, media, max_pixels=MAX_PIXELS, thumbnail_size=THUMB)
    sha = hashlib.sha256(data).hexdigest()
    assert stored.sha256 == sha
    assert stored.path == f"{sha[:2]}/{sha[2:4]}/{sha}.jpg"
    assert (media / stored.path).read_bytes() == data
    assert (stored.mime, stored.width, stored.height, stored.frames) == ("image/jpeg", 256, 192, 1)
    assert stored.size_bytes == len(data)
    assert not list(media.rglob(".tmp-*")), "temporary files must not be left behind"


def test_store_image_extension_follows_content_not_name(tmp_path: Path) -> None:
    data = _encode(_photo((40, 30)), "PNG")
    stored = store_image(data, tmp_path / "media", max_pixels=MAX_PIXELS, thumbnail_size=THUMB)
    assert stored.path.endswith(".png") and stored.mime == "image/png"


def test_store_image_writes_a_small_jpeg_thumbnail(tmp_path: Path) -> None:
    data = _encode(_photo((300, 120)), "PNG")
    media = tmp_path / "media"
    stored = store_image(data, media, max_pixels=MAX_PIXELS, thumbnail_size=THUMB)
    sha = stored.sha256
    assert stored.thumb_path == f"thumbs/{sha[:2]}/{sha}.jpg"
    with Image.open(media / stored.thumb_path) as thumb:
        assert thumb.format == "JPEG"
        assert thumb.mode == "RGB"
        assert max(thumb.size) == THUMB
        assert thumb.size == (THUMB, round(THUMB * 120 / 300))


def test_store_image_thumbnail_does_not_upscale_small_images(tmp_path: Path) -> None:
    data = _encode(_photo((30, 20)), "PNG")
    media = tmp_path / "media"
    stored = store_image(data, media, max_pixels=MAX_PIXELS, thumbnail_size=THUMB)
    with Image.open(media / stored.thumb_path) as thumb:
        assert thumb.size == (30, 20)


def test_store_image_returns_a_64_bit_hex_phash(tmp_path: Path) -> None:
    stored = store_image(_jpeg_bytes(), tmp_path / "media", max_pixels=MAX_PIXELS, thumbnail_size=THUMB)
    assert re.fullmatch(r"[0-9a-f]{16}", stored.phash), stored.phash


def test_storing_the_same_bytes_twice_is_idempotent(tmp_path: Path) -> None:
    data = _jpeg_bytes()
    media = tmp_path / "media"
    first = store_image(data, media, max_pixels=MAX_PIXELS, thumbnail_size=THUMB)
    original, thumb = media / first.path, media / first.thumb_path
    before = (original.stat().st_ino, original.read_bytes(), thumb.stat().st_ino, thumb.read_bytes())
    time.sleep(0.02)
    second = store_image(data, media, max_pixels=MAX_PIXELS, thumbnail_size=THUMB)
    assert second == first
    after = (original.stat().st_ino, original.read_bytes(), thumb.stat().st_ino, thumb.read_bytes())
    # not rewritten (same inode, same bytes); only their time is refreshed, for `media gc`'s age threshold
    assert after == before, "the stored files must not be rewritten"
    assert sorted(p.relative_to(media).as_posix() for p in media.rglob("*") if p.is_file()) == sorted(
        [first.path, first.thumb_path]
    )


def test_phash_survives_reencoding_but_separates_unrelated_images(tmp_path: Path) -> None:
    media = tmp_path / "media"
    photo = _photo()
    original = store_image(_encode(photo, "PNG"), media, max_pixels=MAX_PIXELS, thumbnail_size=THUMB)
    reencoded = store_image(_encode(photo, "JPEG", quality=15), media, max_pixels=MAX_PIXELS, thumbnail_size=THUMB)
    unrelated = store_image(_encode(_unrelated(), "PNG"), media, max_pixels=MAX_PIXELS, thumbnail_size=THUMB)
    assert reencoded.sha256 != original.sha256  # different bytes, so a different stored file
    assert hamming(original.phash, reencoded.phash) <= 10
    assert hamming(original.phash, unrelated.phash) > 20


def test_load_normalised_returns_the_rgb_image(tmp_path: Path) -> None:
    im = Image.new("RGB", (200, 100), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 100, 100))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(im, "JPEG", exif=exif, quality=95)
    media = tmp_path / "media"
    stored = store_image(data, media, max_pixels=MAX_PIXELS, thumbnail_size=THUMB)
    loaded = load_normalised(media, stored.path, MAX_PIXELS)
    assert loaded.mode == "RGB"
    assert loaded.size == (stored.width, stored.height) == (100, 200)
    assert _close(loaded.getpixel((50, 40)), (255, 0, 0))


def test_load_normalised_of_missing_file_is_a_media_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="not found"):
        load_normalised(tmp_path, "ab/cd/missing.jpg", MAX_PIXELS)


def test_data_uri_of_a_thumbnail(tmp_path: Path) -> None:
    media = tmp_path / "media"
    stored = store_image(_jpeg_bytes(), media, max_pixels=MAX_PIXELS, thumbnail_size=THUMB)
    uri = data_uri(media, stored.thumb_path)
    assert uri is not None
    prefix = "data:image/jpeg;base64,"
    assert uri.startswith(prefix)
    payload = base64.b64decode(uri[len(prefix) :], validate=True)
    assert payload == (media / stored.thumb_path).read_bytes()
    assert Image.open(io.BytesIO(payload)).format == "JPEG"


def test_data_uri_of_a_missing_file_is_none(tmp_path: Path) -> None:
    assert data_uri(tmp_path, "thumbs/ab/" + "0" * 64 + ".jpg") is None


# --------------------------------------------------------------------------- decode memory and media gc


_MAKE = """
import sys
from PIL import Image, ImageDraw
im = Image.new("RGB", (7000, 7000), (250, 250, 245))
d = ImageDraw.Draw(im)
for i in range(0, 7000, 350):
    d.rectangle((i, i // 2, i + 200, i // 2 + 300), fill=(i % 255, 80, 160))
    d.line((0, i, 7000, 7000 - i), fill=(20, 20, 20), width=5)
im.save(sys.argv[1] + "/rgb.png")
im.save(sys.argv[1] + "/photo.jpg", quality=85)
im.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(sys.argv[1] + "/palette.png")
"""


_MEASURE = """
import os, resource, sys
from review.media import prepare_image
prepare_image(open(sys.argv[1] + "/small.png", "rb").read(), max_pixels=50_000_000, thumbnail_size=256)  # warm
for name in sys.argv[2:]:
    data = open(sys.argv[1] + "/" + name, "rb").read()
    if os.fork() == 0:  # a child per image: its peak starts from the warm parent's size
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        image = prepare_image(data, max_pixels=50_000_000, thumbnail_size=256)
        rise = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024
        print(name, rise, image.stored.width, image.stored.height, image.thumbnail.size[0], flush=True)
        os._exit(0)
    os.wait()
"""


def test_a_7000_square_image_is_thumbnailed_within_a_memory_bound(tmp_path: Path) -> None:
    """Peak RSS above the warm process, one forked child per image: before, 377 MB (JPEG), 468 MB
    (palette PNG), 376 MB (RGB PNG); now about 8, 100 and 220 MB: one decoding buffer in the
    file's own mode (RGB 7000² = 196 MB at Pillow's 4 bytes a pixel), or 1/8 of the JPEG's sides."""
    subprocess.run([sys.executable, "-c", _MAKE, str(tmp_path)], check=True, timeout=120)
    (tmp_path / "small.png").write_bytes(png_bytes(1))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", _MEASURE, str(tmp_path), "photo.jpg", "palette.png", "rgb.png"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=120).stdout
    peaks = {}
    for line in out.splitlines():
        name, peak, *sizes = line.split()
        peaks[name] = int(peak)
        assert sizes == ["7000", "7000", "256"]
    assert peaks["photo.jpg"] < 60, peaks
    assert peaks["palette.png"] < 150, peaks
    assert peaks["rgb.png"] < 260, peaks


def test_a_reduced_decode_keeps_size_orientation_and_hash(tmp_path: Path) -> None:
    import imagehash

    photo = Image.effect_mandelbrot((2400, 1200), (-2.0, -1.0, 1.0, 1.0), 80).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90, exif=exif)
    prepared = prepare_image(buffer.getvalue(), max_pixels=50_000_000, thumbnail_size=256)
    assert (prepared.stored.width, prepared.stored.height) == (1200, 2400)
    assert prepared.thumbnail.size == (128, 256)
    upright = photo.transpose(Image.Transpose.ROTATE_270)
    full = upright.copy()
    full.thumbnail((256, 256), Image.Resampling.BICUBIC, reducing_gap=2.0)
    assert imagehash.hex_to_hash(prepared.stored.phash) - imagehash.phash(full) <= 6


def _age(path: Path, minutes: float) -> None:
    stamp = time.time() - minutes * 60
    os.utime(path, (stamp, stamp))


def test_media_gc_lists_then_removes_what_crashes_left(
    cli: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    desk = cli
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(png_bytes(1))
    (tmp_path / "in" / "p.jsonl").write_bytes(jsonl_bytes({"external_id": "p", "images": ["a.png"]}))
    assert main(["ingest", "--quiet", str(tmp_path / "in" / "p.jsonl")]) == 0
    media = desk.settings.media_dir
    with desk.sessions() as session:
        row = session.scalars(select(Media)).one()
    kept = [media / row.path, media / row.thumb_path]
    # a crash after writing the files, before the commit: an orphan and its thumbnail
    orphan = prepare_image(png_bytes(2), max_pixels=10**7, thumbnail_size=64)
    stored = write_image(orphan, media)
    orphans = [media / stored.path, media / stored.thumb_path]
    # a crash during a write: a temporary file; and the same, just now (an ingest writing)
    tmp_old = media / row.path[:5] / ".tmp-crash123.png"
    tmp_old.write_bytes(b"x" * 1000)
    tmp_new = media / row.path[:5] / ".tmp-writing.png"
    tmp_new.write_bytes(b"y" * 10)
    foreign = media / "README.txt"
    foreign.write_text("an operator's note")
    for path in [*kept, *orphans, tmp_old, foreign]:
        _age(path, 120)

    assert main(["media", "gc"]) == 0
    out = capsys.readouterr().out
    assert f"would remove {1000:>12,}  {tmp_old.relative_to(media).as_posix()}" in out
    for path in orphans:
        assert f"{path.stat().st_size:>12,}  {path.relative_to(media).as_posix()}" in out
    assert "would remove 1 temporary files (1,000 bytes) and 2 orphaned files" in out
    assert "1 newer than the age threshold kept" in out and "1 files that are not the store's own" in out
    assert all(p.exists() for p in [*kept, *orphans, tmp_old, tmp_new, foreign])
    assert audit_rows(desk, "media.gc") == []

    orphan_bytes = sum(p.stat().st_size for p in orphans)
    assert main(["media", "gc", "--delete"]) == 0
    out = capsys.readouterr().out
    assert "removed 1 temporary files (1,000 bytes) and 2 orphaned files" in out
    assert not any(p.exists() for p in [*orphans, tmp_old])
    assert all(p.exists() for p in [*kept, tmp_new, foreign])
    (event,) = audit_rows(desk, "media.gc")
    assert event.actor_name == "(command line)"
    assert (event.details["temp_files"], event.details["orphans"]) == (1, 2)
    assert event.details["bytes"] == 1000 + orphan_bytes

    # a lead may not; an admin may
    with pytest.raises(PermissionDenied):
        collect_garbage(desk.sessions, media, account(desk, "lead"))
    assert collect_garbage(desk.sessions, media, account(desk, "admin")).files == []


def test_a_reused_store_file_is_young_again(tmp_path: Path) -> None:
    prepared = prepare_image(png_bytes(5), max_pixels=10**7, thumbnail_size=64)
    stored = write_image(prepared, tmp_path)
    for rel in (stored.path, stored.thumb_path):
        _age(tmp_path / rel, 600)
    write_image(prepared, tmp_path)  # an ingest of the same bytes: the files are about to be referred to
    for rel in (stored.path, stored.thumb_path):
        assert time.time() - (tmp_path / rel).stat().st_mtime < 60


@pytest.mark.parametrize("decode", ["decode_image", "decode_thumbnail"])
def test_corrupt_png_data_is_refused_by_both_decoders(decode: str) -> None:
    """Reading a PNG's EXIF loads the picture; the load error it swallowed must not let a corrupt
    data stream through (the reduced decode once read the orientation before loading)."""
    from review import media

    out = io.BytesIO()
    Image.effect_noise((64, 64), 80).convert("RGB").save(out, "PNG")
    data = bytearray(out.getvalue())
    at = data.index(b"IDAT") + 8
    data[at : at + 16] = b"\xff" * 16
    with pytest.raises(media.MediaError, match="truncated or corrupt"):
        if decode == "decode_image":
            media.decode_image(bytes(data), 10**8)
        else:
            media.decode_thumbnail(bytes(data), max_pixels=10**8, size=320)

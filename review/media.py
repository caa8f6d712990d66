"""Safe image loading, normalisation, hashing and the content-addressed media store.

Every image that enters the desk goes through :func:`decode_image`:
- the format is decided by the bytes (Pillow's decoders, restricted to ``ALLOWED_FORMATS``),
  never by the file name; SVG/HTML and other markup is refused;
- the pixel count is checked against ``max_image_pixels`` before any pixel is decoded
  (decompression bombs), and the byte size against ``max_image_bytes`` before reading;
- truncated or corrupt data is an error, not a half-grey picture;
- EXIF orientation is applied; animations use their first frame; P/LA/RGBA/CMYK/I;16/F/1
  modes are converted to 8-bit RGB (transparency composited on white).

:func:`store_image` keeps the original bytes under ``MEDIA_DIR/ab/cd/<sha256>.<ext>`` and a JPEG
thumbnail under ``MEDIA_DIR/thumbs/ab/<sha256>.jpg``; the same bytes are stored once.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import hashlib
import io
import os
import re
import stat
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import imagehash
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from review.errors import MediaError, MissingImageError
from review.files import TEMP_PREFIX, written_beside

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from review.auth import Actor

# Decoders we accept, and the MIME type and file extension each is stored under.
ALLOWED_FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("image/jpeg", "jpg"),
    "MPO": ("image/jpeg", "jpg"),  # multi-picture JPEG from phone cameras
    "PNG": ("image/png", "png"),
    "GIF": ("image/gif", "gif"),
    "WEBP": ("image/webp", "webp"),
    "BMP": ("image/bmp", "bmp"),
    "TIFF": ("image/tiff", "tif"),
}
# Decoders handed to Image.open; JPEG's decoder reports multi-picture files as MPO itself.
OPEN_FORMATS = [f for f in ALLOWED_FORMATS if f != "MPO"]
SUPPORTED = "JPEG, PNG, GIF, WebP, BMP or TIFF"
THUMB_QUALITY = 82

# Truncated files must fail loudly (Pillow's default, restated because it is a global).
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Pillow's own decompression-bomb guard (Image.MAX_IMAGE_PIXELS, a process-wide setting) stays
# on; decode_image applies the operator's limit (Settings.max_image_pixels) first, and raises
# Pillow's only when the operator allows more than Pillow does.


@dataclass(frozen=True)
class DecodedImage:
    """An image accepted by :func:`decode_image`: normalised pixels plus what we store about it."""

    image: Image.Image  # RGB, EXIF-oriented, first frame
    format: str
    mime: str
    ext: str
    width: int
    height: int
    frames: int


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    path: str  # relative to MEDIA_DIR
    thumb_path: str  # relative to MEDIA_DIR
    mime: str
    width: int
    height: int
    frames: int
    size_bytes: int
    phash: str


def read_image_file(path: Path, max_bytes: int) -> bytes:
    """Read an image file with clear errors for the usual operator mistakes."""
    try:
        size = path.stat().st_size
    except (FileNotFoundError, NotADirectoryError):  # (a folder on the way is a file)
        raise MissingImageError(f"file not found: {path}") from None
    except OSError as exc:
        raise MediaError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not path.is_file():
        raise MediaError(f"not a regular file: {path}")
    check_image_size(size, max_bytes, f": {path}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MediaError(f"cannot read {path}: {exc.strerror or exc}") from None


def check_image_size(size: int, max_bytes: int, where: str = "") -> None:
    """Refuse an empty image or one over ``max_bytes`` (MAX_IMAGE_BYTES) before any decoding;
    ``where`` ends the message (": path")."""
    if size == 0:
        raise MediaError(f"the file is empty (0 bytes){where}")
    if size > max_bytes:
        raise MediaError(
            f"the file is {size:,} bytes ({size / 2**20:.1f} MiB); images over {max_bytes:,} bytes are refused "
            f"(MAX_IMAGE_BYTES){where}"
        )


def _describe_unknown(data: bytes) -> str:
    """Why bytes that no allowed decoder recognises are not an image, in words."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<"):  # markup, possibly after an XML declaration, comment or doctype
        if b"<svg" in head:
            return "SVG is not accepted (vector markup can carry scripts and external links); export it as PNG"
        if any(tag in head for tag in (b"<html", b"<head", b"<body", b"<script", b"<!doctype html")):
            return "this is an HTML page, not an image"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypmsf1", b"ftypavif"):
        return f"HEIC/HEIF/AVIF photos are not supported; convert to JPEG ({SUPPORTED} are accepted)"
    if data[:4] == b"%PDF":
        return "this is a PDF document, not an image"
    try:  # incremental: a multi-byte character cut at the sample's end is not an error
        sample = codecs.getincrementaldecoder("utf-8")().decode(data[:200], final=False)
    except UnicodeDecodeError:
        sample = ""
    if sample.strip() and all(c.isprintable() or c.isspace() for c in sample):
        return "this is a text file, not an image"  # its content is not echoed: it may be private
    return f"not a recognised image format ({SUPPORTED} are accepted)"


def normalise_mode(im: Image.Image) -> Image.Image:
    """Any Pillow mode → 8-bit RGB; transparency is composited on white."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if im.mode == "F" and arr.max(initial=0) <= 1.0:
            top = 1.0
        arr = np.clip(arr / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if im.mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    elif im.mode in ("LA", "La", "PA", "RGBa"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im, mask=im.getchannel("A"))
        return background
    return im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


_TRANSPOSE = {  # EXIF orientation → the transposition that shows the picture upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _open_checked(data: bytes, max_pixels: int) -> tuple[Image.Image, str, int]:
    """Open untrusted bytes and check the header (format, pixel count) before any pixel is
    decoded; the image (first frame), its format and its number of frames."""
    if not data:
        raise MediaError("the file is empty (0 bytes)")
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > 2 * Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels // 2 + 1  # Pillow refuses above twice its setting
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limit decides
            im = Image.open(io.BytesIO(data), formats=OPEN_FORMATS)  # reads the header only
    except Image.DecompressionBombError:
        raise MediaError(
            f"the image is larger than the limit of {max_pixels / 1e6:.1f} megapixels (MAX_IMAGE_PIXELS); "
            "it may be a decompression bomb"
        ) from None
    except UnidentifiedImageError:
        raise MediaError(_describe_unknown(data)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaError(f"the image header is corrupt ({exc})") from None
    width, height = im.size
    if width * height > max_pixels:
        raise MediaError(
            f"the image is {width}×{height} = {width * height / 1e6:.1f} megapixels; the limit is "
            f"{max_pixels / 1e6:.1f} megapixels (MAX_IMAGE_PIXELS); it may be a decompression bomb"
        )
    if width == 0 or height == 0:
        raise MediaError("the image has no pixels (width or height is 0)")
    fmt = im.format or "?"
    try:
        frames = int(getattr(im, "n_frames", 1) or 1)
        if frames > 1:
            im.seek(0)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise MediaError(f"the {fmt} image data is truncated or corrupt ({exc})") from None
    return im, fmt, frames


def _load(im: Image.Image, fmt: str) -> None:
    """Decode the pixels (all of the data is read: truncation is an error)."""
    try:
        im.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise MediaError(f"the {fmt} image data is truncated or corrupt ({exc})") from None


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)  # ExifTags.Base.Orientation
        return value if value in _TRANSPOSE else 1
    except Exception:  # a broken EXIF block must not cost us the picture
        return 1


def decode_image(data: bytes, max_pixels: int) -> DecodedImage:
    """Decode untrusted image bytes into a normalised RGB image, or raise :class:`MediaError`."""
    im, fmt, frames = _open_checked(data, max_pixels)
    _load(im, fmt)
    orientation = _orientation(im)  # after the load: reading a PNG's EXIF loads it, hiding corrupt data
    if orientation != 1:  # no copy of the whole picture unless it must turn
        im = im.transpose(_TRANSPOSE[orientation])
    rgb = normalise_mode(im)
    mime, ext = ALLOWED_FORMATS[fmt]
    return DecodedImage(image=rgb, format=fmt, mime=mime, ext=ext, width=rgb.width, height=rgb.height, frames=frames)


STRIP_BYTES = 16 * 2**20  # the working memory of one strip in _reduced_rgb


def _reduced_rgb(im: Image.Image, factor: int) -> Image.Image:
    """The decoded image in RGB, ``factor`` times smaller on each side (box average), converted
    strip by strip: a full-size RGB copy of a large palette, grey or RGBA picture is never made."""
    if im.mode.startswith("I") or im.mode == "F":
        im = normalise_mode(im)  # their scale depends on the whole picture's maximum (rare modes)
    if factor <= 1:
        return normalise_mode(im)
    width, height = im.size
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    step = max(1, STRIP_BYTES // (4 * width * factor)) * factor
    for top in range(0, height, step):
        strip = normalise_mode(im.crop((0, top, width, min(height, top + step))))
        out.paste(strip.reduce(factor), (0, top // factor))
    return out


def decode_thumbnail(data: bytes, *, max_pixels: int, size: int) -> tuple[DecodedImage, Image.Image]:
    """Validate untrusted image bytes as :func:`decode_image` does and make the thumbnail
    (at most ``size`` pixels a side) without holding more than one decoded copy of the
    picture: JPEGs are decoded at 1/2, 1/4 or 1/8 of their size (DCT scaling, ``draft``), other
    formats in their own mode, then reduced strip by strip before anything is turned to RGB.
    A 7000×7000 PNG costs one decoding buffer, not three. The returned ``DecodedImage`` holds
    the full size (after EXIF orientation) and the reduced picture."""
    im, fmt, frames = _open_checked(data, max_pixels)
    width, height = im.size
    if fmt in ("JPEG", "MPO"):
        with contextlib.suppress(Exception):  # a scale the decoder cannot do: decode in full
            im.draft(None, (2 * size, 2 * size))
    _load(im, fmt)
    orientation = _orientation(im)  # after the load: reading a PNG's EXIF loads it, hiding corrupt data
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    scale = min(size / im.width, size / im.height)  # Pillow's reducing_gap=2: keep twice the final size
    reduced = _reduced_rgb(im, max(1, int(1 / (2 * scale))) if scale < 1 else 1)
    del im
    if orientation != 1:
        reduced = reduced.transpose(_TRANSPOSE[orientation])
    thumb = make_thumbnail(reduced, size)
    mime, ext = ALLOWED_FORMATS[fmt]
    decoded = DecodedImage(image=reduced, format=fmt, mime=mime, ext=ext, width=width, height=height, frames=frames)
    return decoded, thumb


def make_thumbnail(image: Image.Image, size: int) -> Image.Image:
    thumb = image.copy()
    # Bicubic: indistinguishable from Lanczos at thumbnail size, and 25% cheaper (bench/ingest.py).
    thumb.thumbnail((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return thumb


PHASH_SIDE = 32  # imagehash.phash: hash_size 8 × highfreq_factor 4


def perceptual_hash(image: Image.Image) -> str:
    """64-bit DCT perceptual hash as 16 hex digits (robust to re-encoding and resizing).

    The same value as ``imagehash.phash(image)``; the grey 32×32 reduction is done here first,
    which makes it three times faster on thumbnails."""
    small = image.convert("L").resize((PHASH_SIDE, PHASH_SIDE), Image.Resampling.LANCZOS)
    return str(imagehash.phash(small))


def content_box(
    image: Image.Image, tolerance: int = 24, share: float = 0.5, work: int = 512
) -> tuple[int, int, int, int]:
    """The image's box without a caption bar: a white or black band added above or below a
    picture (meme captions, "repost" banners, letterboxing). A band is the run of rows from the
    top or bottom edge in which at least ``share`` of the pixels are within ``tolerance`` of the
    edge row's main colour (text inside the bar leaves most of a row in the bar's colour); it
    counts when that colour is near white or near black and the band is 4–45 % of the height.
    Computed on a copy at most ``work`` pixels on its long side."""
    w, h = image.size
    scale = min(1.0, work / max(w, h))
    small = image.convert("RGB").resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
    pixels = np.asarray(small).astype(np.int16)
    rows = pixels.shape[0]

    def bar(order: Iterable[int]) -> int:
        count, colour = 0, None
        for i in order:
            line = pixels[i]
            if colour is None:
                values, counts = np.unique(line // 16, axis=0, return_counts=True)
                colour = line[np.all(line // 16 == values[counts.argmax()], axis=1)].mean(axis=0)
                if not (colour.min() >= 225 or colour.max() <= 30):
                    return 0  # not a white or black bar
            if np.all(np.abs(line - colour) <= tolerance, axis=1).mean() < share:
                break
            count += 1
        return count if 0.04 * rows <= count <= 0.45 * rows else 0

    top, bottom = bar(range(rows)), bar(range(rows - 1, -1, -1))
    if top + bottom > 0.6 * rows:
        top, bottom = (top, 0) if top >= bottom else (0, bottom)
    return (0, round(top / scale), w, round(h - bottom / scale))


def content_phash(image: Image.Image) -> str:
    """The perceptual hash of :func:`content_box`: matches a repost that added a caption bar."""
    return perceptual_hash(image.crop(content_box(image)))


def colour_signature(image: Image.Image) -> str:
    """The mean colours of a 4×4 grid over :func:`content_box`, as 96 hex digits. Perceptual
    hashes see only brightness structure, so two ads drawn on one template in different colours
    are a few bits apart; their colours are not (a mean difference of 25–70 of 255 against at
    most about 15 for a re-encoded, resized, cropped, captioned or watermarked copy)."""
    box = image.convert("RGB").crop(content_box(image))
    return box.resize((4, 4), Image.Resampling.BOX).tobytes().hex()


def colour_difference(a: bytes, b: bytes) -> float:
    """Mean absolute difference (0–255) of two colour signatures (as bytes, not hex)."""
    return float(np.abs(np.frombuffer(a, np.uint8).astype(np.int16) - np.frombuffer(b, np.uint8)).mean())


CORNER_KEEP = 0.94  # share of each side a corner crop keeps


def corner_phashes(image: Image.Image, keep: float = CORNER_KEEP) -> list[str]:
    """Perceptual hashes of the four corner crops that keep ``keep`` of each side. A perceptual
    hash does not survive a shift: a repost cut at one corner is 12–20 bits from its original,
    but within a few bits of the original's crop at that corner."""
    w, h = image.size
    cw, ch = max(1, round(w * keep)), max(1, round(h * keep))
    boxes = ((0, 0, cw, ch), (w - cw, 0, w, ch), (0, h - ch, cw, h), (w - cw, h - ch, w, h))
    return [perceptual_hash(image.crop(box)) for box in boxes]


def _write_atomic(target: Path, write: Callable[[IO[Any]], object]) -> None:
    """Write through a temporary file in the same folder, then rename (no half-written files)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with written_beside(target) as fh:
        write(fh)


@dataclass(frozen=True)
class PreparedImage:
    """A validated image and its thumbnail, in memory, not yet in the store."""

    stored: StoredImage
    data: bytes
    thumbnail: Image.Image


def prepare_image(data: bytes, *, max_pixels: int, thumbnail_size: int) -> PreparedImage:
    """Validate image bytes and compute everything the store keeps, without writing anything
    (so that a record whose second image is bad leaves no file behind from its first)."""
    decoded, thumb = decode_thumbnail(data, max_pixels=max_pixels, size=thumbnail_size)
    sha = hashlib.sha256(data).hexdigest()
    stored = StoredImage(
        sha256=sha,
        path=f"{sha[:2]}/{sha[2:4]}/{sha}.{decoded.ext}",
        thumb_path=f"thumbs/{sha[:2]}/{sha}.jpg",
        mime=decoded.mime,
        width=decoded.width,
        height=decoded.height,
        frames=decoded.frames,
        size_bytes=len(data),
        phash=perceptual_hash(thumb),
    )
    return PreparedImage(stored=stored, data=data, thumbnail=thumb)


def write_image(prepared: PreparedImage, media_dir: Path) -> StoredImage:
    """Put a prepared image and its thumbnail into the content-addressed store (idempotent)."""
    stored = prepared.stored
    original = media_dir / stored.path
    if not _reuse(original):
        _write_atomic(original, lambda fh: fh.write(prepared.data))
    thumb_file = media_dir / stored.thumb_path
    if not _reuse(thumb_file):
        _write_atomic(thumb_file, lambda fh: prepared.thumbnail.save(fh, "JPEG", quality=THUMB_QUALITY))
    return stored


def _reuse(path: Path) -> bool:
    """Whether the store already holds ``path``; if so its time is set to now, so that
    ``media gc`` (which takes only files older than its age threshold) leaves a file alone that
    an ingest is about to refer to again."""
    try:
        os.utime(path)
        return True
    except FileNotFoundError:
        return False
    except OSError:
        return path.exists()


def store_image(data: bytes, media_dir: Path, *, max_pixels: int, thumbnail_size: int) -> StoredImage:
    """Validate image bytes and keep them (and a thumbnail) in the content-addressed store."""
    return write_image(prepare_image(data, max_pixels=max_pixels, thumbnail_size=thumbnail_size), media_dir)


def load_normalised(media_dir: Path, rel_path: str, max_pixels: int) -> Image.Image:
    """Open a stored image for display or a model: RGB, oriented, first frame."""
    return decode_image(read_image_file(media_dir / rel_path, max_bytes=2**40), max_pixels).image


def obscured(image: Image.Image) -> Image.Image:
    """The image shrunk to 12 pixels across and blown up again: colours and rough shapes stay,
    nothing graphic can be made out."""
    w, h = image.size
    scale = 12 / max(w, h)
    tiny = image.convert("RGB").resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)
    return tiny.resize((w, h), Image.Resampling.BICUBIC)


def _jpeg(image: Image.Image, quality: int = 88) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _shown(image: Image.Image, blur: bool, grey: bool) -> Image.Image:
    image = obscured(image) if blur else image
    return image.convert("L") if grey else image


def display_jpeg(
    media_dir: Path, rel_path: str, max_pixels: int, max_side: int, blur: bool = False, grey: bool = False
) -> bytes:
    """A stored image for a screen: normalised, at most ``max_side`` pixels, as JPEG bytes;
    :func:`obscured` when ``blur``, in greyscale when ``grey``."""
    image = load_normalised(media_dir, rel_path, max_pixels)
    image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return _jpeg(_shown(image, blur, grey))


def data_uri(media_dir: Path, rel_path: str, blur: bool = False, grey: bool = False) -> str | None:
    """A stored file (a thumbnail) as a data: URI for tables, :func:`obscured` when ``blur``,
    in greyscale when ``grey``; None if the file is missing or unreadable."""
    try:
        payload = (media_dir / rel_path).read_bytes()
        if blur or grey:
            with Image.open(io.BytesIO(payload)) as image:
                payload = _jpeg(_shown(image, blur, grey))
    except (OSError, Image.DecompressionBombError):
        return None
    mime = "image/jpeg" if blur or grey or rel_path.endswith(".jpg") else "image/png"
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


# --------------------------------------------------------------------------------------------
# Store maintenance: files that crashes left behind

# The store's own names: originals ab/cd/<sha256>.<ext> and thumbnails thumbs/ab/<sha256>.jpg.
_STORE_NAME = re.compile(r"[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}\.[a-z]{3,4}|thumbs/[0-9a-f]{2}/[0-9a-f]{64}\.jpg")
GC_MIN_AGE = timedelta(hours=1)


@dataclass
class Garbage:
    """What :func:`collect_garbage` found (and removed, with ``delete``) in the media store."""

    temp_files: list[tuple[str, int]] = field(default_factory=list)  # (path under MEDIA_DIR, bytes)
    orphans: list[tuple[str, int]] = field(default_factory=list)  # store files no media row refers to
    too_recent: int = 0  # candidates younger than the age threshold: possibly being written now
    foreign: list[str] = field(default_factory=list)  # files that are not the store's own: left alone
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, why) when deleting
    deleted: bool = False

    @property
    def files(self) -> list[tuple[str, int]]:
        return self.temp_files + self.orphans

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.files)

    def summary(self) -> str:
        verb = "removed" if self.deleted else "would remove"
        temp, orphans = self.temp_files, self.orphans
        text = (
            f"{verb} {len(temp)} temporary files ({sum(s for _, s in temp):,} bytes) and {len(orphans)} orphaned "
            f"files ({sum(s for _, s in orphans):,} bytes): {self.bytes:,} bytes"
        )
        if self.too_recent:
            text += f"; {self.too_recent} newer than the age threshold kept"
        if self.foreign:
            text += f"; {len(self.foreign)} files that are not the store's own left alone"
        if self.failed:
            text += f"; {len(self.failed)} could not be removed"
        return text


def collect_garbage(
    sessions: sessionmaker[Session],
    media_dir: Path,
    actor: Actor,
    *,
    delete: bool = False,
    min_age: timedelta = GC_MIN_AGE,
    now: datetime | None = None,
) -> Garbage:
    """Temporary files (``.tmp-*``, left by a crash during a write) and store files that no
    media row refers to (as ``path`` or ``thumb_path``: a crash between writing the files and
    committing the rows), both older than ``min_age`` so that nothing a running ingest is
    writing, or is about to refer to again, is touched (:func:`write_image` refreshes the time
    of a file it reuses). Files that do not have the store's names are never removed, and
    links are not followed. A dry run unless ``delete``; a deletion is written to the audit log
    (Action.MEDIA_GC). Needs the purge permission (admins; the command line)."""
    from sqlalchemy import or_, select

    from db.models import Media
    from review import audit
    from review.auth import Permission, require_live

    with sessions() as session:
        actor = require_live(session, actor, Permission.PURGE)
    cutoff = (now or datetime.now(UTC)).timestamp() - min_age.total_seconds()
    found = Garbage()
    candidates: dict[str, int] = {}
    root = Path(media_dir)
    for folder, dirs, names in os.walk(root) if root.is_dir() else ():
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            try:
                info = path.lstat()
            except OSError:
                continue  # gone meanwhile
            if not stat.S_ISREG(info.st_mode):
                found.foreign.append(rel)
            elif info.st_mtime > cutoff and (name.startswith(TEMP_PREFIX) or _STORE_NAME.fullmatch(rel)):
                found.too_recent += 1
            elif name.startswith(TEMP_PREFIX):
                found.temp_files.append((rel, info.st_size))
            elif _STORE_NAME.fullmatch(rel):
                candidates[rel] = info.st_size
            else:
                found.foreign.append(rel)
    names = sorted(candidates)
    with sessions() as session:
        for start in range(0, len(names), 500):
            part = names[start : start + 500]
            rows = session.execute(
                select(Media.path, Media.thumb_path).where(or_(Media.path.in_(part), Media.thumb_path.in_(part)))
            )
            referenced = {p for row in rows for p in row}
            found.orphans += [(rel, candidates[rel]) for rel in part if rel not in referenced]
    if not delete:
        return found
    removed: list[tuple[str, int]] = []
    for rel, size in found.files:
        path = root / rel
        try:
            if path.lstat().st_mtime > cutoff:  # reused since it was listed
                found.too_recent += 1
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            found.failed.append((rel, exc.strerror or str(exc)))
            continue
        removed.append((rel, size))  # emptied folders stay: an ingest may be about to write into one
    kept = {rel for rel, _ in removed}
    found.temp_files = [f for f in found.temp_files if f[0] in kept]
    found.orphans = [f for f in found.orphans if f[0] in kept]
    found.deleted = True
    audit.log(
        sessions,
        actor,
        audit.Action.MEDIA_GC,
        str(root),
        temp_files=len(found.temp_files),
        orphans=len(found.orphans),
        bytes=found.bytes,
        min_age_minutes=min_age.total_seconds() / 60,
        failed=len(found.failed),
    )
    return found

"""The demo's drawings: Pillow pictures of ads, product shots, scenes, memes and screenshots.

Each function draws one kind of picture from plain parameters, so that the demo posts
(``posts.toml``) can name a drawing and its parameters instead of holding code. Functions with an
``rng`` parameter draw from the random stream they are given; everything else is fixed, so the
same parameters give the same pixels. Tests use ``cjk_font`` and these drawings to make realistic
images.
"""

from __future__ import annotations

import math
import random
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

SIZE = 720

RGB = tuple[int, int, int]


@cache
def _font_file() -> tuple[str, int]:
    """A font that draws Chinese and Latin text: Noto Sans CJK SC from the noto-cjk-sans-otc
    wheel (a requirement), else a system Noto/WenQuanYi font."""
    try:
        import noto_cjk_sans_otc

        return str(noto_cjk_sans_otc.FONT_PATH), 2  # index 2 of the collection: Simplified Chinese
    except ImportError:
        pass
    for candidate in (
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    ):
        if Path(candidate).is_file():
            return candidate, 2 if "Noto" in candidate else 0
    raise RuntimeError("no CJK font found: pip install -r requirements.txt (noto-cjk-sans-otc)")


@cache
def cjk_font(size: int) -> ImageFont.FreeTypeFont:
    path, index = _font_file()
    return ImageFont.truetype(path, size, index=index)


def gradient(size: tuple[int, int], top: RGB, bottom: RGB) -> Image.Image:
    w, h = size
    column = Image.new("RGB", (1, h))
    for y in range(h):
        t = y / max(1, h - 1)
        column.putpixel((0, y), tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    return column.resize((w, h))


def draw_centered(draw: ImageDraw.ImageDraw, y: int, text: str, size: int, fill: RGB, width: int = SIZE) -> int:
    font = cjk_font(size)
    box = draw.textbbox((0, 0), text, font=font)
    draw.text(((width - (box[2] - box[0])) // 2, y), text, font=font, fill=fill)
    return y + int(box[3] - box[1]) + size // 3


def draw_lines(img: Image.Image, lines: list[tuple[str, int, RGB]], top: int, shadow: bool = False) -> None:
    draw = ImageDraw.Draw(img)
    y = top
    for text, size, color in lines:
        if shadow:
            draw_centered(draw, y + 2, text, size, (0, 0, 0), img.width)
        y = draw_centered(draw, y, text, size, color, img.width)


def bottle(draw: ImageDraw.ImageDraw, cx: int, cy: int, color: RGB, label: str | None = None) -> None:
    draw.rounded_rectangle((cx - 70, cy - 120, cx + 70, cy + 150), radius=30, fill=color, outline=(40, 40, 40), width=3)
    draw.rectangle((cx - 30, cy - 170, cx + 30, cy - 120), fill=(220, 220, 220), outline=(40, 40, 40), width=3)
    if label:
        draw.rectangle((cx - 60, cy - 20, cx + 60, cy + 50), fill=(255, 255, 255))
        font = cjk_font(26)
        box = draw.textbbox((0, 0), label, font=font)
        draw.text((cx - (box[2] - box[0]) // 2, cy - 5), label, font=font, fill=(30, 30, 30))


def ad_card(lines: list[tuple[str, int, RGB]], top: RGB, bottom: RGB, product: RGB, label: str) -> Image.Image:
    img = gradient((SIZE, SIZE), top, bottom)
    draw = ImageDraw.Draw(img)
    bottle(draw, SIZE // 2, 470, product, label)
    draw_lines(img, lines, 40, shadow=True)
    return img


def product_photo(kind: str, color: RGB, rng: random.Random) -> Image.Image:
    """A plain product shot: soft background, one object, a shadow, no text."""
    r, g, b = (min(255, c + rng.randint(0, 20)) for c in (225, 222, 215))
    img = gradient((SIZE, SIZE), (r, g, b), (200, 196, 190))
    draw = ImageDraw.Draw(img)
    draw.ellipse((180, 560, 540, 620), fill=(170, 165, 160))
    if kind == "mug":
        draw.rounded_rectangle((230, 260, 450, 580), radius=24, fill=color, outline=(60, 60, 60), width=4)
        draw.arc((410, 330, 530, 480), start=-90, end=90, fill=color, width=26)
    elif kind == "sneaker":
        draw.polygon([(150, 520), (200, 400), (330, 380), (420, 440), (580, 470), (590, 540), (150, 550)], fill=color)
        draw.rectangle((150, 540, 590, 565), fill=(245, 245, 245))
        for x in range(260, 380, 30):
            draw.line((x, 400, x + 20, 440), fill=(250, 250, 250), width=6)
    elif kind == "backpack":
        draw.rounded_rectangle((220, 200, 500, 580), radius=60, fill=color, outline=(50, 50, 50), width=4)
        draw.rounded_rectangle((260, 390, 460, 540), radius=20, fill=tuple(max(0, c - 40) for c in color))
        draw.arc((290, 140, 430, 260), start=180, end=360, fill=(60, 60, 60), width=12)
    elif kind == "plant":
        draw.polygon([(270, 420), (450, 420), (420, 580), (300, 580)], fill=(190, 110, 70))
        for i in range(9):
            angle = -70 + i * 17
            dx = int(160 * math.sin(math.radians(angle)))
            draw.ellipse((360 + dx - 40, 250 - abs(dx) // 3 - 60, 360 + dx + 40, 250 - abs(dx) // 3 + 60), fill=color)
    elif kind == "headphones":
        draw.arc((220, 180, 500, 460), start=180, end=360, fill=(40, 40, 40), width=24)
        draw.rounded_rectangle((190, 300, 270, 440), radius=30, fill=color)
        draw.rounded_rectangle((450, 300, 530, 440), radius=30, fill=color)
    elif kind == "books":
        for i, shade in enumerate((color, (90, 120, 160), (160, 90, 90), (90, 140, 100))):
            draw.rectangle((200 + i * 8, 480 - i * 70, 520 - i * 8, 545 - i * 70), fill=shade, outline=(40, 40, 40))
    elif kind == "coffee":
        draw.ellipse((200, 250, 520, 560), fill=(245, 245, 245), outline=(90, 90, 90), width=4)
        draw.ellipse((240, 290, 480, 520), fill=color)
        draw.ellipse((320, 360, 400, 450), fill=(240, 225, 200))
    else:  # lamp
        draw.polygon([(280, 200), (440, 200), (500, 330), (220, 330)], fill=color)
        draw.rectangle((350, 330, 370, 540), fill=(80, 80, 80))
        draw.rectangle((280, 540, 440, 570), fill=(80, 80, 80))
    return img.filter(ImageFilter.GaussianBlur(0.6))


def fire_scene(rng: random.Random) -> Image.Image:
    img = gradient((SIZE, SIZE), (40, 20, 20), (90, 30, 10))
    draw = ImageDraw.Draw(img)
    draw.rectangle((200, 380, 520, 640), fill=(30, 25, 25))  # burning house
    draw.polygon([(180, 390), (360, 260), (540, 390)], fill=(25, 20, 20))
    for _ in range(70):
        x = rng.randint(120, 600)
        h = rng.randint(80, 330)
        w = rng.randint(20, 60)
        color = rng.choice([(255, 90, 0), (255, 160, 20), (255, 220, 80), (230, 40, 10)])
        draw.polygon([(x - w, 640), (x, 640 - h), (x + w, 640)], fill=color)
    for _ in range(25):  # smoke
        x, y, r = rng.randint(100, 620), rng.randint(20, 250), rng.randint(30, 80)
        g = rng.randint(60, 110)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(g, g, g))
    draw.rectangle((0, 640, SIZE, SIZE), fill=(20, 15, 15))
    return img.filter(ImageFilter.GaussianBlur(1.5))


def storm_scene(rng: random.Random) -> Image.Image:
    img = gradient((SIZE, SIZE), (50, 55, 65), (90, 95, 105))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 430, SIZE, SIZE), fill=(95, 85, 60))  # flood water
    for x in (120, 330, 560):
        draw.rectangle((x, 300, x + 120, 470), fill=(150, 140, 130))
        draw.polygon([(x - 10, 300), (x + 60, 240), (x + 130, 300)], fill=(110, 60, 50))
    draw.rectangle((0, 440, SIZE, SIZE), fill=(105, 90, 60))
    for _ in range(300):  # rain
        x, y = rng.randint(0, SIZE), rng.randint(0, SIZE)
        draw.line((x, y, x - 8, y + 30), fill=(190, 195, 205), width=2)
    draw.line((500, 0, 460, 120, 520, 140, 470, 260), fill=(250, 250, 210), width=5)  # lightning
    return img


def beach_scene(rng: random.Random) -> Image.Image:
    img = gradient((SIZE, SIZE), (90, 170, 240), (190, 225, 250))
    draw = ImageDraw.Draw(img)
    sx, sy = rng.randint(60, 600), rng.randint(40, 200)
    draw.ellipse((sx, sy, sx + 120, sy + 120), fill=(255, 230, 90))
    draw.rectangle((0, 380, SIZE, 520), fill=(30, 120, 190))
    for y in range(395, 515, 22):
        draw.arc((rng.randint(-40, 40), y, SIZE + 40, y + 30), start=200, end=340, fill=(220, 240, 255), width=3)
    draw.rectangle((0, 500, SIZE, SIZE), fill=(235, 210, 160))
    px = rng.randint(100, 600)
    draw.line((px - 40, 640, px, 420), fill=(110, 80, 50), width=14)  # palm
    for dx, dy in ((-90, -10), (90, -20), (-60, 40), (70, 40), (0, -60)):
        draw.line((px, 420, px + dx, 420 + dy), fill=(40, 140, 60), width=16)
    for _ in range(rng.randint(2, 6)):  # people on the sand
        x, y = rng.randint(40, 680), rng.randint(540, 680)
        draw.ellipse((x - 10, y - 40, x + 10, y - 20), fill=(120, 80, 60))
        draw.rectangle(
            (x - 10, y - 20, x + 10, y + 15), fill=rng.choice([(200, 50, 50), (50, 90, 200), (240, 240, 240)])
        )
    return img


def falling_chart() -> Image.Image:
    img = Image.new("RGB", (SIZE, SIZE), (250, 250, 250))
    draw = ImageDraw.Draw(img)
    for y in range(120, 620, 100):
        draw.line((80, y, 680, y), fill=(225, 225, 225), width=2)
    points = [(80, 150), (160, 190), (230, 170), (300, 260), (370, 300), (440, 280), (510, 420), (600, 520), (680, 600)]
    draw.line(points, fill=(220, 30, 30), width=8)
    draw.text((90, 40), "某某币 / USDT  -78.5%", font=cjk_font(40), fill=(200, 20, 20))
    return img


def cat_picture() -> Image.Image:
    img = gradient((SIZE, SIZE), (250, 240, 225), (235, 215, 190))
    draw = ImageDraw.Draw(img)
    draw.ellipse((200, 300, 520, 620), fill=(240, 170, 80))  # body
    draw.ellipse((250, 170, 470, 380), fill=(245, 180, 90))  # head
    draw.polygon([(265, 220), (280, 130), (330, 195)], fill=(245, 180, 90))
    draw.polygon([(455, 220), (440, 130), (390, 195)], fill=(245, 180, 90))
    draw.arc((300, 260, 340, 290), start=200, end=340, fill=(40, 40, 40), width=5)  # sleepy eyes
    draw.arc((380, 260, 420, 290), start=200, end=340, fill=(40, 40, 40), width=5)
    draw.polygon([(350, 305), (370, 305), (360, 318)], fill=(200, 90, 90))
    return img


def meme(picture: Image.Image, top: str, bottom: str | None = None) -> Image.Image:
    img = picture.copy()
    lines = [(top, 64, (255, 255, 255))]
    draw_lines(img, lines, 30, shadow=True)
    if bottom:
        draw_lines(img, [(bottom, 52, (255, 255, 255))], SIZE - 110, shadow=True)
    return img


def long_screenshot(rows: list[tuple[str, str]], title: str, width: int = 720) -> Image.Image:
    """A phone screenshot of a listing, dense with text, prices and dates."""
    row_h = 92
    img = Image.new("RGB", (width, 140 + row_h * len(rows)), (245, 245, 245))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, width, 110), fill=(230, 60, 50))
    draw.text((30, 28), title, font=cjk_font(44), fill=(255, 255, 255))
    y = 130
    for name, price in rows:
        draw.rectangle((16, y, width - 16, y + row_h - 12), fill=(255, 255, 255))
        draw.text((36, y + 18), name, font=cjk_font(30), fill=(30, 30, 30))
        box = draw.textbbox((0, 0), price, font=cjk_font(34))
        draw.text((width - 40 - (box[2] - box[0]), y + 16), price, font=cjk_font(34), fill=(220, 40, 30))
        y += row_h
    return img


def graphic_placeholder(caption: str) -> Image.Image:
    """Stands in for graphic (gore/violence) media: nothing graphic is drawn."""
    img = Image.new("RGB", (SIZE, SIZE), (70, 70, 70))
    draw = ImageDraw.Draw(img)
    for x in range(-SIZE, SIZE, 60):
        draw.line((x, 0, x + SIZE, SIZE), fill=(150, 20, 20), width=18)
    draw.rectangle((60, 250, 660, 470), fill=(20, 20, 20))
    draw_lines(
        img,
        [
            ("GRAPHIC CONTENT", 56, (255, 80, 80)),
            ("模拟血腥画面 · 占位图", 40, (255, 255, 255)),
            (caption, 28, (200, 200, 200)),
        ],
        280,
    )
    return img


def with_caption_bar(picture: Image.Image, text: str) -> Image.Image:
    """A repost with a white bar and a watermark-like caption under the picture."""
    out = Image.new("RGB", (picture.width, picture.height + 90), (255, 255, 255))
    out.paste(picture, (0, 0))
    ImageDraw.Draw(out).text((20, picture.height + 20), text, font=cjk_font(40), fill=(20, 20, 20))
    return out


def crop_fraction(picture: Image.Image, fraction: float) -> Image.Image:
    """A repost cropped by ``fraction`` of each dimension, evenly on both sides."""
    dx, dy = int(picture.width * fraction / 2), int(picture.height * fraction / 2)
    return picture.crop((dx, dy, picture.width - dx, picture.height - dy))


def resized(picture: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A repost scaled to ``size`` (Lanczos)."""
    return picture.resize(size, Image.Resampling.LANCZOS)

"""The demo dataset: about 40 realistic synthetic posts, drawn with Pillow, no downloads.

``python -m review demo`` writes the images and a ``posts.jsonl`` into a temporary folder and
ingests them through the normal ingest path (source ``demo``), so the demo exercises exactly
what an operator's import does. Everything is deterministic: the same posts every run.

The scenarios cover what the desk exists for: ads with absolute or miracle claims (最好,
100%有效, 国家级), contact-detail solicitation (WeChat/QQ/phone/Telegram), plain product photos,
memes whose caption contradicts the picture (a fire captioned 岁月静好), a long screenshot
dense with prices and dates, placeholders standing in for graphic content, and reposts of the
same image re-encoded, resized, cropped or captioned.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFilter, ImageFont
from sqlalchemy.orm import Session, sessionmaker

from review.auth import Actor, Permission
from review.config import Settings
from review.errors import ReviewError
from review.ingest import IngestReport, Progress, ingest_paths

DEMO_SOURCE = "demo"
BASE_TIME = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
SIZE = 720

RGB = tuple[int, int, int]


# --------------------------------------------------------------------------------------------
# Drawing helpers (also used by tests to make realistic images)


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
    return y + (box[3] - box[1]) + size // 3


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
    bg = tuple(min(255, c + rng.randint(0, 20)) for c in (225, 222, 215))
    img = gradient((SIZE, SIZE), bg, (200, 196, 190))  # type: ignore[arg-type]
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


def with_caption_bar(img: Image.Image, text: str) -> Image.Image:
    out = Image.new("RGB", (img.width, img.height + 90), (255, 255, 255))
    out.paste(img, (0, 0))
    ImageDraw.Draw(out).text((20, img.height + 20), text, font=cjk_font(40), fill=(20, 20, 20))
    return out


def crop_fraction(img: Image.Image, fraction: float) -> Image.Image:
    dx, dy = int(img.width * fraction / 2), int(img.height * fraction / 2)
    return img.crop((dx, dy, img.width - dx, img.height - dy))


# --------------------------------------------------------------------------------------------
# The demo posts


@dataclass
class DemoPost:
    text: str
    author: str
    scenario: str
    images: list[tuple[str, Image.Image, dict[str, Any]]] = field(default_factory=list)


RED: RGB = (235, 40, 40)
WHITE: RGB = (255, 255, 255)
YELLOW: RGB = (255, 225, 60)


def demo_posts() -> list[DemoPost]:
    rng = random.Random(20261101)
    ad_cream = ad_card(
        [("全网最好的美白面霜", 54, WHITE), ("100%有效 · 7天见效", 46, YELLOW), ("限时 ¥199  原价¥999", 40, WHITE)],
        (230, 110, 160),
        (120, 40, 90),
        (250, 240, 245),
        "雪肌霜",
    )
    fire = fire_scene(rng)
    mug_photo = product_photo("mug", (40, 110, 180), rng)

    posts = [
        # Ads with absolute or miracle claims (advertising-law violations)
        DemoPost(
            "全网最好的美白面霜，100%有效，7天见效！姐妹们冲",
            "beauty_queen88",
            "ad_absolute_claim",
            [("cream.jpg", ad_cream, {})],
        ),
        DemoPost(
            "国家级专利 第一品牌，降血压神器，一个疗程根治高血压",
            "health_shop_cn",
            "ad_absolute_claim",
            [
                (
                    "bp.jpg",
                    ad_card(
                        [("国家级专利 第一品牌", 50, WHITE), ("根治高血压", 60, YELLOW), ("无效退款", 40, WHITE)],
                        (30, 90, 60),
                        (10, 40, 30),
                        (240, 240, 240),
                        "降压宝",
                    ),
                    {},
                )
            ],
        ),
        DemoPost(
            "纯天然减肥茶，一个月瘦20斤，0副作用",
            "slim_tea_store",
            "ad_absolute_claim",
            [
                (
                    "tea.jpg",
                    ad_card(
                        [("一个月瘦20斤", 58, WHITE), ("纯天然 0副作用", 44, YELLOW)],
                        (120, 180, 80),
                        (40, 90, 30),
                        (200, 230, 170),
                        "瘦身茶",
                    ),
                    {},
                )
            ],
        ),
        DemoPost(
            "The #1 best supplement in the world. 100% guaranteed results or your money back!",
            "vital_boost",
            "ad_absolute_claim",
            [
                (
                    "supplement.jpg",
                    ad_card(
                        [("#1 IN THE WORLD", 58, WHITE), ("100% GUARANTEED", 50, YELLOW)],
                        (40, 60, 150),
                        (10, 20, 60),
                        (250, 200, 60),
                        "VITA+",
                    ),
                    {},
                )
            ],
        ),
        DemoPost(
            "Lose 10 kg in 7 days — doctors hate this one trick",
            "fit_fast_2026",
            "ad_absolute_claim",
            [
                (
                    "diet.jpg",
                    ad_card(
                        [("LOSE 10KG", 70, WHITE), ("IN 7 DAYS", 60, YELLOW), ("NO DIET NO GYM", 36, WHITE)],
                        (250, 120, 40),
                        (150, 40, 10),
                        (255, 255, 255),
                        "KETO",
                    ),
                    {},
                )
            ],
        ),
        DemoPost(
            "史上最低价！iPhone 17 Pro 仅需 ¥999，手慢无",
            "deal_hunter_77",
            "ad_absolute_claim",
            [
                (
                    "phone_deal.png",
                    ad_card(
                        [("史上最低价", 64, YELLOW), ("iPhone 17 Pro ¥999", 48, WHITE), ("原价 ¥8999", 40, WHITE)],
                        (20, 20, 20),
                        (70, 70, 70),
                        (180, 180, 190),
                        "Pro",
                    ),
                    {"format": "PNG"},
                )
            ],
        ),
        # Contact-detail solicitation and scams
        DemoPost(
            "想要同款的姐妹加我微信 wx: meiyan_8888，私聊有优惠",
            "meiyan_daigou",
            "contact_solicitation",
            [
                (
                    "wechat.jpg",
                    ad_card(
                        [("正品代购 全网最低", 50, WHITE), ("加微信 meiyan_8888", 48, YELLOW)],
                        (200, 80, 120),
                        (90, 20, 60),
                        (250, 250, 250),
                        "代购",
                    ),
                    {},
                )
            ],
        ),
        DemoPost(
            "兼职刷单，日赚500+，在家就能做，联系电话 138-1234-5678",
            "parttime_job_hr",
            "scam",
            [
                (
                    "job.jpg",
                    ad_card(
                        [("兼职刷单 日赚500+", 52, WHITE), ("电话 13812345678", 48, YELLOW)],
                        (60, 60, 60),
                        (20, 20, 20),
                        (250, 220, 90),
                        "高薪",
                    ),
                    {},
                )
            ],
        ),
        DemoPost(
            "免费领取 iPhone！关注并私信 QQ 123456789 领奖",
            "lucky_draw_official",
            "fake_giveaway",
            [
                (
                    "giveaway.jpg",
                    ad_card(
                        [("免费送 iPhone", 60, YELLOW), ("QQ: 123456789", 48, WHITE), ("仅限今天", 40, WHITE)],
                        (150, 30, 200),
                        (60, 10, 90),
                        (200, 200, 210),
                        "抽奖",
                    ),
                    {},
                )
            ],
        ),
        DemoPost(
            "FREE GIVEAWAY! DM me on Telegram @win_prize_now to claim your prize 🎁",
            "prize_center",
            "fake_giveaway",
            [
                (
                    "tg.jpg",
                    ad_card(
                        [("FREE GIVEAWAY", 62, YELLOW), ("t.me/win_prize_now", 44, WHITE)],
                        (10, 130, 200),
                        (5, 50, 100),
                        (230, 230, 230),
                        "WIN",
                    ),
                    {},
                )
            ],
        ),
        DemoPost(
            "代开各类发票，正规可查，联系 V: fapiao_2024",
            "tax_service_365",
            "illegal_service",
            [
                (
                    "invoice.jpg",
                    ad_card(
                        [("代开发票 正规可查", 54, WHITE), ("V: fapiao_2024", 48, YELLOW)],
                        (90, 90, 120),
                        (30, 30, 50),
                        (255, 255, 255),
                        "发票",
                    ),
                    {},
                )
            ],
        ),
        # Plain product photos (benign)
        DemoPost("新买的马克杯，颜色很喜欢", "lin_xiaoyu", "product_photo", [("mug.jpg", mug_photo, {})]),
        DemoPost(
            "Finally got my running shoes for the marathon",
            "runner_joe",
            "product_photo",
            [("sneaker.jpg", product_photo("sneaker", (220, 60, 60), rng), {})],
        ),
        DemoPost(
            "Weekend hike with my new backpack",
            "outdoor_amy",
            "product_photo",
            [("backpack.jpg", product_photo("backpack", (60, 120, 80), rng), {})],
        ),
        DemoPost(
            "办公室的绿萝长得真好",
            "office_plant_fan",
            "product_photo",
            [("plant.jpg", product_photo("plant", (50, 150, 70), rng), {})],
        ),
        DemoPost(
            "降噪耳机到了，通勤神器",
            "commute_zhang",
            "product_photo",
            [("headphones.jpg", product_photo("headphones", (30, 30, 30), rng), {})],
        ),
        DemoPost(
            "Reading list for this month 📚",
            "bookworm_kate",
            "product_photo",
            [("books.png", product_photo("books", (200, 160, 60), rng), {"format": "PNG"})],
        ),
        DemoPost(
            "今天的咖啡拉花，还行吧",
            "latte_art_li",
            "product_photo",
            [("coffee.jpg", product_photo("coffee", (150, 100, 60), rng), {})],
        ),
        DemoPost(
            "New desk lamp, warm light is so cozy",
            "home_decor_sam",
            "product_photo",
            [("lamp.jpg", product_photo("lamp", (240, 200, 120), rng), {})],
        ),
        # Memes and captions that flip the picture's meaning
        DemoPost(
            "岁月静好 ☕", "quiet_life_1990", "image_text_mismatch", [("fire_meme.jpg", meme(fire, "岁月静好"), {})]
        ),
        DemoPost(
            "今天天气真好，适合全家出游！",
            "weather_fan",
            "image_text_mismatch",
            [("storm.jpg", meme(storm_scene(rng), "今天天气真好"), {})],
        ),
        DemoPost(
            "Worst hurricane ever, the whole coast is destroyed. Stay safe everyone!",
            "breaking_news_now",
            "misinformation",
            [("beach.jpg", beach_scene(rng), {})],
        ),
        DemoPost(
            "稳赚不赔，闭眼入，下周翻十倍 🚀",
            "crypto_master",
            "image_text_mismatch",
            [("chart.png", falling_chart(), {"format": "PNG"})],
        ),
        DemoPost(
            "周一早上的我",
            "cat_daily",
            "meme_consistent",
            [("cat.jpg", meme(cat_picture(), "周一的我", "还没睡醒"), {})],
        ),
        # Screenshots dense with text and prices
        DemoPost(
            "双11清单整理好了，价格都在图里",
            "shopping_notes",
            "dense_screenshot",
            [
                (
                    "list.png",
                    long_screenshot(
                        [
                            ("洗衣液 3kg 家庭装", "¥39.9"),
                            ("保温杯 500ml", "¥59"),
                            ("无线鼠标", "¥79.00"),
                            ("纸巾 24包", "¥45.8"),
                            ("电动牙刷 (11.11 00:00 开抢)", "¥129"),
                            ("空气炸锅 5L", "¥199"),
                            ("羽绒服 限时秒杀", "¥299"),
                            ("蓝牙耳机", "¥99"),
                            ("猫粮 10kg", "¥168"),
                            ("台灯 护眼", "¥89"),
                            ("大米 10kg 东北", "¥59.9"),
                            ("咖啡豆 1kg", "¥118"),
                            ("跑步鞋", "¥269"),
                            ("行李箱 24寸", "¥359"),
                            ("保湿面膜 30片", "¥79.9"),
                            ("儿童绘本 10册", "¥66"),
                            ("机械键盘", "¥249"),
                            ("智能手环 (11.11 20:00 第二波)", "¥149"),
                            ("瑜伽垫", "¥49"),
                            ("床上四件套", "¥189"),
                            ("牛奶 24盒", "¥62.5"),
                            ("洗发水 1L", "¥55"),
                            ("充电宝 20000mAh", "¥109"),
                            ("保温饭盒", "¥38"),
                        ],
                        "双11 好物清单 2026-11-11",
                    ),
                    {"format": "PNG"},
                )
            ],
        ),
        DemoPost(
            "老师带单，保本高收益，年化30%，名额有限",
            "wealth_mentor_wang",
            "scam",
            [
                (
                    "invest.png",
                    long_screenshot(
                        [
                            ("今日收益", "+¥12,800"),
                            ("本周收益", "+¥56,300"),
                            ("保本承诺", "100%"),
                            ("年化收益", "30%"),
                            ("入金账户 6222 0212 3456 7890", "转账"),
                            ("截止 2026-11-30", "名额 3"),
                            ("联系助理 VX", "wm_8899"),
                        ],
                        "财富自由 VIP 群",
                    ),
                    {"format": "PNG"},
                )
            ],
        ),
        # Placeholders for graphic content
        DemoPost(
            "现场太惨烈了，大家注意安全",
            "city_witness",
            "graphic_placeholder",
            [("graphic1.jpg", graphic_placeholder("accident scene stand-in"), {})],
        ),
        DemoPost(
            "Warning: footage from the fight last night",
            "street_cam_x",
            "graphic_placeholder",
            [("graphic2.jpg", graphic_placeholder("violence stand-in"), {})],
        ),
        # Reposts of the same images, altered the way reposts are
        DemoPost(
            "转发：全网最好的面霜，真的100%有效",
            "repost_bot_01",
            "repost",
            [("cream_lowq.jpg", ad_cream, {"quality": 30})],
        ),
        DemoPost(
            "姐妹推荐的面霜，据说最好用",
            "xiao_mei_123",
            "repost",
            [("cream_small.jpg", ad_cream.resize((SIZE // 2, SIZE // 2), Image.Resampling.LANCZOS), {})],
        ),
        DemoPost(
            "求链接！这个面霜真的100%有效吗",
            "curious_cat_zz",
            "repost",
            [("cream_crop.jpg", crop_fraction(ad_cream, 0.05), {})],
        ),
        DemoPost(
            "岁月静好",
            "copycat_life",
            "repost",
            [("fire_small.jpg", meme(fire, "岁月静好").resize((480, 480), Image.Resampling.LANCZOS), {"quality": 60})],
        ),
        DemoPost(
            "转：岁月静好（水印版）",
            "meme_collector",
            "repost",
            [("fire_bar.jpg", with_caption_bar(meme(fire, "岁月静好"), "@meme_collector"), {})],
        ),
        DemoPost("同款杯子，也很好看", "mug_lover", "repost", [("mug_again.jpg", mug_photo, {"quality": 55})]),
        # Text-only posts
        DemoPost("今天天气不错，出去走走", "walker_chen", "text_only"),
        DemoPost("You are all idiots, get lost and never come back", "angry_user_42", "harassment_text"),
        DemoPost("有没有人一起拼单？满300减50", "group_buy_girl", "text_only"),
        # Several images in one post
        DemoPost(
            "开箱！第二张是商家的宣传图，说是最好的",
            "unboxing_tom",
            "multi_image_claim",
            [
                ("unbox1.jpg", product_photo("mug", (200, 80, 60), rng), {}),
                (
                    "unbox2.jpg",
                    ad_card(
                        [("最好的杯子", 60, WHITE), ("第一品牌", 48, YELLOW)],
                        (60, 60, 140),
                        (20, 20, 60),
                        (200, 80, 60),
                        "CUP",
                    ),
                    {},
                ),
            ],
        ),
        DemoPost(
            "海边三连拍 🌊",
            "beach_days",
            "multi_image_benign",
            [(f"beach{i}.jpg", beach_scene(random.Random(i)), {}) for i in range(1, 4)],
        ),
        DemoPost(
            "Great deal 🔥🔥 صفقة رائعة on this backpack\u200b — link in bio",
            "global_shopper",
            "product_photo",
            [("backpack2.jpg", product_photo("backpack", (180, 120, 40), rng), {})],
        ),
    ]
    return posts


def write_demo_input(folder: Path) -> Path:
    """Draw the demo images into ``folder`` and write ``posts.jsonl`` beside them."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for n, post in enumerate(demo_posts(), start=1):
        names = []
        for name, image, save in post.images:
            fmt = save.get("format", "JPEG")
            options = {"quality": save.get("quality", 88)} if fmt == "JPEG" else {}
            image.save(folder / name, fmt, **options)
            names.append(name)
        record = {
            "external_id": f"demo-{n:03d}",
            "source": DEMO_SOURCE,
            "text": post.text,
            "author": post.author,
            "created_at": (BASE_TIME + timedelta(hours=7 * n)).isoformat(),
            "images": names,
            "metadata": {"demo_scenario": post.scenario},
        }
        lines.append(json.dumps(record, ensure_ascii=False))
    path = folder / "posts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def load_demo(sessions: sessionmaker[Session], settings: Settings, progress: Progress | None = None) -> IngestReport:
    """Generate the demo dataset and ingest it through the normal ingest path."""
    with tempfile.TemporaryDirectory(prefix="review-demo-") as tmp:
        path = write_demo_input(Path(tmp))
        return ingest_paths(sessions, [path], settings, progress=progress)


# --------------------------------------------------------------------------------------------
# A simulated review history, so that the lead pages have something to show on the demo

# What a careful moderator would decide for each demo post (demo-001 … demo-040), in order.
INTENDED = (
    ["false_advertising"] * 5 + ["fraud_spam"] * 4 + ["fraud_spam", "illegal_goods"]  # 1-11: ads, scams
    + ["none"] * 8  # 12-19: plain product photos
    + ["none", "none", "misinformation", "fraud_spam", "none", "none", "fraud_spam"]  # 20-26
    + ["violence_gore", "violence_gore"]  # 27-28: graphic placeholders
    + ["false_advertising"] * 3 + ["none"] * 3  # 29-34: reposts of the cream ad, the fire, the mug
    + ["none", "hate_harassment", "none", "false_advertising", "none", "none"]  # 35-40
)  # fmt: skip
# Where a hurried moderator goes wrong instead.
CONFUSED_WITH = {"false_advertising": "fraud_spam", "fraud_spam": "false_advertising", "none": "false_advertising",
                 "misinformation": "none", "illegal_goods": "fraud_spam", "violence_gore": "none",
                 "hate_harassment": "none"}  # fmt: skip
DEMO_MODERATORS = ("demo-ana", "demo-ben", "demo-cai")


@dataclass
class HistoryReport:
    decisions: int = 0
    second_reviews: int = 0
    escalations: int = 0
    left_waiting: int = 0


def demo_waiting(sessions: sessionmaker[Session]) -> bool:
    """Whether demo posts wait in the queue and the history was not simulated yet."""
    from sqlalchemy import select

    from db.models import Post, PostStatus, User

    with sessions() as session:
        simulated = session.scalar(select(User.id).where(User.username.in_(DEMO_MODERATORS)).limit(1))
        waiting = session.scalar(
            select(Post.id).where(Post.source == DEMO_SOURCE, Post.status == PostStatus.QUEUED).limit(1)
        )
    return simulated is None and waiting is not None


def simulate_history(
    sessions: sessionmaker[Session],
    by: Actor,
    *,
    share_decided: float = 0.65,
    raters: int = 2,
    now: datetime | None = None,
) -> HistoryReport:
    """Ten days of simulated moderation on the demo posts, through the desk's own claim and
    decide: three moderator accounts (single-sign-on only, deactivated afterwards, so nobody can
    sign in as them) decide about two thirds of the scored demo posts, mostly as INTENDED says
    and sometimes not, a share is drawn for a blind second review by the others (``raters``
    people label each of those: QA_RATERS, at most the three demo moderators), and two are
    escalated. The rest stay in the queue for the person trying the desk. Needs an admin
    (it adds accounts); refused once the demo moderators exist."""
    from sqlalchemy import select, update

    from db.models import Post, PostStatus, User, Verdict
    from db.session import writing
    from review.auth import create_user, require, set_active
    from review.decisions import claim, decide

    require(by, Permission.MANAGE_USERS)
    if not 2 <= raters <= len(DEMO_MODERATORS):
        raise ReviewError(f"the demo has {len(DEMO_MODERATORS)} moderators: it can simulate 2 or 3 raters per post")
    now = now or datetime.now(UTC)
    with sessions() as session:
        if session.scalar(select(User.id).where(User.username.in_(DEMO_MODERATORS)).limit(1)) is not None:
            raise ReviewError("the demo history was simulated already (its moderators exist)")
        rows = session.execute(
            select(Post.id, Post.external_id)
            .where(Post.source == DEMO_SOURCE, Post.status == PostStatus.QUEUED)
            .order_by(Post.id)
        ).all()
    intended = {f"demo-{n:03d}": label for n, label in enumerate(INTENDED, start=1)}
    waiting = [(post_id, intended[ext]) for post_id, ext in rows if ext in intended]
    if not waiting:
        raise ReviewError("no scored demo post is waiting: load the demo first (python -m review demo)")
    rng = random.Random(20261202)
    chosen = sorted(rng.sample(waiting, round(len(waiting) * share_decided)))
    start = now - timedelta(days=10)
    times = {post_id: start + timedelta(days=10 * k / len(chosen), minutes=rng.randint(0, 90))
             for k, (post_id, _) in enumerate(chosen)}  # fmt: skip
    with writing(sessions) as session:  # the posts arrived, and were scored, before they were decided
        for k, (post_id, _) in enumerate(waiting):
            arrived = times.get(post_id, start + timedelta(days=10 * k / len(waiting))) - timedelta(hours=3)
            session.execute(update(Post).where(Post.id == post_id).values(ingested_at=arrived))
            session.execute(
                update(Verdict).where(Verdict.post_id == post_id).values(created_at=arrived + timedelta(minutes=2))
            )
    people: list[Actor] = []
    report = HistoryReport()
    try:
        for name in DEMO_MODERATORS:
            people.append(create_user(sessions, name, None, "moderator", by=by))
        for k, (post_id, truth) in enumerate(chosen):
            at = times[post_id]
            first = people[k % len(people)]
            if claim(sessions, first, post_id, now=at) is None:
                continue
            if k in (3, 11):  # unsure: for a lead
                decide(sessions, first, post_id, "escalate", note="Not sure this breaks policy: please decide.",
                       time_spent_ms=rng.randint(20_000, 90_000), now=at)  # fmt: skip
                report.escalations += 1
                continue
            event = _decide_as(sessions, first, post_id, _judged(truth, 0.85, rng), rng, at, share=0.35, raters=raters)
            report.decisions += 1
            with sessions() as session:
                drawn = session.get(Post, post_id).status == PostStatus.SECOND_REVIEW  # type: ignore[union-attr]
            for step in range(1, raters if drawn else 1):  # the other raters, blind, one after the other
                other = people[(k + step) % len(people)]
                later = min(event.created_at + timedelta(hours=rng.randint(2, 20)), now - timedelta(minutes=5))
                if claim(sessions, other, post_id, now=later) is None:
                    break
                event = _decide_as(sessions, other, post_id, _judged(truth, 0.7, rng), rng, later, raters=raters)
                report.second_reviews += 1
    finally:
        for person in people:
            set_active(sessions, person.username, False, by=by)
    report.left_waiting = len(waiting) - len(chosen)
    return report


def _judged(truth: str, right: float, rng: random.Random) -> str:
    return truth if rng.random() < right else CONFUSED_WITH.get(truth, "none")


def _decide_as(sessions, actor, post_id, category, rng, at, share=0.0, raters=2):  # type: ignore[no-untyped-def]
    """Confirm when the verdict on screen says ``category``, overturn with it otherwise."""
    from review.decisions import Label, decide
    from review.verdicts import category_shown, current_verdict, is_usable

    with sessions() as session:
        verdict = current_verdict(session, post_id)
        agrees = (
            verdict is not None
            and is_usable(verdict.parse_status)
            and category_shown(verdict.violation, verdict.category) == category
        )
    spent = int(rng.lognormvariate(9.6, 0.5))
    if agrees:
        return decide(sessions, actor, post_id, "confirm", time_spent_ms=spent, share=share, raters=raters, now=at)
    label = Label(category != "none", category, 0 if category == "none" else 2)
    return decide(sessions, actor, post_id, "overturn", label=label, time_spent_ms=spent, share=share, raters=raters,
                  now=at)  # fmt: skip

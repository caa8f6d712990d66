"""The demo dataset: about 40 realistic synthetic posts, drawn with Pillow, no downloads.

``python -m review demo`` writes the images and a ``posts.jsonl`` into a temporary folder and
ingests them through the normal ingest path (source ``demo``), so the demo exercises exactly
what an operator's import does. Everything is deterministic: the same posts every run.

The scenarios cover what the desk exists for: ads with absolute or miracle claims (最好,
100%有效, 国家级), contact-detail solicitation (WeChat/QQ/phone/Telegram), plain product photos,
memes whose caption contradicts the picture (a fire captioned 岁月静好), a long screenshot
dense with prices and dates, placeholders standing in for graphic content, and reposts of the
same image re-encoded, resized, cropped or captioned.

The package: ``posts.toml`` (the posts as data), ``drawings.py`` (the Pillow drawings the data
names), ``posts.py`` (the data drawn into ``DemoPost``s), ``load.py`` (written to a folder and
ingested), ``history.py`` (a simulated review history on it).
"""

from review.demo.history import (
    DEMO_MODERATORS,
    INTENDED,
    HistoryReport,
    demo_waiting,
    history_refusal,
    simulate_history,
)
from review.demo.load import DEMO_SOURCE, load_demo, write_demo_input
from review.demo.posts import DemoPost, demo_posts

__all__ = [
    "DEMO_MODERATORS",
    "DEMO_SOURCE",
    "INTENDED",
    "DemoPost",
    "HistoryReport",
    "demo_posts",
    "demo_waiting",
    "history_refusal",
    "load_demo",
    "simulate_history",
    "write_demo_input",
]

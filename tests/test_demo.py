"""review/demo/, the demo dataset: realistic posts, deterministic pixels, and the `demo` command."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter

from sqlalchemy import func, select

from db.models import Media, Post, PostMedia
from review.cli import main
from review.demo import DEMO_SOURCE, INTENDED, demo_posts, load_demo
from review.demo.drawings import beach_scene, resized
from review.demo.load import write_demo_input
from review.demo.posts import DRAWINGS, _posts_data
from review.policy import load_policy
from tests.conftest import hamming


def test_demo_loads_realistic_posts(desk) -> None:
    report = load_demo(desk.sessions, desk.settings)
    assert report.ok, report.rejected
    assert 35 <= report.added <= 45
    with desk.sessions() as session:
        posts = session.scalars(select(Post).where(Post.source == DEMO_SOURCE)).all()
        scenarios = Counter(p.meta["demo_scenario"] for p in posts)
        texts = " ".join(p.text for p in posts)
        for needle in ("最好", "100%有效", "微信", "138-1234-5678", "岁月静好", "QQ"):
            assert needle in texts
        assert scenarios["ad_absolute_claim"] >= 4
        assert scenarios["repost"] >= 4
        assert scenarios["graphic_placeholder"] >= 1
        assert scenarios["product_photo"] >= 5
        assert session.scalar(select(func.count()).select_from(PostMedia)) >= 35
        # The reposts of the cream ad are near-duplicates of the original: small phash distance.
        rows = session.execute(
            select(Post.meta, PostMedia.original_name, Media.phash)
            .join(PostMedia, PostMedia.post_id == Post.id)
            .join(Media, Media.id == PostMedia.media_id)
        ).all()
        phash = {name: h for _, name, h in rows}
        for variant in ("cream_lowq.jpg", "cream_small.jpg", "cream_crop.jpg"):
            assert hamming(phash["cream.jpg"], phash[variant]) <= 12, variant
        assert hamming(phash["cream.jpg"], phash["mug.jpg"]) > 20
        tall = session.scalar(select(Media).where(Media.height > 2 * Media.width))
        assert tall is not None  # the long screenshot


def test_demo_is_deterministic() -> None:
    def fingerprint() -> list[tuple[str, str, list[tuple[str, str]]]]:
        return [
            (p.text, p.scenario, [(n, hashlib.sha256(im.tobytes()).hexdigest()) for n, im, _ in p.images])
            for p in demo_posts()
        ]

    assert fingerprint() == fingerprint()  # same posts, same pixels


def test_demo_command_only_fills_an_empty_database(sqlite_desk, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(sqlite_desk.settings.media_dir))
    assert main(["demo", "--no-score"]) == 0  # scoring: tests/test_signals_runner.py
    assert "40 added" in capsys.readouterr().out
    assert main(["demo"]) == 0
    out, err = capsys.readouterr()
    assert "already holds 40 posts" in out
    assert "40 posts have no verdict yet: python -m review score" in err
    assert main(["demo", "--force", "--no-score"]) == 0
    assert "0 added, 40 already present" in capsys.readouterr().out
    with sqlite_desk.sessions() as session:
        assert session.scalar(select(func.count(Post.id))) == 40


def _pictures(picture):
    """A picture description and the ones nested in it."""
    yield picture
    if isinstance(picture, dict) and "picture" in picture:
        yield from _pictures(picture["picture"])


def test_posts_file_names_only_known_drawings_categories_and_shared_pictures() -> None:
    data = _posts_data()
    assert len(data["post"]) == 40 == len(INTENDED)
    categories = set(load_policy().ids) | {"none"}
    assert set(INTENDED) <= categories
    for entry in data["post"]:
        assert {"text", "author", "scenario", "intended"} <= entry.keys()
        for image in entry.get("image", []):
            assert image.get("format", "JPEG") in ("JPEG", "PNG"), image["file"]
            for picture in _pictures(image["picture"]):
                if isinstance(picture, str):
                    assert picture in data["shared"], image["file"]
                else:
                    assert picture["draw"] in DRAWINGS, image["file"]
    files = [image["file"] for entry in data["post"] for image in entry.get("image", [])]
    assert len(files) == len(set(files))  # one folder holds them all


def test_posts_file_drawn_as_described() -> None:
    posts = {name: (image, save) for p in demo_posts() for name, image, save in p.images}
    # A shared picture is drawn once: a repost saved with other options shows the very same pixels.
    assert posts["cream_lowq.jpg"][0] is posts["cream.jpg"][0]
    assert posts["cream_lowq.jpg"][1] == {"quality": 30} and posts["cream.jpg"][1] == {}
    assert posts["chart.png"][1] == {"format": "PNG"}
    # A nested picture is drawn first and handed to the outer drawing.
    fire_meme = posts["fire_meme.jpg"][0]
    assert posts["fire_small.jpg"][0].tobytes() == resized(fire_meme, (480, 480)).tobytes()
    assert posts["fire_small.jpg"][0].size == (480, 480) and posts["cream_small.jpg"][0].size == (360, 360)
    # A `seed` gives the drawing its own random stream instead of the shared one.
    assert posts["beach2.jpg"][0].tobytes() == beach_scene(random.Random(2)).tobytes()


def test_demo_input_folder(tmp_path) -> None:
    path = write_demo_input(tmp_path)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [r["external_id"] for r in records[:2]] == ["demo-001", "demo-002"] and len(records) == 40
    assert records[0]["images"] == ["cream.jpg"] and (tmp_path / "cream.jpg").is_file()
    assert [r["metadata"]["demo_scenario"] for r in records] == [p.scenario for p in demo_posts()]

"""review/ingest/store.py: batched storage of posts, media and links — re-ingest adds nothing,
duplicate ids, image paths kept inside the input's folder (``../``, symlinks, absolute paths only
with the operator's opt-in, unknown homes, symlink loops), a record stored whole or not at all
(no image files left by a rejected one), bad records across chunks, and several ingest processes
on the same inputs at once (real processes, SQLite and Postgres).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import func, select

from db import schema
from db.models import Media, Post, PostMedia, PostStatus
from db.session import make_engine, make_session_factory
from review.desk import Desk
from review.ingest import ingest_paths, ingest_records
from review.ingest.store import CHUNK_SIZE
from tests.conftest import (
    REPO,
    crashing_paths,
    ingest_files,
    make_image,
    rejections,
    row_count,
    solid_image,
    stored_posts,
    write_bytes,
    write_jsonl,
)


def make_truncated_jpeg(path: Path) -> Path:
    """A JPEG whose header is intact but whose scan data stops half way."""
    path.parent.mkdir(parents=True, exist_ok=True)
    full = path.with_name("full-" + path.name)
    Image.effect_noise((128, 128), 80).convert("RGB").save(full, format="JPEG", quality=95)
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: len(data) * 6 // 10])
    return path


def test_jsonl_happy_path_stores_posts_media_and_links(desk: Desk, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    images = {
        "photos/a1.jpg": make_image(inbox / "photos/a1.jpg", 1),
        "photos/a2.png": make_image(inbox / "photos/a2.png", 2),
        "b1.jpg": make_image(inbox / "b1.jpg", 3),
        "photos/b2.webp": make_image(inbox / "photos/b2.webp", 4),
    }
    path = write_jsonl(
        inbox / "posts.jsonl",
        [
            {
                "external_id": "p1",
                "text": "first post",
                "author": "alice",
                "created_at": "2024-05-01T12:30:00+08:00",
                "images": ["photos/a1.jpg", "photos/a2.png"],
                "metadata": {"lang": "en", "likes": 3},
            },
            {
                "external_id": "p2",
                "source": "weibo",
                "text": "second post",
                "author": "bob",
                "created_at": "2024-05-02T00:00:00+08:00",
                "images": ["b1.jpg", "photos/b2.webp"],
                "metadata": {"lang": "zh"},
            },
        ],
    )

    report = ingest_files(desk, path)

    assert report.rejected == []
    assert (report.added, report.already_present) == (2, 0)
    assert report.summary() == "2 added, 0 already present, 0 rejected"
    assert len(report.post_ids) == 2
    assert row_count(desk, Post) == 2
    assert row_count(desk, Media) == 4
    assert row_count(desk, PostMedia) == 4

    posts = stored_posts(desk)
    p1, p2 = posts["p1"], posts["p2"]
    assert sorted(report.post_ids) == sorted([p1.id, p2.id])
    assert (p1.source, p2.source) == ("local", "weibo")
    assert (p1.text, p1.author, p1.meta) == ("first post", "alice", {"lang": "en", "likes": 3})
    assert (p2.text, p2.author, p2.meta) == ("second post", "bob", {"lang": "zh"})
    assert p1.status == PostStatus.UNSCORED
    # +08:00 → UTC, and it comes back timezone-aware on both databases.
    assert p1.created_at == datetime(2024, 5, 1, 4, 30, tzinfo=UTC)
    assert p1.created_at.utcoffset().total_seconds() == 0
    assert p2.created_at == datetime(2024, 5, 1, 16, 0, tzinfo=UTC)

    for post, names in ((p1, ["photos/a1.jpg", "photos/a2.png"]), (p2, ["b1.jpg", "photos/b2.webp"])):
        assert [link.position for link in post.media_links] == [0, 1]
        assert [link.original_name for link in post.media_links] == names
        for link, name in zip(post.media_links, names, strict=True):
            media = link.media
            original = images[name].read_bytes()
            assert media.sha256 == hashlib.sha256(original).hexdigest()
            assert media.size_bytes == len(original)
            assert (media.width, media.height) == (24, 16)
            stored = desk.settings.media_dir / media.path
            assert stored.is_file() and stored.read_bytes() == original
            assert (desk.settings.media_dir / media.thumb_path).is_file()
    assert [link.media.mime for link in p1.media_links] == ["image/jpeg", "image/png"]
    assert [link.media.mime for link in p2.media_links] == ["image/jpeg", "image/webp"]


def test_reingest_same_file_adds_nothing_and_keeps_unknown_fields(desk: Desk, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    make_image(inbox / "r1.jpg", 1)
    make_image(inbox / "r2.png", 2)
    rows = [
        {
            "external_id": "r1",
            "text": "one",
            "images": ["r1.jpg"],
            "likes": 5,
            "lang": "en",
            "metadata": {"campaign": "spring"},
        },
        {"external_id": "r2", "text": "two", "images": ["r2.png"], "shares": [1, 2]},
        {"external_id": 3, "text": "numeric id"},
    ]
    path = write_jsonl(inbox / "posts.jsonl", rows)

    first = ingest_files(desk, path)
    assert first.rejected == []
    assert (first.added, first.already_present) == (3, 0)
    before = stored_posts(desk)
    counts = (row_count(desk, Post), row_count(desk, Media), row_count(desk, PostMedia))
    assert counts == (3, 2, 2)
    assert before["r1"].meta == {"likes": 5, "lang": "en", "campaign": "spring"}
    assert before["r2"].meta == {"shares": [1, 2]}
    assert before["3"].text == "numeric id"

    again = ingest_files(desk, path)
    assert again.rejected == []
    assert (again.added, again.already_present) == (0, 3)
    assert again.post_ids == []
    assert again.summary() == "0 added, 3 already present, 0 rejected"
    assert (row_count(desk, Post), row_count(desk, Media), row_count(desk, PostMedia)) == counts

    # A changed record under a known id is "already present" too; the stored post is left alone.
    rows[0] = {**rows[0], "text": "edited"}
    changed = ingest_files(desk, write_jsonl(inbox / "posts.jsonl", rows))
    assert (changed.added, changed.already_present, changed.rejected) == (0, 3, [])
    after = stored_posts(desk)
    assert after["r1"].text == "one"
    assert {k: p.id for k, p in after.items()} == {k: p.id for k, p in before.items()}


def test_duplicate_ids_within_one_file(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "posts.jsonl",
        [
            {"external_id": "a", "text": "original", "author": "x"},  # line 1
            {"external_id": "b", "text": "other"},  # line 2
            {"author": "x", "text": "original", "external_id": "a"},  # line 3: same content, keys reordered
            {"external_id": "a", "text": "DIFFERENT"},  # line 4
            {"external_id": "a", "source": "elsewhere", "text": "same id, other source"},  # line 5
        ],
    )

    report = ingest_files(sqlite_desk, path)

    assert (report.added, report.already_present) == (3, 1)
    assert list(rejections(report)) == ["posts.jsonl:4"]
    reason = rejections(report)["posts.jsonl:4"]
    assert "'a'" in reason and "posts.jsonl:1" in reason and "different content" in reason
    assert any("posts.jsonl:3" in w and "posts.jsonl:1" in w for w in report.warnings)
    assert row_count(sqlite_desk, Post) == 3
    assert stored_posts(sqlite_desk)["b"].text == "other"
    with sqlite_desk.sessions() as session:
        rows = session.execute(select(Post.source, Post.text).where(Post.external_id == "a")).all()
    assert sorted(rows) == [("elsewhere", "same id, other source"), ("local", "original")]


def test_repeat_of_a_rejected_record_is_not_counted_as_present(sqlite_desk: Desk, tmp_path: Path) -> None:
    row = {"external_id": "dd", "images": ["nope.jpg"]}
    report = ingest_files(sqlite_desk, write_jsonl(tmp_path / "posts.jsonl", [row, row]))

    assert row_count(sqlite_desk, Post) == 0
    assert "nope.jpg" in rejections(report)["posts.jsonl:1"]
    assert report.already_present == 0
    assert "posts.jsonl:2" in rejections(report)


def test_missing_image_is_rejected_naming_the_path(sqlite_desk: Desk, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    make_image(inbox / "here.jpg", 1)
    path = write_jsonl(
        inbox / "posts.jsonl",
        [
            {"external_id": "gone", "images": ["photos/not-there.jpg"]},
            {"external_id": "ok", "images": ["here.jpg"]},
        ],
    )

    report = ingest_files(sqlite_desk, path)

    assert report.added == 1
    assert set(stored_posts(sqlite_desk)) == {"ok"}
    reason = rejections(report)["posts.jsonl:1"]
    assert list(rejections(report)) == ["posts.jsonl:1"]
    assert "photos/not-there.jpg" in reason and "file not found" in reason
    assert row_count(sqlite_desk, Media) == 1


def test_relative_path_escaping_the_folder_is_rejected(sqlite_desk: Desk, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    make_image(tmp_path / "secret.jpg", 9)  # really exists, outside the input folder
    make_image(inbox / "fine.jpg", 1)
    path = write_jsonl(
        inbox / "posts.jsonl",
        [
            {"external_id": "escape", "images": ["../secret.jpg"]},
            {"external_id": "sneaky", "images": ["sub/../../secret.jpg"]},
            {"external_id": "ok", "images": ["fine.jpg"]},
        ],
    )

    report = ingest_files(sqlite_desk, path)

    assert report.added == 1
    assert set(stored_posts(sqlite_desk)) == {"ok"}
    found = rejections(report)
    assert list(found) == ["posts.jsonl:1", "posts.jsonl:2"]
    assert "'../secret.jpg'" in found["posts.jsonl:1"] and "outside the input folder" in found["posts.jsonl:1"]
    assert "outside the input folder" in found["posts.jsonl:2"]
    assert row_count(sqlite_desk, Media) == 1  # the secret was never read into the store

    # The API refuses it the same way.
    api = ingest_records(
        sqlite_desk.sessions,
        [{"external_id": "api", "images": ["../secret.jpg"]}],
        sqlite_desk.settings,
        base_dir=inbox,
    )
    assert api.added == 0
    assert "outside the input folder" in rejections(api)["record 1"]
    assert row_count(sqlite_desk, Post) == 1


def test_symlink_inside_the_folder_pointing_outside_is_rejected(sqlite_desk: Desk, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    secret = make_image(tmp_path / "private" / "secret.jpg", 9)
    make_image(inbox / "fine.jpg", 1)
    (inbox / "innocent.jpg").symlink_to(secret)
    (inbox / "linked-dir").symlink_to(secret.parent, target_is_directory=True)
    path = write_jsonl(
        inbox / "posts.jsonl",
        [
            {"external_id": "ok", "images": ["fine.jpg"]},
            {"external_id": "link", "images": ["innocent.jpg"]},
            {"external_id": "dirlink", "images": ["linked-dir/secret.jpg"]},
        ],
    )

    report = ingest_files(sqlite_desk, path)

    assert report.added == 1
    assert set(stored_posts(sqlite_desk)) == {"ok"}
    found = rejections(report)
    assert list(found) == ["posts.jsonl:2", "posts.jsonl:3"]
    assert "'innocent.jpg'" in found["posts.jsonl:2"] and "outside the input folder" in found["posts.jsonl:2"]
    assert "'linked-dir/secret.jpg'" in found["posts.jsonl:3"] and "outside" in found["posts.jsonl:3"]
    assert row_count(sqlite_desk, Media) == 1


def test_absolute_image_path_needs_the_operators_opt_in(sqlite_desk: Desk, tmp_path: Path) -> None:
    absolute = make_image(tmp_path / "elsewhere" / "abs.jpg", 5).resolve()
    path = write_jsonl(tmp_path / "inbox" / "posts.jsonl", [{"external_id": "abs", "images": [str(absolute)]}])

    refused = ingest_files(sqlite_desk, path)  # a data file alone cannot reach outside its folder
    assert refused.added == 0
    assert "--allow-absolute-paths" in rejections(refused)["posts.jsonl:1"]

    report = ingest_files(sqlite_desk, path, allow_absolute_paths=True)
    assert report.rejected == []
    assert report.added == 1
    post = stored_posts(sqlite_desk)["abs"]
    assert post.media_links[0].media.sha256 == hashlib.sha256(absolute.read_bytes()).hexdigest()

    api = ingest_records(
        sqlite_desk.sessions,
        [{"external_id": "api-abs", "images": [str(absolute)]}, {"external_id": "api-ok", "text": "no images"}],
        sqlite_desk.settings,
    )
    assert api.added == 1
    reason = rejections(api)["record 1"]
    assert list(rejections(api)) == ["record 1"]
    assert str(absolute) in reason and "absolute paths are refused" in reason
    assert set(stored_posts(sqlite_desk)) == {"abs", "api-ok"}

    # An API caller that opts in may use it.
    opted = ingest_records(
        sqlite_desk.sessions,
        [{"external_id": "api-abs", "images": [str(absolute)]}],
        sqlite_desk.settings,
        allow_absolute_paths=True,
    )
    assert (opted.added, opted.rejected) == (1, [])
    assert row_count(sqlite_desk, Post) == 3
    assert row_count(sqlite_desk, Media) == 1  # same bytes, stored once


def test_bad_images_reject_their_records_and_keep_the_good_ones(sqlite_desk: Desk, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    make_image(inbox / "good1.jpg", 1)
    make_image(inbox / "good2.png", 2)
    make_truncated_jpeg(inbox / "truncated.jpg")
    write_bytes(inbox / "empty.jpg", b"")
    write_bytes(inbox / "notes.jpg", b"these are my holiday notes, not a picture\n")
    write_bytes(
        inbox / "drawing.svg",
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        b"<script>alert(1)</script></svg>\n",
    )
    path = write_jsonl(
        inbox / "posts.jsonl",
        [
            {"external_id": "good1", "images": ["good1.jpg"]},  # 1
            {"external_id": "trunc", "images": ["truncated.jpg"]},  # 2
            {"external_id": "empty", "images": ["empty.jpg"]},  # 3
            {"external_id": "text", "images": ["notes.jpg"]},  # 4
            {"external_id": "svg", "images": ["drawing.svg"]},  # 5
            {"external_id": "good2", "images": ["good2.png"]},  # 6
        ],
    )

    report = ingest_files(sqlite_desk, path)

    assert report.added == 2
    assert set(stored_posts(sqlite_desk)) == {"good1", "good2"}
    assert row_count(sqlite_desk, Media) == 2
    found = rejections(report)
    assert list(found) == ["posts.jsonl:2", "posts.jsonl:3", "posts.jsonl:4", "posts.jsonl:5"]
    expected = {
        "posts.jsonl:2": ("truncated.jpg", "truncated"),
        "posts.jsonl:3": ("empty.jpg", "empty (0 bytes)"),
        "posts.jsonl:4": ("notes.jpg", "text file, not an image"),
        "posts.jsonl:5": ("drawing.svg", "SVG is not accepted"),
    }
    for location, (name, why) in expected.items():
        assert f"image {name!r}" in found[location], found[location]
        assert why in found[location], found[location]


def test_a_record_is_stored_whole_or_not_at_all(sqlite_desk: Desk, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    make_image(inbox / "good.jpg", 1)
    make_image(inbox / "other.jpg", 2)
    make_truncated_jpeg(inbox / "broken.jpg")
    path = write_jsonl(
        inbox / "posts.jsonl",
        [
            {"external_id": "half", "text": "good then bad", "images": ["good.jpg", "broken.jpg"]},
            {"external_id": "whole", "images": ["other.jpg", "good.jpg"]},
        ],
    )

    report = ingest_files(sqlite_desk, path)

    assert report.added == 1
    assert set(stored_posts(sqlite_desk)) == {"whole"}
    assert list(rejections(report)) == ["posts.jsonl:1"]
    assert "'broken.jpg'" in rejections(report)["posts.jsonl:1"]
    # No post, no links for the rejected record; only the two good images of "whole" are rows.
    assert row_count(sqlite_desk, PostMedia) == 2
    assert row_count(sqlite_desk, Media) == 2


def test_bad_records_across_chunks_do_not_cost_the_good_ones(desk: Desk, tmp_path: Path) -> None:
    total = 2 * CHUNK_SIZE + 50
    rows: list[dict[str, Any] | str] = [{"external_id": f"n{i:04d}", "text": f"post {i}"} for i in range(1, total + 1)]
    rows[CHUNK_SIZE] = {"external_id": "", "text": "first line of the second chunk"}  # line 201
    rows[249] = {"external_id": "n0250", "images": 7}  # line 250
    rows[299] = dict(rows[9])  # line 300 repeats line 10 exactly
    rows[CHUNK_SIZE * 2 + 9] = "{broken"  # line 410
    path = write_jsonl(tmp_path / "big.jsonl", rows)

    report = ingest_files(desk, path)

    assert report.added == total - 4
    assert report.already_present == 1
    assert row_count(desk, Post) == total - 4
    found = rejections(report)
    assert list(found) == ["big.jsonl:201", "big.jsonl:250", "big.jsonl:410"]
    assert found["big.jsonl:201"].startswith("external_id:") and "at least 1 character" in found["big.jsonl:201"]
    assert found["big.jsonl:250"].startswith("images:")
    assert "malformed JSON" in found["big.jsonl:410"]
    stored = set(stored_posts(desk))
    assert "n0250" not in stored
    assert {"n0001", "n0200", "n0202", "n0249", "n0251", "n0450"} <= stored
    assert "n0300" not in stored  # line 300 held a repeat of n0010


def test_unknown_home_and_symlink_loop_are_rejections_and_the_rest_is_stored(desk: Desk, tmp_path: Path) -> None:
    path = crashing_paths(tmp_path / "in")
    report = ingest_paths(desk.sessions, [path], desk.settings)
    assert (report.added, report.already_present) == (2, 0)
    reasons = rejections(report)
    assert list(reasons) == ["posts.jsonl:2", "posts.jsonl:3"]
    assert "'~nosuchuser/a.jpg'" in reasons["posts.jsonl:2"] and "home folder" in reasons["posts.jsonl:2"]
    assert "'loop/a'" in reasons["posts.jsonl:3"] and "cannot be resolved" in reasons["posts.jsonl:3"]
    assert set(stored_posts(desk)) == {"good1", "good2"}


def test_a_rejected_record_leaves_no_image_files(sqlite_desk: Desk, tmp_path: Path) -> None:
    solid_image(tmp_path / "good.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"not an image at all")
    path = write_jsonl(tmp_path / "r.jsonl", ['{"external_id": "r", "images": ["good.jpg", "bad.jpg"]}'])
    report = ingest_files(sqlite_desk, path)
    assert report.added == 0 and len(report.rejected) == 1
    media_dir = sqlite_desk.settings.media_dir
    assert not media_dir.exists() or not any(p.is_file() for p in media_dir.rglob("*"))


def _write_inputs(folder: Path) -> tuple[Path, Path]:
    for i in range(60):  # 60 distinct images, shared by the posts of both files
        Image.new("RGB", (48, 48), (i * 4, 255 - i * 4, (i * 37) % 256)).save(folder / f"i{i}.png")

    def record(n: int) -> str:
        return json.dumps({"external_id": f"c{n}", "source": "race", "text": f"post {n}",
                           "images": [f"i{n % 60}.png", f"i{(n * 7) % 60}.png"]})  # fmt: skip

    a, b = folder / "a.jsonl", folder / "b.jsonl"
    a.write_text("\n".join(record(n) for n in range(0, 300)) + "\n", encoding="utf-8")
    b.write_text("\n".join(record(n) for n in range(150, 450)) + "\n", encoding="utf-8")
    return a, b


def test_concurrent_ingest_processes(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    schema.upgrade(engine)
    a, b = _write_inputs(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "DATABASE_URL": db_url, "MEDIA_DIR": str(tmp_path / "media")}
    procs = [
        subprocess.Popen([sys.executable, "-m", "review", "ingest", "--quiet", str(path)],
                         cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for path in (a, b, a, b)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=300) for p in procs]
    added = 0
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        match = re.search(r"(\d+) added, (\d+) already present, 0 rejected", out)
        assert match, out
        assert int(match[1]) + int(match[2]) == 300
        added += int(match[1])
    assert added == 450  # every post added exactly once, by one of the processes

    with make_session_factory(engine)() as session:
        assert session.scalar(select(func.count(Post.id))) == 450
        assert session.scalar(select(func.count(func.distinct(Post.external_id)))) == 450
        assert session.scalar(select(func.count(Media.id))) == 60
        assert session.scalar(select(func.count()).select_from(PostMedia)) == 900
    engine.dispose()

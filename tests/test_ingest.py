"""Ingest: JSONL, CSV, folders of images and API records into the database.

Every input is generated here (Pillow images, JSONL/CSV files under tmp_path). Each test checks
what was stored (posts, media, links) and, for every rejection, where it was (``file:line``) and
that the reason tells a person what is wrong.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from db.models import Media, Post, PostMedia, PostStatus
from review.cli import main
from review.desk import Desk
from review.errors import IngestError
from review.ingest import CHUNK_SIZE, IngestReport, ingest_paths, ingest_records

# --------------------------------------------------------------------------------------------
# Helpers


def make_image(path: Path, seed: int = 0, size: tuple[int, int] = (24, 16), fmt: str | None = None) -> Path:
    """A small solid-colour image; a different seed gives different bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = ((seed * 53 + 17) % 256, (seed * 97 + 29) % 256, (seed * 151 + 41) % 256)
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path


def make_truncated_jpeg(path: Path) -> Path:
    """A JPEG whose header is intact but whose scan data stops half way."""
    path.parent.mkdir(parents=True, exist_ok=True)
    full = path.with_name("full-" + path.name)
    Image.effect_noise((128, 128), 80).convert("RGB").save(full, format="JPEG", quality=95)
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: len(data) * 6 // 10])
    return path


def write_jsonl(path: Path, rows: Iterable[dict[str, Any] | str]) -> Path:
    """One JSON object per line; a str row is written as-is (for malformed lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def ingest_file(desk: Desk, path: Path, **kwargs: Any) -> IngestReport:
    return ingest_paths(desk.sessions, [path], desk.settings, **kwargs)


def rejections(report: IngestReport) -> dict[str, str]:
    """location → reason."""
    return {r.location: r.reason for r in report.rejected}


def count(desk: Desk, model: type) -> int:
    with desk.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def stored_posts(desk: Desk) -> dict[str, Post]:
    """external_id → Post, with media links and media loaded."""
    with desk.sessions() as session:
        posts = session.scalars(
            select(Post).options(selectinload(Post.media_links).selectinload(PostMedia.media)).order_by(Post.id)
        ).all()
    return {p.external_id: p for p in posts}


# --------------------------------------------------------------------------------------------
# JSONL


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

    report = ingest_file(desk, path)

    assert report.rejected == []
    assert (report.added, report.already_present) == (2, 0)
    assert report.summary() == "2 added, 0 already present, 0 rejected"
    assert len(report.post_ids) == 2
    assert count(desk, Post) == 2
    assert count(desk, Media) == 4
    assert count(desk, PostMedia) == 4

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

    first = ingest_file(desk, path)
    assert first.rejected == []
    assert (first.added, first.already_present) == (3, 0)
    before = stored_posts(desk)
    counts = (count(desk, Post), count(desk, Media), count(desk, PostMedia))
    assert counts == (3, 2, 2)
    assert before["r1"].meta == {"likes": 5, "lang": "en", "campaign": "spring"}
    assert before["r2"].meta == {"shares": [1, 2]}
    assert before["3"].text == "numeric id"

    again = ingest_file(desk, path)
    assert again.rejected == []
    assert (again.added, again.already_present) == (0, 3)
    assert again.post_ids == []
    assert again.summary() == "0 added, 3 already present, 0 rejected"
    assert (count(desk, Post), count(desk, Media), count(desk, PostMedia)) == counts

    # A changed record under a known id is "already present" too; the stored post is left alone.
    rows[0] = {**rows[0], "text": "edited"}
    changed = ingest_file(desk, write_jsonl(inbox / "posts.jsonl", rows))
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

    report = ingest_file(sqlite_desk, path)

    assert (report.added, report.already_present) == (3, 1)
    assert list(rejections(report)) == ["posts.jsonl:4"]
    reason = rejections(report)["posts.jsonl:4"]
    assert "'a'" in reason and "posts.jsonl:1" in reason and "different content" in reason
    assert any("posts.jsonl:3" in w and "posts.jsonl:1" in w for w in report.warnings)
    assert count(sqlite_desk, Post) == 3
    assert stored_posts(sqlite_desk)["b"].text == "other"
    with sqlite_desk.sessions() as session:
        rows = session.execute(select(Post.source, Post.text).where(Post.external_id == "a")).all()
    assert sorted(rows) == [("elsewhere", "same id, other source"), ("local", "original")]


def test_repeat_of_a_rejected_record_is_not_counted_as_present(sqlite_desk: Desk, tmp_path: Path) -> None:
    row = {"external_id": "dd", "images": ["nope.jpg"]}
    report = ingest_file(sqlite_desk, write_jsonl(tmp_path / "posts.jsonl", [row, row]))

    assert count(sqlite_desk, Post) == 0
    assert "nope.jpg" in rejections(report)["posts.jsonl:1"]
    assert report.already_present == 0
    assert "posts.jsonl:2" in rejections(report)


def test_malformed_json_line_in_the_middle(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "posts.jsonl",
        [
            {"external_id": "m1", "text": "before"},  # 1
            '{"external_id": "m2", "text": }',  # 2: malformed
            '["a", "list", "not", "an", "object"]',  # 3
            "",  # 4: blank lines are skipped
            '"just a string"',  # 5
            {"external_id": "m6", "text": "after"},  # 6
        ],
    )

    report = ingest_file(sqlite_desk, path)

    assert report.added == 2
    assert count(sqlite_desk, Post) == 2
    assert set(stored_posts(sqlite_desk)) == {"m1", "m6"}
    found = rejections(report)
    assert list(found) == ["posts.jsonl:2", "posts.jsonl:3", "posts.jsonl:5"]
    assert "malformed JSON" in found["posts.jsonl:2"] and "column" in found["posts.jsonl:2"]
    assert "expected a JSON object" in found["posts.jsonl:3"] and "list" in found["posts.jsonl:3"]
    assert "expected a JSON object" in found["posts.jsonl:5"] and "str" in found["posts.jsonl:5"]


# --------------------------------------------------------------------------------------------
# Image paths


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

    report = ingest_file(sqlite_desk, path)

    assert report.added == 1
    assert set(stored_posts(sqlite_desk)) == {"ok"}
    reason = rejections(report)["posts.jsonl:1"]
    assert list(rejections(report)) == ["posts.jsonl:1"]
    assert "photos/not-there.jpg" in reason and "file not found" in reason
    assert count(sqlite_desk, Media) == 1


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

    report = ingest_file(sqlite_desk, path)

    assert report.added == 1
    assert set(stored_posts(sqlite_desk)) == {"ok"}
    found = rejections(report)
    assert list(found) == ["posts.jsonl:1", "posts.jsonl:2"]
    assert "'../secret.jpg'" in found["posts.jsonl:1"] and "outside the input folder" in found["posts.jsonl:1"]
    assert "outside the input folder" in found["posts.jsonl:2"]
    assert count(sqlite_desk, Media) == 1  # the secret was never read into the store

    # The API refuses it the same way.
    api = ingest_records(
        sqlite_desk.sessions,
        [{"external_id": "api", "images": ["../secret.jpg"]}],
        sqlite_desk.settings,
        base_dir=inbox,
    )
    assert api.added == 0
    assert "outside the input folder" in rejections(api)["record 1"]
    assert count(sqlite_desk, Post) == 1


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

    report = ingest_file(sqlite_desk, path)

    assert report.added == 1
    assert set(stored_posts(sqlite_desk)) == {"ok"}
    found = rejections(report)
    assert list(found) == ["posts.jsonl:2", "posts.jsonl:3"]
    assert "'innocent.jpg'" in found["posts.jsonl:2"] and "outside the input folder" in found["posts.jsonl:2"]
    assert "'linked-dir/secret.jpg'" in found["posts.jsonl:3"] and "outside" in found["posts.jsonl:3"]
    assert count(sqlite_desk, Media) == 1


def test_absolute_image_path_needs_the_operators_opt_in(sqlite_desk: Desk, tmp_path: Path) -> None:
    absolute = make_image(tmp_path / "elsewhere" / "abs.jpg", 5).resolve()
    path = write_jsonl(tmp_path / "inbox" / "posts.jsonl", [{"external_id": "abs", "images": [str(absolute)]}])

    refused = ingest_file(sqlite_desk, path)  # a data file alone cannot reach outside its folder
    assert refused.added == 0
    assert "--allow-absolute-paths" in rejections(refused)["posts.jsonl:1"]

    report = ingest_file(sqlite_desk, path, allow_absolute_paths=True)
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
    assert count(sqlite_desk, Post) == 3
    assert count(sqlite_desk, Media) == 1  # same bytes, stored once


def test_ingest_records_api_locations_and_relative_paths(sqlite_desk: Desk, tmp_path: Path) -> None:
    folder = tmp_path / "uploads"
    make_image(folder / "pic.png", 3)
    report = ingest_records(
        sqlite_desk.sessions,
        [
            {"external_id": "api1", "images": ["pic.png"], "client": "mobile"},
            "not a record",
            {"text": "no id"},
            {"external_id": "api4", "images": ["pic.png"]},
        ],
        sqlite_desk.settings,
        source="api",
        base_dir=folder,
    )
    assert report.added == 2
    found = rejections(report)
    assert list(found) == ["record 2", "record 3"]
    assert "expected an object" in found["record 2"]
    assert "external_id" in found["record 3"]
    posts = stored_posts(sqlite_desk)
    assert set(posts) == {"api1", "api4"}
    assert posts["api1"].source == "api" and posts["api1"].meta == {"client": "mobile"}

    no_base = ingest_records(sqlite_desk.sessions, [{"external_id": "x", "images": ["pic.png"]}], sqlite_desk.settings)
    assert no_base.added == 0
    assert "'pic.png'" in rejections(no_base)["record 1"]
    assert "needs an input folder" in rejections(no_base)["record 1"]
    assert count(sqlite_desk, Post) == 2


# --------------------------------------------------------------------------------------------
# Bad images


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

    report = ingest_file(sqlite_desk, path)

    assert report.added == 2
    assert set(stored_posts(sqlite_desk)) == {"good1", "good2"}
    assert count(sqlite_desk, Media) == 2
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

    report = ingest_file(sqlite_desk, path)

    assert report.added == 1
    assert set(stored_posts(sqlite_desk)) == {"whole"}
    assert list(rejections(report)) == ["posts.jsonl:1"]
    assert "'broken.jpg'" in rejections(report)["posts.jsonl:1"]
    # No post, no links for the rejected record; only the two good images of "whole" are rows.
    assert count(sqlite_desk, PostMedia) == 2
    assert count(sqlite_desk, Media) == 2


# --------------------------------------------------------------------------------------------
# CSV


def test_csv_multiline_quotes_images_and_extra_columns(sqlite_desk: Desk, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    make_image(inbox / "a.jpg", 1)
    make_image(inbox / "pics" / "b.png", 2)
    csv_text = (
        "external_id,text,images,author,likes\n"  # 1
        'c1,"He said ""hi""\nsecond line, with a comma\n\nfourth",a.jpg; pics/b.png,alice,5\n'  # 2-5
        "c2,plain,,bob,7,EXTRA\n"  # 6: one field too many
        'c3,"two\r\nlines",,carol,\n'  # 7-8
        "c4,has a missing image,missing.jpg,dave,0\n"  # 9
        "c5,short row\n"  # 10: too few fields
        "c6,last,,,1\n"  # 11
    )
    path = write_bytes(inbox / "posts.csv", csv_text.encode("utf-8"))

    report = ingest_file(sqlite_desk, path)

    assert report.added == 3
    assert report.encodings == {str(path): "utf-8"}
    found = rejections(report)
    # Parse errors are reported before image errors, so compare as a set.
    assert set(found) == {"posts.csv:6", "posts.csv:9", "posts.csv:10"}
    assert found["posts.csv:6"] == "has 6 fields, the header has 5"
    assert "'missing.jpg'" in found["posts.csv:9"] and "file not found" in found["posts.csv:9"]
    assert found["posts.csv:10"] == "has 2 fields, the header has 5"

    posts = stored_posts(sqlite_desk)
    assert set(posts) == {"c1", "c3", "c6"}
    c1 = posts["c1"]
    assert c1.text == 'He said "hi"\nsecond line, with a comma\n\nfourth'
    assert c1.author == "alice"
    assert c1.meta["likes"] == "5"  # the extra column lands in metadata
    assert [link.original_name for link in c1.media_links] == ["a.jpg", "pics/b.png"]
    assert [link.media.mime for link in c1.media_links] == ["image/jpeg", "image/png"]
    assert posts["c3"].text == "two\r\nlines"
    assert posts["c3"].meta["likes"] == ""
    assert posts["c6"].author is None


def test_csv_extra_columns_are_exactly_the_metadata(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "posts.csv", b"external_id,text,likes,lang\nx1,hello,5,en\nx2,bye\n")

    report = ingest_file(sqlite_desk, path)

    assert report.added == 1
    assert rejections(report) == {"posts.csv:3": "has 2 fields, the header has 4"}
    assert stored_posts(sqlite_desk)["x1"].meta == {"likes": "5", "lang": "en"}


def test_csv_metadata_column_merges_with_extra_columns(sqlite_desk: Desk, tmp_path: Path) -> None:
    csv_text = 'external_id,metadata,likes\nm1,"{""lang"": ""fr"", ""likes"": 9}",5\nm2,{broken,1\n'
    path = write_bytes(tmp_path / "posts.csv", csv_text.encode())

    report = ingest_file(sqlite_desk, path)

    assert report.added == 1
    assert list(rejections(report)) == ["posts.csv:3"]
    assert "metadata is not valid JSON" in rejections(report)["posts.csv:3"]
    assert stored_posts(sqlite_desk)["m1"].meta == {"lang": "fr", "likes": 9}  # the JSON column wins


def test_csv_empty_source_cell_uses_the_default_source(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "posts.csv", b"external_id,source,text\ns1,,no source given\ns2,forum,given\n")

    report = ingest_file(sqlite_desk, path)

    assert report.rejected == []
    assert report.added == 2
    posts = stored_posts(sqlite_desk)
    assert (posts["s1"].source, posts["s2"].source) == ("local", "forum")


# --------------------------------------------------------------------------------------------
# Encodings

GBK_CSV = (
    "external_id,text,author\n"  # 1
    "g1,你好，世界！这是一条测试帖子。,张三\n"  # 2
    'g2,"多行\n文本：第二行",李四\n'  # 3-4
    "g3,缺一列\n"  # 5: too few fields
)


def test_gbk_csv_is_refused_without_an_encoding(sqlite_desk: Desk, tmp_path: Path) -> None:
    # Legacy encodings are not guessed: Big5 and Shift-JIS also decode as GB18030 (mojibake).
    path = write_bytes(tmp_path / "weibo.csv", GBK_CSV.encode("gbk"))

    with pytest.raises(IngestError, match=r"not UTF-8 text.*--encoding gb18030"):
        ingest_file(sqlite_desk, path)
    assert stored_posts(sqlite_desk) == {}

    report = ingest_file(sqlite_desk, path, encoding="gb18030")
    assert report.encodings == {str(path): "gb18030"}
    assert report.added == 2
    assert rejections(report) == {"weibo.csv:5": "has 2 fields, the header has 3"}
    posts = stored_posts(sqlite_desk)
    assert posts["g1"].text == "你好，世界！这是一条测试帖子。"
    assert posts["g1"].author == "张三"
    assert posts["g2"].text == "多行\n文本：第二行"


def test_gbk_csv_with_explicit_encoding(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "weibo.csv", GBK_CSV.encode("gbk"))

    report = ingest_file(sqlite_desk, path, encoding="GBK")

    assert report.encodings == {str(path): "gbk"}
    assert report.added == 2
    assert list(rejections(report)) == ["weibo.csv:5"]
    posts = stored_posts(sqlite_desk)
    assert posts["g1"].text == "你好，世界！这是一条测试帖子。"
    assert posts["g2"].author == "李四"


def test_utf8_bom_csv_does_not_leak_into_the_first_column(sqlite_desk: Desk, tmp_path: Path) -> None:
    text = "external_id,text,region\nb1,첫 번째,kr\nb2,second\n"
    path = write_bytes(tmp_path / "excel.csv", "\ufeff".encode() + text.encode("utf-8"))

    report = ingest_file(sqlite_desk, path)

    assert report.encodings == {str(path): "utf-8-sig"}
    assert report.added == 1
    assert rejections(report) == {"excel.csv:3": "has 2 fields, the header has 3"}
    post = stored_posts(sqlite_desk)["b1"]
    assert post.text == "첫 번째"
    assert post.meta["region"] == "kr"
    assert not any("\ufeff" in key or key == "external_id" for key in post.meta)  # the BOM did not leak

    # Explicit utf-8 on a BOM file: the header still has no BOM in its first name.
    path2 = write_bytes(tmp_path / "excel2.csv", "\ufeff".encode() + b"external_id,text\nb3,x\n")
    report2 = ingest_file(sqlite_desk, path2, encoding="utf-8")
    assert (report2.added, report2.rejected) == (1, [])
    assert stored_posts(sqlite_desk)["b3"].meta == {}
    assert stored_posts(sqlite_desk)["b3"].external_id == "b3"


def test_utf8_bom_jsonl_does_not_leak_into_the_first_record(sqlite_desk: Desk, tmp_path: Path) -> None:
    body = json.dumps({"external_id": "j1", "text": "première"}, ensure_ascii=False) + "\n"
    body += '{"external_id": "j2", "text": }\n'
    body += json.dumps({"external_id": "j3", "text": "третий"}, ensure_ascii=False) + "\n"
    path = write_bytes(tmp_path / "bom.jsonl", "\ufeff".encode() + body.encode("utf-8"))

    report = ingest_file(sqlite_desk, path)

    assert report.encodings == {str(path): "utf-8-sig"}
    assert report.added == 2
    assert list(rejections(report)) == ["bom.jsonl:2"]
    assert "malformed JSON" in rejections(report)["bom.jsonl:2"]
    posts = stored_posts(sqlite_desk)
    assert set(posts) == {"j1", "j3"}
    assert posts["j1"].text == "première"


def test_utf8_bom_jsonl_with_explicit_utf8_encoding(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "bom.jsonl", "\ufeff".encode() + b'{"external_id": "j1"}\n')

    report = ingest_file(sqlite_desk, path, encoding="utf-8")

    assert report.rejected == []
    assert set(stored_posts(sqlite_desk)) == {"j1"}


def test_utf16_jsonl_is_read(sqlite_desk: Desk, tmp_path: Path) -> None:
    body = '{"external_id": "u1", "text": "hé"}\n{"external_id": "u2", "text": "中文"}\n'
    path = write_bytes(tmp_path / "u16.jsonl", body.encode("utf-16"))

    report = ingest_file(sqlite_desk, path)

    assert report.encodings == {str(path): "utf-16"}
    assert report.rejected == []
    assert {k: p.text for k, p in stored_posts(sqlite_desk).items()} == {"u1": "hé", "u2": "中文"}


def test_unknown_encoding_name_is_an_ingest_error(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "posts.jsonl", [{"external_id": "e1"}])

    with pytest.raises(IngestError, match=r"unknown encoding 'klingon'.*gbk"):
        ingest_file(sqlite_desk, path, encoding="klingon")

    assert count(sqlite_desk, Post) == 0


# --------------------------------------------------------------------------------------------
# Text


def test_text_over_max_text_chars_is_rejected(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "posts.jsonl",
        [
            {"external_id": "short", "text": "fine"},
            {"external_id": "huge", "text": "x" * 1_000_000},
            {"external_id": "limit", "text": "y" * sqlite_desk.settings.max_text_chars},
        ],
    )

    report = ingest_file(sqlite_desk, path)

    assert report.added == 2
    assert set(stored_posts(sqlite_desk)) == {"short", "limit"}
    assert list(rejections(report)) == ["posts.jsonl:2"]
    reason = rejections(report)["posts.jsonl:2"]
    assert "1,000,000 characters" in reason and "MAX_TEXT_CHARS" in reason and "100,000" in reason


UNICODE_TEXTS = {
    "emoji": "family 👨\u200d👩\u200d👧\u200d👦, flag 🇯🇵, thumbs 👍🏽, keycap 1\ufe0f\u20e3",
    "arabic": "\u200fمرحبا بالعالم! هذا منشور تجريبي.",
    "hebrew": "שלום עולם \u202bמוטבע\u202c end",
    "zero_width": "zero\u200bwidth\u200cnon\u200djoiner\u2060word\ufeffbom",
    "combining": "cafe\u0301 A\u030a Z\u0335\u0327\u0301algo n\u0303",  # NFD: must not be normalised
    "whitespace": "  leading and trailing  \n\ttab\r\nCRLF \u00a0nbsp\u2028line sep ",
    "mixed": "English العربية עברית 中文 हिन्दी 🙂",
}


def test_unicode_text_is_stored_byte_for_byte(desk: Desk, tmp_path: Path) -> None:
    rows = [
        {"external_id": f"u-{name}", "text": text, "author": text[:40], "metadata": {"echo": text}}
        for name, text in UNICODE_TEXTS.items()
    ]
    rows.append({"external_id": "u-nul", "text": "before\u0000after"})
    path = write_jsonl(tmp_path / "posts.jsonl", rows)

    report = ingest_file(desk, path)

    assert report.added == len(UNICODE_TEXTS)
    assert count(desk, Post) == len(UNICODE_TEXTS)
    loc = f"posts.jsonl:{len(rows)}"
    assert list(rejections(report)) == [loc]
    assert "NUL" in rejections(report)[loc]
    posts = stored_posts(desk)
    for name, text in UNICODE_TEXTS.items():
        post = posts[f"u-{name}"]
        assert post.text.encode("utf-8") == text.encode("utf-8"), name
        assert post.author == text[:40], name
        assert post.meta == {"echo": text}, name


def test_invisible_characters_in_external_id_are_rejected(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "posts.jsonl",
        [
            {"external_id": "abc\u200b", "text": "zero-width space"},  # 1
            {"external_id": "ok-1", "text": "fine"},  # 2
            {"external_id": "\u202eevil", "text": "bidi override"},  # 3
            {"external_id": "tab\there", "text": "control"},  # 4
            {"external_id": "  padded  ", "text": "surrounding spaces are trimmed"},  # 5
        ],
    )

    report = ingest_file(sqlite_desk, path)

    assert report.added == 2
    assert set(stored_posts(sqlite_desk)) == {"ok-1", "padded"}
    found = rejections(report)
    assert list(found) == ["posts.jsonl:1", "posts.jsonl:3", "posts.jsonl:4"]
    for reason in found.values():
        assert reason.startswith("external_id:")
        assert "zero-width" in reason and "control or invisible" in reason


def test_nul_in_text_is_rejected_with_a_clear_reason(desk: Desk, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "posts.jsonl",
        [{"external_id": "n1", "text": "a\u0000b"}, {"external_id": "n2", "text": "clean"}],
    )

    report = ingest_file(desk, path)

    assert report.added == 1
    assert set(stored_posts(desk)) == {"n2"}
    assert list(rejections(report)) == ["posts.jsonl:1"]
    reason = rejections(report)["posts.jsonl:1"]
    assert "NUL" in reason and "remove them" in reason


@pytest.mark.parametrize("field", ["author", "metadata"])
def test_nul_in_author_or_metadata_is_rejected(desk: Desk, tmp_path: Path, field: str) -> None:
    bad: dict[str, Any] = {"external_id": "bad"}
    if field == "author":
        bad["author"] = "mal\u0000lory"
    else:
        bad["metadata"] = {"note": "a\u0000b"}
    path = write_jsonl(tmp_path / "posts.jsonl", [{"external_id": "good1"}, bad, {"external_id": "good2"}])

    report = ingest_file(desk, path)

    assert set(stored_posts(desk)) == {"good1", "good2"}
    assert list(rejections(report)) == ["posts.jsonl:2"]
    assert "NUL" in rejections(report)["posts.jsonl:2"]


def test_lone_surrogate_in_text_is_rejected_not_fatal(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "posts.jsonl",
        ['{"external_id": "s1", "text": "cut emoji \\ud83d"}', {"external_id": "s2", "text": "fine"}],
    )

    report = ingest_file(sqlite_desk, path)

    assert set(stored_posts(sqlite_desk)) == {"s2"}
    assert list(rejections(report)) == ["posts.jsonl:1"]


def test_nul_in_image_name_is_rejected_not_fatal(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "posts.jsonl",
        [{"external_id": "p1", "images": ["a\u0000.jpg"]}, {"external_id": "p2", "text": "fine"}],
    )

    report = ingest_file(sqlite_desk, path)

    assert set(stored_posts(sqlite_desk)) == {"p2"}
    assert list(rejections(report)) == ["posts.jsonl:1"]


def test_created_at_out_of_range_is_rejected_not_fatal(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "posts.jsonl",
        [{"external_id": "far", "created_at": "9999-12-31T23:00:00-05:00"}, {"external_id": "near"}],
    )

    report = ingest_file(sqlite_desk, path)

    assert set(stored_posts(sqlite_desk)) == {"near"}
    assert list(rejections(report)) == ["posts.jsonl:1"]


# --------------------------------------------------------------------------------------------
# Folders of images


def test_folder_ingest_with_sidecars_and_subfolders(sqlite_desk: Desk, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    make_image(drop / "a.jpg", 1)
    (drop / "a.txt").write_text("text of a\nsecond line", encoding="utf-8")
    make_image(drop / "b.png", 2)
    (drop / "b.json").write_text(
        json.dumps({"author": "bob", "created_at": "2024-01-02T03:04:05Z", "text": "from json", "tags": ["x"]}),
        encoding="utf-8",
    )
    (drop / "b.txt").write_text("ignored: the JSON sidecar has text", encoding="utf-8")
    make_image(drop / "sub" / "deeper" / "c.jpg", 3)
    (drop / "sub" / "deeper" / "c.txt").write_bytes("子文件夹里的图片".encode("gbk"))
    (drop / "orphan.txt").write_text("no picture for me", encoding="utf-8")
    make_image(drop / "e.jpg", 4)
    (drop / "e.json").write_text("{not json", encoding="utf-8")
    (drop / "stray.csv").write_text("external_id\nx\n", encoding="utf-8")
    # Ignored: hidden files and folders, OS clutter (none of them is even a valid image).
    write_bytes(drop / ".DS_Store", b"\x00\x00\x00\x01Bud1")
    write_bytes(drop / ".hidden.jpg", b"")
    write_bytes(drop / ".thumbnails" / "x.jpg", b"not an image")
    write_bytes(drop / "Thumbs.db", b"clutter")

    report = ingest_paths(sqlite_desk.sessions, [drop], sqlite_desk.settings)

    posts = stored_posts(sqlite_desk)
    assert set(posts) == {"a", "b"}
    assert report.added == 2
    found = rejections(report)
    assert set(found) == {"orphan.txt", "e.jpg", "stray.csv", "sub/deeper/c.jpg"}
    assert "not UTF-8 text" in found["sub/deeper/c.jpg"] and "--encoding" in found["sub/deeper/c.jpg"]
    # named, the encoding reads the GBK sidecar (and the ASCII ones as before)
    named = ingest_paths(sqlite_desk.sessions, [drop], sqlite_desk.settings, encoding="gbk")
    assert (named.added, named.already_present) == (1, 2)
    posts = stored_posts(sqlite_desk)
    assert "sidecar file with no image" in found["orphan.txt"]
    assert found["e.jpg"].startswith("sidecar e.json is malformed JSON")
    assert "ingest them by name" in found["stray.csv"]

    assert posts["a"].text == "text of a\nsecond line"
    assert posts["b"].text == "from json"
    assert posts["b"].author == "bob"
    assert posts["b"].created_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert posts["b"].meta == {"tags": ["x"]}
    assert posts["sub/deeper/c"].text == "子文件夹里的图片"
    assert [link.original_name for link in posts["sub/deeper/c"].media_links] == ["sub/deeper/c.jpg"]
    assert count(sqlite_desk, Media) == 3

    again = ingest_paths(sqlite_desk.sessions, [drop], sqlite_desk.settings, encoding="gbk")
    assert (again.added, again.already_present) == (0, 3)
    assert count(sqlite_desk, Post) == 3


def test_folder_symlink_pointing_outside_is_rejected(sqlite_desk: Desk, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    secret = make_image(tmp_path / "private" / "secret.jpg", 9)
    make_image(drop / "fine.jpg", 1)
    (drop / "looks-local.jpg").symlink_to(secret)

    report = ingest_paths(sqlite_desk.sessions, [drop], sqlite_desk.settings)

    assert report.added == 1
    assert set(stored_posts(sqlite_desk)) == {"fine"}
    assert list(rejections(report)) == ["looks-local.jpg"]
    assert "outside the input folder" in rejections(report)["looks-local.jpg"]
    assert count(sqlite_desk, Media) == 1


# --------------------------------------------------------------------------------------------
# Chunking


def test_bad_records_across_chunks_do_not_cost_the_good_ones(desk: Desk, tmp_path: Path) -> None:
    total = 2 * CHUNK_SIZE + 50
    rows: list[dict[str, Any] | str] = [{"external_id": f"n{i:04d}", "text": f"post {i}"} for i in range(1, total + 1)]
    rows[CHUNK_SIZE] = {"external_id": "", "text": "first line of the second chunk"}  # line 201
    rows[249] = {"external_id": "n0250", "created_at": "not a date"}  # line 250
    rows[299] = dict(rows[9])  # line 300 repeats line 10 exactly
    rows[CHUNK_SIZE * 2 + 9] = "{broken"  # line 410
    path = write_jsonl(tmp_path / "big.jsonl", rows)

    report = ingest_file(desk, path)

    assert report.added == total - 4
    assert report.already_present == 1
    assert count(desk, Post) == total - 4
    found = rejections(report)
    assert list(found) == ["big.jsonl:201", "big.jsonl:250", "big.jsonl:410"]
    assert found["big.jsonl:201"].startswith("external_id:") and "at least 1 character" in found["big.jsonl:201"]
    assert found["big.jsonl:250"].startswith("created_at:")
    assert "malformed JSON" in found["big.jsonl:410"]
    stored = set(stored_posts(desk))
    assert "n0250" not in stored
    assert {"n0001", "n0200", "n0202", "n0249", "n0251", "n0450"} <= stored
    assert "n0300" not in stored  # line 300 held a repeat of n0010


# --------------------------------------------------------------------------------------------
# Command line


@pytest.fixture
def cli_env(sqlite_desk: Desk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Desk:
    """`python -m review` configured for the migrated SQLite desk, run from tmp_path."""
    for var in ("REVIEW_CONFIG", "MAX_IMAGE_PIXELS", "MAX_IMAGE_BYTES", "MAX_TEXT_CHARS", "THUMBNAIL_SIZE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATABASE_URL", sqlite_desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(sqlite_desk.settings.media_dir))
    monkeypatch.chdir(tmp_path)
    return sqlite_desk


def test_cli_ingest_with_rejections_exits_1(cli_env: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_image(tmp_path / "in" / "ok.jpg", 1)
    path = write_jsonl(
        tmp_path / "in" / "posts.jsonl",
        [
            {"external_id": "c1", "images": ["ok.jpg"]},
            {"external_id": "c2", "images": ["nope.jpg"]},
            "{oops",
            {"external_id": "c4", "text": "fine"},
        ],
    )

    rc = main(["ingest", str(path)])

    out, err = capsys.readouterr()
    assert rc == 1
    assert out.strip().splitlines()[-1] == "2 added, 0 already present, 2 rejected"
    err_lines = sorted(line for line in err.splitlines() if line.startswith("rejected "))
    assert len(err_lines) == 2
    assert err_lines[0].startswith("rejected posts.jsonl:2: image 'nope.jpg': file not found")
    assert err_lines[1].startswith("rejected posts.jsonl:3: malformed JSON")
    assert "Traceback" not in err
    assert set(stored_posts(cli_env)) == {"c1", "c4"}


def test_cli_ingest_clean_file_exits_0(cli_env: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_jsonl(tmp_path / "posts.jsonl", [{"external_id": "k1"}, {"external_id": "k2", "text": "hi"}])

    assert main(["ingest", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "2 added, 0 already present, 0 rejected"
    assert "rejected " not in err

    assert main(["ingest", "--quiet", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "0 added, 2 already present, 0 rejected"
    assert "rejected " not in err
    assert count(cli_env, Post) == 2


def test_cli_ingest_notes_a_non_utf8_encoding(
    cli_env: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_bytes(tmp_path / "weibo.csv", GBK_CSV.encode("gbk"))

    assert main(["ingest", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "not UTF-8 text" in err and "--encoding" in err and "Traceback" not in err

    rc = main(["ingest", "--encoding", "gbk", str(path)])

    out, err = capsys.readouterr()
    assert rc == 1
    assert out.strip() == "2 added, 0 already present, 1 rejected"
    assert "rejected weibo.csv:5: has 2 fields, the header has 3" in err
    assert f"note: read {path} as gbk" in err
    assert stored_posts(cli_env)["g1"].author == "张三"


def test_cli_unmigrated_database_exits_2_with_upgrade_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REVIEW_CONFIG", raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'fresh' / 'never-migrated.db'}")
    monkeypatch.setenv("MEDIA_DIR", str(tmp_path / "media"))
    monkeypatch.chdir(tmp_path)
    path = write_jsonl(tmp_path / "posts.jsonl", [{"external_id": "x"}])

    rc = main(["ingest", str(path)])

    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "python -m review db upgrade" in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "name",
    [
        "no-such-folder",
        "no-such-file.jsonl",
    ],
)
def test_cli_nonexistent_input_exits_2(
    cli_env: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    rc = main(["ingest", str(tmp_path / name)])

    out, err = capsys.readouterr()
    assert rc == 2
    assert err.strip() == f"error: {tmp_path / name}: no such file or folder"
    assert count(cli_env, Post) == 0


def test_cli_unknown_encoding_exits_2(cli_env: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_jsonl(tmp_path / "posts.jsonl", [{"external_id": "x"}])

    rc = main(["ingest", "--encoding", "klingon", str(path)])

    _, err = capsys.readouterr()
    assert rc == 2
    assert err.strip().startswith("error: unknown encoding 'klingon'")
    assert "Traceback" not in err
    assert count(cli_env, Post) == 0

"""review/ingest/uploads.py, what an upload may hold: a JSONL with its images, a zip that keeps its
folder layout, images alone (a folder ingest), file names with spaces or Chinese; refused: a zip
member that leaves its folder, an account without the ingest permission, no files, a broken zip.
(Damaged zips, zip bombs, duplicate names, encodings: test_ingest_uploads.py.)"""

from __future__ import annotations

import io
import zipfile

import pytest
from sqlalchemy import func, select

from db.models import Media, Post, PostMedia
from review.auth import PermissionDenied
from review.errors import IngestError
from review.ingest import ingest_upload
from tests.conftest import jsonl_bytes, png_bytes
from tests.factories import staff


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def _stored(desk) -> dict[str, tuple[str, str, int]]:
    """external_id → (source, text, number of images) of every stored post."""
    with desk.sessions() as session:
        rows = session.execute(
            select(Post.external_id, Post.source, Post.text, func.count(PostMedia.media_id))
            .outerjoin(PostMedia, PostMedia.post_id == Post.id)
            .group_by(Post.id)
        ).all()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_upload_of_a_jsonl_with_its_images(desk) -> None:
    p = staff(desk)
    data = jsonl_bytes(
        {"external_id": "u1", "text": "one image", "images": ["a.png"]},
        {"external_id": "u2", "text": "two images", "images": ["a.png", "b.png"]},
        {"external_id": "u3", "text": "text only"},
        {"external_id": "u4", "text": "missing image", "images": ["nowhere.png"]},
    )
    files = [("posts.jsonl", data), ("a.png", png_bytes(1)), ("b.png", png_bytes(2))]
    report = ingest_upload(desk.sessions, desk.settings, p["lea"], files, source="upload")
    assert (report.added, report.already_present) == (3, 0)
    assert [r.location for r in report.rejected] == ["posts.jsonl:4"]
    assert len(report.post_ids) == 3
    assert _stored(desk) == {
        "u1": ("upload", "one image", 1),
        "u2": ("upload", "two images", 2),
        "u3": ("upload", "text only", 0),
    }
    with desk.sessions() as session:
        assert session.scalar(select(func.count(Media.id))) == 2  # a.png stored once
        statuses = set(session.scalars(select(Post.status)))
    assert statuses == {"unscored"}
    # the same upload again adds nothing
    again = ingest_upload(desk.sessions, desk.settings, p["admin"], files[:1] + files[1:], source="upload")
    assert (again.added, again.already_present) == (0, 3)


def test_upload_of_a_zip_keeps_its_folder_layout(desk) -> None:
    p = staff(desk)
    members = {
        "batch/posts.jsonl": jsonl_bytes(
            {"external_id": "z1", "text": "from a zip", "images": ["img/c.png"]},
            {"external_id": "z2", "source": "forum", "text": "two", "images": ["img/c.png", "img/sub/d.png"]},
        ),
        "batch/img/c.png": png_bytes(3),
        "batch/img/sub/d.png": png_bytes(4),
    }
    report = ingest_upload(desk.sessions, desk.settings, p["lea"], [("export.zip", _zip(members))])
    assert report.rejected == [] and report.added == 2
    assert _stored(desk) == {"z1": ("local", "from a zip", 1), "z2": ("forum", "two", 2)}


@pytest.mark.parametrize("bad", ["../evil.png", "batch/../../evil.png", "/abs/evil.png"])
def test_upload_refuses_a_zip_that_leaves_its_folder(desk, bad: str) -> None:
    p = staff(desk)
    members = {
        "batch/posts.jsonl": jsonl_bytes({"external_id": "ok", "text": "fine", "images": ["c.png"]}),
        "batch/c.png": png_bytes(5),
        bad: png_bytes(6),
    }
    plain = ("plain.jsonl", jsonl_bytes({"external_id": "plain", "text": "also fine"}))
    with pytest.raises(IngestError, match="refused member"):
        ingest_upload(desk.sessions, desk.settings, p["lea"], [plain, ("evil.zip", _zip(members))])
    assert _stored(desk) == {}
    with desk.sessions() as session:
        assert session.scalar(select(func.count(Media.id))) == 0


def test_upload_needs_the_ingest_permission(desk) -> None:
    p = staff(desk)
    files = [("posts.jsonl", jsonl_bytes({"external_id": "m1", "text": "x"}))]
    with pytest.raises(PermissionDenied):
        ingest_upload(desk.sessions, desk.settings, p["ann"], files)
    assert _stored(desk) == {}
    with pytest.raises(IngestError, match="no files"):
        ingest_upload(desk.sessions, desk.settings, p["lea"], [])
    with pytest.raises(IngestError, match="not a readable zip"):
        ingest_upload(desk.sessions, desk.settings, p["lea"], [("broken.zip", b"not a zip at all")])


def test_upload_of_images_alone_is_a_folder_ingest(desk) -> None:
    p = staff(desk)
    files = [("cat.png", png_bytes(7)), ("dog.png", png_bytes(8)), ("dog.txt", b"a dog")]
    report = ingest_upload(desk.sessions, desk.settings, p["lea"], files, source="photos")
    assert report.rejected == [] and report.added == 2
    assert _stored(desk) == {"cat": ("photos", "", 1), "dog": ("photos", "a dog", 1)}


def test_upload_keeps_the_file_names_a_jsonl_refers_to(sqlite_desk) -> None:
    desk = sqlite_desk
    p = staff(desk)
    data = jsonl_bytes(
        {"external_id": "s1", "text": "space", "images": ["my photo.png"]},
        {"external_id": "s2", "text": "中文", "images": ["截图 1.png"]},
    )
    files = [("posts.jsonl", data), ("my photo.png", png_bytes(9)), ("截图 1.png", png_bytes(10))]
    report = ingest_upload(desk.sessions, desk.settings, p["lea"], files)
    assert report.rejected == [] and report.added == 2


def test_upload_of_images_with_chinese_names(sqlite_desk) -> None:
    desk = sqlite_desk
    p = staff(desk)
    report = ingest_upload(
        desk.sessions, desk.settings, p["lea"], [("猫.png", png_bytes(11)), ("狗.png", png_bytes(12))]
    )
    assert report.rejected == [] and report.added == 2

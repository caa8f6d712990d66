"""review/ingest/run.py: the entry points — ``ingest_records`` (the API: locations and relative
image paths) and the permission check every entry point makes, against the role stored now.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update

from db.models import Post, User
from review.auth import OPERATOR, PermissionDenied
from review.desk import Desk
from review.ingest import ingest_paths, ingest_records
from review.ingest.uploads import ingest_upload
from review.worker import start_scoring
from tests.conftest import account, jsonl_bytes, make_image, png_bytes, rejections, row_count, stored_posts


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
    assert row_count(sqlite_desk, Post) == 2


def test_attached_images_are_names_never_paths_and_each_record_has_its_outcome(desk: Desk, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    make_image(secret, 9)
    big = desk.settings.with_overrides(max_image_bytes=2_000)
    records = [
        {"external_id": "a1", "images": ["pic.png"]},
        {"external_id": "a2", "images": [str(secret)]},  # a path on this machine: not an attachment, not read
        {"external_id": "a3", "images": ["../../etc/passwd"]},
        {"external_id": "a4", "images": ["junk.jpg"]},
        {"external_id": "a5", "images": ["huge.png"]},
        {"external_id": "a1", "images": ["pic.png"]},  # the same again: stored once
        {"external_id": 7, "text": ["not text"]},
    ]
    attachments = [
        {"pic.png": png_bytes(1)},
        {},
        {"../../etc/passwd": png_bytes(2)},  # an odd name is only a name
        {"junk.jpg": b"not an image at all"},
        {"huge.png": b"\x89PNG" + bytes(3_000)},  # refused by its size before any decoding
        {"pic.png": png_bytes(1)},
        None,
    ]
    report = ingest_records(desk.sessions, records, big, source="api", attachments=attachments)
    outcomes = [(o.order, o.status, o.external_id) for o in report.outcomes]
    assert outcomes == [(1, "created", "a1"), (2, "rejected", "a2"), (3, "created", "a3"), (4, "rejected", "a4"),
                        (5, "rejected", "a5"), (6, "already_present", "a1"), (7, "rejected", "7")]  # fmt: skip
    reasons = {o.order: o.reason for o in report.outcomes if o.reason}
    assert "no image of that name came with the record" in reasons[2]
    assert "not" in reasons[4] and "MAX_IMAGE_BYTES" in reasons[5] and "text" in reasons[7]
    posts = stored_posts(desk)
    assert set(posts) == {"a1", "a3"} and report.outcomes[0].post_id == posts["a1"].id
    assert report.outcomes[5].post_id == posts["a1"].id
    assert posts["a3"].media_links[0].original_name == "../../etc/passwd"
    again = ingest_records(desk.sessions, records[:1], big, source="api", attachments=attachments[:1])
    assert [(o.status, o.post_id) for o in again.outcomes] == [("already_present", posts["a1"].id)]
    with pytest.raises(ValueError):  # attachments must pair with the records
        ingest_records(desk.sessions, records[:2], big, source="api", attachments=attachments[:1])


def test_a_role_lowered_after_sign_in_is_refused(desk: Desk, tmp_path: Path) -> None:
    lead = account(desk, "lead")  # the Actor a page holds since sign-in
    with desk.sessions() as session, session.begin():
        session.execute(update(User).where(User.id == lead.id).values(role="moderator"))
    files = [("posts.jsonl", jsonl_bytes({"external_id": "m1"}))]
    with pytest.raises(PermissionDenied):
        ingest_upload(desk.sessions, desk.settings, lead, files)
    path = tmp_path / "posts.jsonl"
    path.write_bytes(files[0][1])
    with pytest.raises(PermissionDenied):
        ingest_paths(desk.sessions, [path], desk.settings, actor=lead)
    with pytest.raises(PermissionDenied):
        start_scoring(desk.settings, lead, limit=1, provider="baseline")
    with pytest.raises(PermissionDenied):
        start_scoring(desk.settings, lead, limit=1, provider="baseline", sessions=desk.sessions)
    assert stored_posts(desk) == {}
    assert ingest_paths(desk.sessions, [path], desk.settings, actor=OPERATOR).added == 1


def test_records_bring_their_reports_with_them(desk: Desk, tmp_path: Path) -> None:
    records = [
        {
            "external_id": "r1",
            "reports": [
                {"kind": "user_report", "reason": "spam", "count": 3},
                {"kind": "classifier", "reason": "nsfw"},
            ],
        },  # fmt: skip
        {"external_id": "r2", "reports": [{"kind": "neighbour", "count": 0}]},
        {"external_id": "r3", "reports": "spam"},
    ]
    report = ingest_records(desk.sessions, records, desk.settings, source="api")
    assert [(o.external_id, o.status) for o in report.outcomes] == [
        ("r1", "created"), ("r2", "rejected"), ("r3", "rejected")
    ]  # fmt: skip
    assert "reports.0.kind" in report.outcomes[1].reason and "reports.0.count" in report.outcomes[1].reason
    with desk.sessions() as session:
        post = session.scalars(select(Post).where(Post.external_id == "r1")).one()
        stored = [(r.kind, r.reason, r.count, r.status_at_arrival) for r in post.reports]
        assert post.report_count == 4 and stored == [
            ("user_report", "spam", 3, "unscored"),
            ("classifier", "nsfw", 1, "unscored"),
        ]
    # from a CSV file too (a JSON cell), and a post already there keeps its reports
    (tmp_path / "in.csv").write_text(
        'external_id,reports\nr1,"[{""kind"": ""user_report"", ""count"": 9}]"\nr4,"[{""kind"": ""classifier""}]"\n',
        encoding="utf-8",
    )
    again = ingest_paths(desk.sessions, [tmp_path / "in.csv"], desk.settings, source="api")
    assert (again.added, again.already_present) == (1, 1)
    with desk.sessions() as session:
        counts = dict(session.execute(select(Post.external_id, Post.report_count)).all())
    assert counts == {"r1": 4, "r4": 1}

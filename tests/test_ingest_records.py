"""review/ingest/records.py: what a record may hold — text length, Unicode stored byte for byte,
invisible characters in ids, NUL and lone surrogates, NaN and infinity, metadata depth and keys —
each refused with a reason for that record only; created_at within range (compact dates are dates,
not unix seconds), else left empty with a warning; ``validate`` on its own keeps unknown fields as metadata.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from db.models import Post
from review.config import Settings
from review.desk import Desk
from review.ingest import ingest_paths
from review.ingest.records import PreparedRecord, RawRecord, validate
from tests.conftest import ingest_files, jsonl_bytes, rejections, row_count, stored_posts, write_jsonl


def test_text_over_max_text_chars_is_rejected(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "posts.jsonl",
        [
            {"external_id": "short", "text": "fine"},
            {"external_id": "huge", "text": "x" * 1_000_000},
            {"external_id": "limit", "text": "y" * sqlite_desk.settings.max_text_chars},
        ],
    )

    report = ingest_files(sqlite_desk, path)

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

    report = ingest_files(desk, path)

    assert report.added == len(UNICODE_TEXTS)
    assert row_count(desk, Post) == len(UNICODE_TEXTS)
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

    report = ingest_files(sqlite_desk, path)

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

    report = ingest_files(desk, path)

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

    report = ingest_files(desk, path)

    assert set(stored_posts(desk)) == {"good1", "good2"}
    assert list(rejections(report)) == ["posts.jsonl:2"]
    assert "NUL" in rejections(report)["posts.jsonl:2"]


def test_lone_surrogate_in_text_is_rejected_not_fatal(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "posts.jsonl",
        ['{"external_id": "s1", "text": "cut emoji \\ud83d"}', {"external_id": "s2", "text": "fine"}],
    )

    report = ingest_files(sqlite_desk, path)

    assert set(stored_posts(sqlite_desk)) == {"s2"}
    assert list(rejections(report)) == ["posts.jsonl:1"]


def test_nul_in_image_name_is_rejected_not_fatal(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "posts.jsonl",
        [{"external_id": "p1", "images": ["a\u0000.jpg"]}, {"external_id": "p2", "text": "fine"}],
    )

    report = ingest_files(sqlite_desk, path)

    assert set(stored_posts(sqlite_desk)) == {"p2"}
    assert list(rejections(report)) == ["posts.jsonl:1"]


def test_created_at_out_of_range_is_left_empty_not_fatal(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "posts.jsonl",
        [{"external_id": "far", "created_at": "9999-12-31T23:00:00-05:00"}, {"external_id": "near"}],
    )

    report = ingest_files(sqlite_desk, path)

    assert set(stored_posts(sqlite_desk)) == {"far", "near"}
    assert stored_posts(sqlite_desk)["far"].created_at is None
    assert report.rejected == [] and report.warnings[0].startswith("posts.jsonl:1: created_at left empty")


def test_metadata_nested_too_deeply_is_a_rejection_not_a_crash(sqlite_desk: Desk, tmp_path: Path) -> None:
    # Pydantic's serialiser gives up at ~250 levels with a ValueError that used to end the ingest.
    path = tmp_path / "deep.jsonl"
    deep = "[" * 300 + "]" * 300
    path.write_text('{"external_id": "deep", "metadata": {"x": ' + deep + '}}\n{"external_id": "flat"}\n')
    report = ingest_paths(sqlite_desk.sessions, [path], sqlite_desk.settings)
    assert report.added == 1
    assert "nested more than 32 levels" in rejections(report)["deep.jsonl:1"]
    assert set(stored_posts(sqlite_desk)) == {"flat"}


def test_metadata_keys_are_bounded(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = tmp_path / "meta.jsonl"
    half = {f"k{i}": i for i in range(300)}
    path.write_bytes(
        jsonl_bytes(
            {"external_id": "many", "metadata": {f"k{i}": i for i in range(501)}},
            {"external_id": "nested", "metadata": {"a": half, "b": {"c": half}}},
            {"external_id": "long", "metadata": {"x" * 129: 1}},
            {"external_id": "fine", "metadata": {f"k{i}": i for i in range(500)}},
        )
    )  # fmt: skip
    report = ingest_paths(sqlite_desk.sessions, [path], sqlite_desk.settings)
    reasons = rejections(report)
    assert "more than 500 keys" in reasons["meta.jsonl:1"] and "more than 500 keys" in reasons["meta.jsonl:2"]
    assert "129 characters" in reasons["meta.jsonl:3"]
    assert set(stored_posts(sqlite_desk)) == {"fine"}


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (253402300800, "out of range"),  # the year 10000 in seconds: Pydantic read it as ms (1978)
        ("253402300800", "out of range"),
        (1e20, "out of range"),  # neither seconds nor milliseconds of a post's time
        (0, "out of range"),  # "unknown" placeholders
        (-1, "out of range"),
        ("1969-12-31", "out of range"),
        ("2999-01-01T00:00:00Z", "out of range"),
        ("10000-01-01", "created_at"),
    ],
)
def test_absurd_times_are_left_empty_not_reinterpreted(sqlite_desk: Desk, tmp_path: Path, value: Any, why: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(jsonl_bytes({"external_id": "t", "created_at": value}, {"external_id": "ok"}))
    report = ingest_paths(sqlite_desk.sessions, [path], sqlite_desk.settings)
    assert set(stored_posts(sqlite_desk)) == {"t", "ok"} and stored_posts(sqlite_desk)["t"].created_at is None
    (warning,) = report.warnings
    assert warning.startswith("t.jsonl:1: created_at left empty") and why in warning


def test_sane_times_are_kept(sqlite_desk: Desk, tmp_path: Path) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    path = tmp_path / "t.jsonl"
    path.write_bytes(
        jsonl_bytes(
            {"external_id": "secs", "created_at": 1700000000},
            {"external_id": "text", "created_at": "1700000000.5"},
            {"external_id": "iso", "created_at": "2024-05-01T12:00:00+08:00"},
            {"external_id": "soon", "created_at": soon},  # a platform clock a little ahead
            {"external_id": "usenet", "created_at": "1981-06-01"},
        )
    )
    report = ingest_paths(sqlite_desk.sessions, [path], sqlite_desk.settings)
    assert report.rejected == []
    posts = stored_posts(sqlite_desk)
    assert posts["secs"].created_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert posts["iso"].created_at == datetime(2024, 5, 1, 4, 0, tzinfo=UTC)


def test_nan_and_infinity_are_refused_on_both_databases(desk: Desk, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "nan.jsonl",
        [
            '{"external_id": "n1", "metadata": {"score": NaN}}',
            '{"external_id": "n2", "metadata": {"score": -Infinity}}',
            '{"external_id": "ok", "metadata": {"score": 0.5}}',
        ],
    )
    report = ingest_files(desk, path)
    reasons = rejections(report)
    assert "NaN is not a JSON number" in reasons["nan.jsonl:1"]
    assert "-Infinity is not a JSON number" in reasons["nan.jsonl:2"]
    assert set(stored_posts(desk)) == {"ok"}


def test_nan_from_the_api_is_refused(desk: Desk) -> None:
    from review.ingest import ingest_records

    report = ingest_records(
        desk.sessions, [{"external_id": "n", "metadata": {"x": float("nan")}}, {"external_id": "ok"}], desk.settings
    )
    assert "metadata.x is nan" in rejections(report)["record 1"]
    assert set(stored_posts(desk)) == {"ok"}


def test_compact_dates_are_dates_not_unix_seconds(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", ['{"external_id": "d", "created_at": "20261120"}'])
    ingest_files(sqlite_desk, path)
    created = stored_posts(sqlite_desk)["d"].created_at
    assert created is not None and (created.year, created.month, created.day) == (2026, 11, 20)


def test_validate_keeps_unknown_fields_as_metadata_and_refuses_what_no_database_keeps() -> None:
    settings = Settings()
    raw = RawRecord("in:1", {"external_id": " 7 ", "likes": 3, "metadata": {"lang": "zh"}}, None)
    prepared = validate(raw, settings, "weibo")
    assert isinstance(prepared, PreparedRecord)
    record = prepared.record
    assert (record.external_id, record.source, record.metadata) == ("7", "weibo", {"likes": 3, "lang": "zh"})
    assert prepared.fingerprint == validate(raw, settings, "weibo").fingerprint  # content, not identity
    assert "NUL" in str(validate(RawRecord("in:2", {"external_id": "x", "text": "a\x00b"}, None), settings, None))
    too_long = RawRecord("in:3", {"external_id": "x", "text": "a" * (settings.max_text_chars + 1)}, None)
    assert "MAX_TEXT_CHARS" in str(validate(too_long, settings, None))
    assert validate(RawRecord("in:4", {"external_id": "x", "metadata": []}, None), settings, None) != ""

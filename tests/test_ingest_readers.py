"""review/ingest/readers.py through an ingest: files and encodings into raw records — JSONL,
CSV/TSV (multi-line quotes, extra columns as metadata, duplicate columns), folders of images with
sidecars, UTF-8 with or without BOM, UTF-16, legacy encodings refused unless named, a bad byte or
line costing only its row, oversized lines and sidecars refused unread, symlinks kept inside the
folder. Every input is generated here; each rejection is checked for its ``file:line`` and reason.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

import review.ingest.readers as readers
from db.models import Media, Post
from review.desk import Desk
from review.errors import IngestError
from review.ingest import ingest_paths
from review.ingest.readers import input_kind, read_csv, read_jsonl
from tests.conftest import (
    BIG5,
    GBK_CSV,
    ingest_files,
    make_image,
    rejections,
    row_count,
    solid_image,
    stored_posts,
    write_bytes,
    write_jsonl,
)


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

    report = ingest_files(sqlite_desk, path)

    assert report.added == 2
    assert row_count(sqlite_desk, Post) == 2
    assert set(stored_posts(sqlite_desk)) == {"m1", "m6"}
    found = rejections(report)
    assert list(found) == ["posts.jsonl:2", "posts.jsonl:3", "posts.jsonl:5"]
    assert "malformed JSON" in found["posts.jsonl:2"] and "column" in found["posts.jsonl:2"]
    assert "expected a JSON object" in found["posts.jsonl:3"] and "list" in found["posts.jsonl:3"]
    assert "expected a JSON object" in found["posts.jsonl:5"] and "str" in found["posts.jsonl:5"]


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

    report = ingest_files(sqlite_desk, path)

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

    report = ingest_files(sqlite_desk, path)

    assert report.added == 1
    assert rejections(report) == {"posts.csv:3": "has 2 fields, the header has 4"}
    assert stored_posts(sqlite_desk)["x1"].meta == {"likes": "5", "lang": "en"}


def test_csv_metadata_column_merges_with_extra_columns(sqlite_desk: Desk, tmp_path: Path) -> None:
    csv_text = 'external_id,metadata,likes\nm1,"{""lang"": ""fr"", ""likes"": 9}",5\nm2,{broken,1\n'
    path = write_bytes(tmp_path / "posts.csv", csv_text.encode())

    report = ingest_files(sqlite_desk, path)

    assert report.added == 1
    assert list(rejections(report)) == ["posts.csv:3"]
    assert "metadata is not valid JSON" in rejections(report)["posts.csv:3"]
    assert stored_posts(sqlite_desk)["m1"].meta == {"lang": "fr", "likes": 9}  # the JSON column wins


def test_csv_empty_source_cell_uses_the_default_source(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "posts.csv", b"external_id,source,text\ns1,,no source given\ns2,forum,given\n")

    report = ingest_files(sqlite_desk, path)

    assert report.rejected == []
    assert report.added == 2
    posts = stored_posts(sqlite_desk)
    assert (posts["s1"].source, posts["s2"].source) == ("local", "forum")


def test_gbk_csv_is_refused_without_an_encoding(sqlite_desk: Desk, tmp_path: Path) -> None:
    # Legacy encodings are not guessed: Big5 and Shift-JIS also decode as GB18030 (mojibake).
    path = write_bytes(tmp_path / "weibo.csv", GBK_CSV.encode("gbk"))

    with pytest.raises(IngestError, match=r"not UTF-8 text.*--encoding gb18030"):
        ingest_files(sqlite_desk, path)
    assert stored_posts(sqlite_desk) == {}

    report = ingest_files(sqlite_desk, path, encoding="gb18030")
    assert report.encodings == {str(path): "gb18030"}
    assert report.added == 2
    assert rejections(report) == {"weibo.csv:5": "has 2 fields, the header has 3"}
    posts = stored_posts(sqlite_desk)
    assert posts["g1"].text == "你好，世界！这是一条测试帖子。"
    assert posts["g1"].author == "张三"
    assert posts["g2"].text == "多行\n文本：第二行"


def test_gbk_csv_with_explicit_encoding(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "weibo.csv", GBK_CSV.encode("gbk"))

    report = ingest_files(sqlite_desk, path, encoding="GBK")

    assert report.encodings == {str(path): "gbk"}
    assert report.added == 2
    assert list(rejections(report)) == ["weibo.csv:5"]
    posts = stored_posts(sqlite_desk)
    assert posts["g1"].text == "你好，世界！这是一条测试帖子。"
    assert posts["g2"].author == "李四"


def test_utf8_bom_csv_does_not_leak_into_the_first_column(sqlite_desk: Desk, tmp_path: Path) -> None:
    text = "external_id,text,region\nb1,첫 번째,kr\nb2,second\n"
    path = write_bytes(tmp_path / "excel.csv", "\ufeff".encode() + text.encode("utf-8"))

    report = ingest_files(sqlite_desk, path)

    assert report.encodings == {str(path): "utf-8-sig"}
    assert report.added == 1
    assert rejections(report) == {"excel.csv:3": "has 2 fields, the header has 3"}
    post = stored_posts(sqlite_desk)["b1"]
    assert post.text == "첫 번째"
    assert post.meta["region"] == "kr"
    assert not any("\ufeff" in key or key == "external_id" for key in post.meta)  # the BOM did not leak

    # Explicit utf-8 on a BOM file: the header still has no BOM in its first name.
    path2 = write_bytes(tmp_path / "excel2.csv", "\ufeff".encode() + b"external_id,text\nb3,x\n")
    report2 = ingest_files(sqlite_desk, path2, encoding="utf-8")
    assert (report2.added, report2.rejected) == (1, [])
    assert stored_posts(sqlite_desk)["b3"].meta == {}
    assert stored_posts(sqlite_desk)["b3"].external_id == "b3"


def test_utf8_bom_jsonl_does_not_leak_into_the_first_record(sqlite_desk: Desk, tmp_path: Path) -> None:
    body = json.dumps({"external_id": "j1", "text": "première"}, ensure_ascii=False) + "\n"
    body += '{"external_id": "j2", "text": }\n'
    body += json.dumps({"external_id": "j3", "text": "третий"}, ensure_ascii=False) + "\n"
    path = write_bytes(tmp_path / "bom.jsonl", "\ufeff".encode() + body.encode("utf-8"))

    report = ingest_files(sqlite_desk, path)

    assert report.encodings == {str(path): "utf-8-sig"}
    assert report.added == 2
    assert list(rejections(report)) == ["bom.jsonl:2"]
    assert "malformed JSON" in rejections(report)["bom.jsonl:2"]
    posts = stored_posts(sqlite_desk)
    assert set(posts) == {"j1", "j3"}
    assert posts["j1"].text == "première"


def test_utf8_bom_jsonl_with_explicit_utf8_encoding(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "bom.jsonl", "\ufeff".encode() + b'{"external_id": "j1"}\n')

    report = ingest_files(sqlite_desk, path, encoding="utf-8")

    assert report.rejected == []
    assert set(stored_posts(sqlite_desk)) == {"j1"}


def test_utf16_jsonl_is_read(sqlite_desk: Desk, tmp_path: Path) -> None:
    body = '{"external_id": "u1", "text": "hé"}\n{"external_id": "u2", "text": "中文"}\n'
    path = write_bytes(tmp_path / "u16.jsonl", body.encode("utf-16"))

    report = ingest_files(sqlite_desk, path)

    assert report.encodings == {str(path): "utf-16"}
    assert report.rejected == []
    assert {k: p.text for k, p in stored_posts(sqlite_desk).items()} == {"u1": "hé", "u2": "中文"}


def test_unknown_encoding_name_is_an_ingest_error(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "posts.jsonl", [{"external_id": "e1"}])

    with pytest.raises(IngestError, match=r"unknown encoding 'klingon'.*gbk"):
        ingest_files(sqlite_desk, path, encoding="klingon")

    assert row_count(sqlite_desk, Post) == 0


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
    assert row_count(sqlite_desk, Media) == 3

    again = ingest_paths(sqlite_desk.sessions, [drop], sqlite_desk.settings, encoding="gbk")
    assert (again.added, again.already_present) == (0, 3)
    assert row_count(sqlite_desk, Post) == 3


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
    assert row_count(sqlite_desk, Media) == 1


SJIS = '{"external_id": "j1", "text": "こんにちは世界"}\n{"external_id": "j2", "text": "東京の天気"}\n'


@pytest.mark.parametrize(("name", "text", "encoding"), [("tw.csv", BIG5, "big5"), ("jp.jsonl", SJIS, "shift_jis")])
def test_big5_and_shift_jis_are_refused_unless_named(
    sqlite_desk: Desk, tmp_path: Path, name: str, text: str, encoding: str
) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    with pytest.raises(IngestError, match="not UTF-8 text.*--encoding"):
        ingest_paths(sqlite_desk.sessions, [path], sqlite_desk.settings)
    assert stored_posts(sqlite_desk) == {}
    report = ingest_paths(sqlite_desk.sessions, [path], sqlite_desk.settings, encoding=encoding)
    assert report.added == 2 and report.rejected == []
    texts = {p.text for p in stored_posts(sqlite_desk).values()}
    assert texts == ({"臺灣的新聞", "颱風警報"} if encoding == "big5" else {"こんにちは世界", "東京の天気"})


def test_one_bad_byte_rejects_its_row_only(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes("external_id,text\nr1,第一行\n".encode() + b"r2,caf\xe9\n" + "r3,第三行\n".encode())
    report = ingest_paths(sqlite_desk.sessions, [path], sqlite_desk.settings)
    assert report.added == 2
    assert rejections(report) == {
        "data.csv:3": "not UTF-8 (byte 0xe9); the row was not stored "
        "(pass --encoding if the file is in another encoding)"
    }
    assert {p.external_id: p.text for p in stored_posts(sqlite_desk).values()} == {"r1": "第一行", "r3": "第三行"}


def test_undecodable_lines_in_ascii_text_cost_only_those_lines(sqlite_desk: Desk, tmp_path: Path) -> None:
    """More than 3 bad bytes, but nothing else beyond ASCII: no line that decodes can be mojibake,
    so the bad lines are rejections and their neighbours are stored (the file is not refused)."""
    path = tmp_path / "data.jsonl"
    path.write_bytes(
        b'{"external_id": "a", "text": "before"}\n'
        b'{"external_id": "b", "text": "\xed\xa0\x80"}\n'
        b'{"external_id": "c", "text": "caf\xe9 au lait"}\n'
        b'{"external_id": "d", "text": "after"}\n'
    )
    report = ingest_paths(sqlite_desk.sessions, [path], sqlite_desk.settings)
    assert report.added == 2
    assert set(rejections(report)) == {"data.jsonl:2", "data.jsonl:3"}
    assert {p.external_id: p.text for p in stored_posts(sqlite_desk).values()} == {"a": "before", "d": "after"}


def test_duplicate_csv_columns_refuse_the_file(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("external_id,text,author, Text \nd1,first text,ann,second text\n", encoding="utf-8")
    report = ingest_paths(sqlite_desk.sessions, [path], sqlite_desk.settings)
    assert report.added == 0
    reason = rejections(report)["dup.csv:1"]
    assert "'text' more than once" in reason and "file not read" in reason
    assert stored_posts(sqlite_desk) == {}


def test_symlinked_sidecar_cannot_read_outside_the_folder(sqlite_desk: Desk, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-CONTENT", encoding="utf-8")
    drop = tmp_path / "drop"
    solid_image(drop / "p.jpg")
    (drop / "p.txt").symlink_to(secret)
    solid_image(drop / "q.jpg", (0, 0, 200))
    report = ingest_files(sqlite_desk, drop)
    assert "points outside the input folder" in rejections(report)["p.jpg"]
    posts = stored_posts(sqlite_desk)
    assert set(posts) == {"q"}
    assert all("SECRET" not in p.text for p in posts.values())


def test_long_csv_field_is_read_whole_and_injects_nothing(sqlite_desk: Desk, tmp_path: Path) -> None:
    desk = Desk(sqlite_desk.settings.with_overrides(max_text_chars=400_000), sqlite_desk.engine, sqlite_desk.sessions)
    long_text = "长" * 150_000 + "\nx9,injected row\n" + "end"
    path = tmp_path / "long.csv"
    body = 'external_id,text\na1,"' + long_text + '"\na2,second\n'
    path.write_text(body, encoding="utf-8")
    report = ingest_files(desk, path)
    assert (report.added, report.rejected) == (2, [])
    posts = stored_posts(desk)
    assert set(posts) == {"a1", "a2"}
    assert posts["a1"].text == long_text


def test_malformed_csv_stops_the_file_with_a_reason(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text('external_id\ttext\na1\tfine\na2\t"broken"quote\na3\tnever read\n', encoding="utf-8")
    report = ingest_files(sqlite_desk, path)
    assert set(stored_posts(sqlite_desk)) == {"a1"}
    reason = rejections(report)["bad.tsv:3"]
    assert "malformed CSV" in reason and "the rest of the file was not read" in reason


def test_absurd_json_is_a_rejection_not_a_crash(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "absurd.jsonl",
        [
            '{"external_id": "big", "metadata": {"n": ' + "9" * 5000 + "}}",
            '{"external_id": "deep", "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}",
            '{"external_id": "ok"}',
        ],
    )
    report = ingest_files(sqlite_desk, path)
    reasons = rejections(report)
    assert reasons["absurd.jsonl:1"].startswith("malformed JSON")
    assert "nested too deeply" in reasons["absurd.jsonl:2"]
    assert set(stored_posts(sqlite_desk)) == {"ok"}


def test_oversized_lines_and_sidecars_are_refused_unread(
    sqlite_desk: Desk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "MAX_RECORD_BYTES", 1000)
    path = write_jsonl(
        tmp_path / "big.jsonl",
        ['{"external_id": "huge", "text": "' + "x" * 5000 + '"}', '{"external_id": "after"}'],
    )
    report = ingest_files(sqlite_desk, path)
    assert "longer than" in rejections(report)["big.jsonl:1"]
    drop = tmp_path / "drop"
    solid_image(drop / "s.jpg")
    (drop / "s.txt").write_text("y" * 5000, encoding="utf-8")
    report = ingest_files(sqlite_desk, drop)
    assert "larger than" in rejections(report)["s.jpg"]
    assert set(stored_posts(sqlite_desk)) == {"after"}


def test_utf16_with_broken_bytes_keeps_the_other_lines(sqlite_desk: Desk, tmp_path: Path) -> None:
    lines = '{"external_id": "u1", "text": "第一"}\n{"external_id": "u2", "text": "第二"}\n'
    lone_surrogate = '{"external_id": "u3", "text": "'.encode("utf-16-le") + b"\x00\xd8" + '"}\n'.encode("utf-16-le")
    path = tmp_path / "u16.jsonl"
    path.write_bytes(
        lines.encode("utf-16")  # with its BOM
        + lone_surrogate
        + '{"external_id": "u4"}\n'.encode("utf-16-le")
        + b"\x41"  # half a code unit: the file ends mid-character
    )
    report = ingest_files(sqlite_desk, path)
    assert report.encodings[str(path)] == "utf-16"
    assert set(stored_posts(sqlite_desk)) == {"u1", "u2", "u4"}
    reasons = rejections(report)
    assert "lone surrogate" in reasons["u16.jsonl:3"]
    assert "the rest of the file was not read" in reasons["u16.jsonl:5"]


def test_nul_and_json_in_csv_metadata(sqlite_desk: Desk, tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(
        'external_id,metadata\nm1,"{""a"": NaN}"\nm2,"' + json.dumps({"deep": [[[1]]]}).replace('"', '""') + '"\n',
        encoding="utf-8",
    )
    report = ingest_files(sqlite_desk, path)
    assert "NaN is not a JSON number" in rejections(report)["m.csv:2"]
    assert stored_posts(sqlite_desk)["m2"].meta == {"deep": [[[1]]]}


def test_readers_yield_raw_records_with_their_locations(tmp_path: Path) -> None:
    jsonl = tmp_path / "posts.jsonl"
    jsonl.write_text('{"external_id": "a", "text": "好"}\nnot json\n', encoding="utf-8")
    first, second = read_jsonl(jsonl, "utf-8")
    assert (first.location, first.base_dir) == ("posts.jsonl:1", tmp_path)
    assert first.data == {"external_id": "a", "text": "好"}
    assert second.location == "posts.jsonl:2" and second.data is None and second.error
    table = tmp_path / "posts.csv"
    table.write_text("external_id,text,likes\nb,hello,3\n", encoding="utf-8")
    (row,) = read_csv(table, "utf-8")
    assert row.location == "posts.csv:2" and row.data is not None and row.data["external_id"] == "b"
    assert [input_kind(p) for p in (jsonl, table, tmp_path)] == ["jsonl", "csv", "folder"]
    (tmp_path / "posts.xml").write_text("<posts/>", encoding="utf-8")
    with pytest.raises(IngestError, match="unknown input type"):
        input_kind(tmp_path / "posts.xml")

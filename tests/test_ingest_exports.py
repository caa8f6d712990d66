"""Real exports in (issue 19): a tab-separated ``.txt`` read with ``--format``, its columns mapped
to the record's fields (``--map``, inline or from TOML; a comma-separated image list; image ids
naming files through ``--image-path``), platform times in their common formats and
``--date-format``, a bad optional field kept as a warning in the post's metadata, identical
messages grouped in the command line's output, and TSV quoting (``--no-quoting``, a runaway
quoted field). Every input is generated here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

import review.ingest.readers as readers
from db.models import Post
from review.cli import main
from review.desk import Desk
from review.errors import IngestError
from review.ingest import ReadOptions, parse_mapping
from review.ingest.records import WARNINGS_KEY
from tests.conftest import ingest_files, make_image, rejections, row_count, stored_posts, write_bytes, write_jsonl

TWITTER_MAP = "external_id=tweetId,text=tweetText,author=username,images=imageId(s),created_at=timestamp"
TWITTER_HEADER = "tweetId\ttweetText\tuserId\timageId(s)\tusername\ttimestamp\tlabel\n"


def twitter_export(folder: Path, rows: list[str]) -> Path:
    """A MediaEval-style tweet export: tab-separated, no quoting, named .txt."""
    return write_bytes(folder / "tweets.txt", (TWITTER_HEADER + "".join(row + "\n" for row in rows)).encode())


def test_a_twitter_export_goes_in_with_format_map_and_dates(
    cli: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inbox = tmp_path / "export"
    make_image(inbox / "images" / "sandyA_fake_01.jpg", 1)
    make_image(inbox / "images" / "sandyA_fake_02.png", 2, fmt="PNG")
    make_image(inbox / "images" / "boston_real_07.jpg", 3)
    path = twitter_export(
        inbox,
        [
            "263046056240115712\tShark in the street 🦈 #sandy http://t.co/x\t21226711\t"
            "sandyA_fake_01,sandyA_fake_02\tiAnnieM\tMon Oct 29 22:34:01 +0000 2012\tfake",
            "263046056240115713\t风暴来了\t42\tboston_real_07\twx_user\t1351550041000\treal",  # Unix milliseconds
            "263046056240115714\tno picture\t43\t\tbob\t2012/10/30 08:15\treal",
            "263046056240115715\twhen?\t44\t\tcarol\tyesterday evening\treal",  # kept, its time left empty
        ],
    )
    args = ["ingest", "--map", TWITTER_MAP, "--image-path", "images/{}.*", str(path)]

    assert main(args) == 2  # a .txt needs its format named
    assert "--format" in capsys.readouterr().err
    assert main([*args[:1], "--format", "tsv", *args[1:]]) == 0

    out, err = capsys.readouterr()
    assert out.strip() == "4 added, 0 already present, 0 rejected"
    (warning,) = err.splitlines()
    assert warning.startswith("warning tweets.txt:5: created_at left empty: not a time in a known format")
    assert warning.endswith("(value 'yesterday evening')")
    posts = stored_posts(cli)
    shark = posts["263046056240115712"]
    assert (shark.text, shark.author) == ("Shark in the street 🦈 #sandy http://t.co/x", "iAnnieM")
    assert shark.created_at == datetime(2012, 10, 29, 22, 34, 1, tzinfo=UTC)
    names = [link.original_name for link in shark.media_links]
    assert names == ["images/sandyA_fake_01.jpg", "images/sandyA_fake_02.png"]  # in order, each with its suffix
    assert [link.media.mime for link in shark.media_links] == ["image/jpeg", "image/png"]
    assert shark.meta == {"userid": "21226711", "label": "fake"}  # the columns not mapped
    assert posts["263046056240115713"].created_at == datetime(2012, 10, 29, 22, 34, 1, tzinfo=UTC)
    assert posts["263046056240115714"].created_at == datetime(2012, 10, 30, 8, 15, tzinfo=UTC)
    late = posts["263046056240115715"]
    assert (late.created_at, late.text, late.author) == (None, "when?", "carol")
    (kept,) = late.meta[WARNINGS_KEY]
    assert kept.startswith("created_at left empty") and kept.endswith("(value 'yesterday evening')")


def test_a_toml_mapping_maps_jsonl_keys_and_splits_a_mapped_image_list(desk: Desk, tmp_path: Path) -> None:
    make_image(tmp_path / "a.jpg", 1)
    make_image(tmp_path / "b.png", 2, fmt="PNG")
    make_image(tmp_path / "dup.jpg", 3)
    make_image(tmp_path / "dup.gif", 4, fmt="GIF")
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('[map]\nexternal_id = "id"\ntext = "body"\nimages = "pics"\ncreated_at = "ts"\n')
    path = write_jsonl(
        tmp_path / "posts.jsonl",
        [
            {"id": 7, "body": "two pictures", "pics": "a, b", "ts": 1351550041, "lang": "en"},
            {"id": "8", "body": "clash", "text": "which text?"},
            {"id": "9", "pics": "dup"},
        ],
    )

    options = ReadOptions(mapping=parse_mapping(str(mapping)), image_path="{}.*")
    report = ingest_files(desk, path, options=options)

    assert report.added == 1
    found = rejections(report)
    assert "has both 'text' and 'body'" in found["posts.jsonl:2"]
    assert found["posts.jsonl:3"] == "image 'dup': several files match 'dup.*' (.gif, .jpg)"
    post = stored_posts(desk)["7"]
    assert (post.text, post.created_at) == ("two pictures", datetime(2012, 10, 29, 22, 34, 1, tzinfo=UTC))
    assert [link.original_name for link in post.media_links] == ["a.jpg", "b.png"]
    assert post.meta == {"lang": "en"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--map", "body=tweetText"], "'body' is not a record field"),
        (["--map", "text"], "'text' is not field=column"),
        (["--map", "text=tweetText,text=username"], "the field 'text' is mapped twice"),
        (["--map", "text=tweetText,author=TWEETTEXT"], "the column 'TWEETTEXT' is mapped to two fields"),
        (["--map", "external_id=tweetId,text=body"], "--map names 'body', not a column of this file"),
        (["--map", "external_id=tweetId,tweetid=userId"], "'tweetid' is not a record field"),
        (["--map", "missing.toml"], "missing.toml: cannot be read"),
        (["--map", "bad.toml"], "should hold one [map] table"),
        (["--image-path", "images/x.jpg"], "should hold {} once"),
        (["--date-format", "%Y-%Q"], "is not a usable strptime format"),
    ],
)
def test_bad_reading_options_are_one_line_errors_before_anything_is_stored(
    sqlite_cli: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    (tmp_path / "bad.toml").write_text('[columns]\ntext = "tweetText"\n')
    first = write_bytes(tmp_path / "first.tsv", b"tweetId\ttweetText\tbody\n1\thello\tworld\n")  # a good one first
    export = twitter_export(tmp_path, ["2\thello\t2\t\tbob\t\treal"])

    assert main(["ingest", "--format", "tsv", *options, str(first), str(export)]) == 2

    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and message in line
    assert row_count(sqlite_cli, Post) == 0


def test_times_in_platform_formats_and_bad_optional_fields_keep_the_post(desk: Desk, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "times.jsonl",
        [
            {"external_id": "twitter", "created_at": "Mon Oct 29 22:34:01 +0000 2012"},
            {"external_id": "rfc2822", "created_at": "Tue, 30 Oct 2012 01:34:01 +0300"},
            {"external_id": "iso", "created_at": "2012-10-29T23:34:01+01:00"},
            {"external_id": "ms", "created_at": 1351550041000},
            {"external_id": "ms_text", "created_at": "1351550041000"},
            {"external_id": "garbage", "created_at": "sometime in 2012", "author": "ann"},
            {"external_id": "ancient", "created_at": "1970-01-01"},
            {"external_id": "zero", "created_at": 0},
            {"external_id": "long_author", "author": "x" * 300, "created_at": "bad", "metadata": {"k": 1}},
            {"external_id": "", "created_at": "bad"},  # a bad required field still refuses the record
        ],
    )

    report = ingest_files(desk, path)

    assert list(rejections(report)) == ["times.jsonl:10"]
    posts = stored_posts(desk)
    when = datetime(2012, 10, 29, 22, 34, 1, tzinfo=UTC)
    assert {name: posts[name].created_at for name in ("twitter", "rfc2822", "iso", "ms", "ms_text")} == dict.fromkeys(
        ("twitter", "rfc2822", "iso", "ms", "ms_text"), when
    )
    garbage = posts["garbage"]
    assert (garbage.created_at, garbage.author) == (None, "ann")
    assert garbage.meta[WARNINGS_KEY] == [
        "created_at left empty: not a time in a known format (ISO 8601, RFC 2822 or Twitter's "
        "'Mon Oct 29 22:34:01 +0000 2012', Unix seconds or milliseconds, YYYY/MM/DD HH:MM); name its format "
        "with --date-format (value 'sometime in 2012')"
    ]
    assert "out of range" in posts["ancient"].meta[WARNINGS_KEY][0] and posts["ancient"].created_at is None
    assert posts["zero"].meta[WARNINGS_KEY][0].endswith("(value '0')")
    both = posts["long_author"]
    assert (both.author, both.created_at, both.meta["k"]) == (None, None, 1)
    author_warning, time_warning = both.meta[WARNINGS_KEY]
    assert author_warning.startswith("author left empty: String should have at most 255 characters")
    assert author_warning.endswith("(value '" + "x" * 79 + "…')")  # cut to one short line
    assert time_warning.endswith("(value 'bad')")
    assert len(report.warnings) == 5 and report.warnings[0].startswith("times.jsonl:6: created_at left empty")

    named = write_jsonl(
        tmp_path / "named.jsonl",
        [{"external_id": "dmy", "created_at": "29.10.2012 22:34"}, {"external_id": "iso2", "created_at": "2012-10-29"}],
    )
    report = ingest_files(desk, named, date_format="%d.%m.%Y %H:%M")
    posts = stored_posts(desk)
    assert posts["dmy"].created_at == datetime(2012, 10, 29, 22, 34, tzinfo=UTC)
    assert posts["iso2"].created_at is None  # the named format, and only it
    assert "not in the --date-format '%d.%m.%Y %H:%M'" in posts["iso2"].meta[WARNINGS_KEY][0]


def test_identical_messages_are_grouped_with_a_count_and_the_first_lines(
    sqlite_cli: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = ["external_id,text,created_at"]
    rows += [f"w{i},fine,{i}th of Brumaire" for i in range(12)]  # lines 2-13: twelve bad times
    rows += [f"r{i},one field too many,2012-10-29,x" for i in range(8)]  # lines 14-21
    rows += ["alone,short"]  # line 22
    path = write_bytes(tmp_path / "posts.csv", ("\n".join(rows) + "\n").encode())

    assert main(["ingest", str(path)]) == 1

    out, err = capsys.readouterr()
    assert out.strip() == "12 added, 0 already present, 9 rejected"
    assert err.splitlines() == [
        "rejected 8 records (posts.csv:14, posts.csv:15, posts.csv:16, posts.csv:17, posts.csv:18 and 3 more): "
        "has 4 fields, the header has 3",
        "rejected posts.csv:22: has 2 fields, the header has 3",
        "warning 12 records (posts.csv:2, posts.csv:3, posts.csv:4, posts.csv:5, posts.csv:6 and 7 more): "
        "created_at left empty: not a time in a known format (ISO 8601, RFC 2822 or Twitter's "
        "'Mon Oct 29 22:34:01 +0000 2012', Unix seconds or milliseconds, YYYY/MM/DD HH:MM); name its format "
        "with --date-format (values '0th of Brumaire', '1th of Brumaire', '2th of Brumaire' …)",
    ]
    # the report itself keeps every record's own message (the Ingest page lists them all)
    report = ingest_files(sqlite_cli, path)
    assert len(report.rejected) == 9 and report.already_present == 12


def test_a_stray_leading_quote_in_a_tsv(sqlite_cli: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = twitter_export(
        tmp_path,
        [
            "1\tfirst\t9\t\tann\t\treal",
            '2\t"Breaking" news: it is real\t9\t\tbob\t\treal',  # line 3: a quote the export never meant
            "3\tlast\t9\t\tcarol\t\treal",
        ],
    )
    args = ["ingest", "--format", "tsv", "--map", "external_id=tweetId,text=tweetText"]

    assert main([*args, str(path)]) == 1
    out, err = capsys.readouterr()
    assert out.strip() == "1 added, 0 already present, 1 rejected"
    assert err.startswith("rejected tweets.txt:3: malformed CSV")
    assert "the rest of the file was not read" in err and "pass --no-quoting" in err

    assert main([*args, "--no-quoting", str(path)]) == 0
    assert capsys.readouterr().out.strip() == "2 added, 1 already present, 0 rejected"
    assert stored_posts(sqlite_cli)["2"].text == '"Breaking" news: it is real'


def test_a_quote_never_closed_stops_the_file_where_it_began(
    sqlite_desk: Desk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = ["external_id\ttext", "a\tfine", 'b\t"opens and never closes'] + [f"c{i}\tswallowed" for i in range(60)]
    path = write_bytes(tmp_path / "runaway.tsv", ("\n".join(lines) + "\n").encode())

    reason = rejections(ingest_files(sqlite_desk, path))["runaway.tsv:3"]  # the end of the file stops it
    assert reason.startswith("malformed CSV (unexpected end of data); the rest of the file was not read")
    assert "a quoted field ran from line 3 to line 63" in reason and "pass --no-quoting" in reason

    monkeypatch.setattr(readers, "MAX_RECORD_BYTES", 500)  # the size limit stops it before the end
    reason = rejections(ingest_files(sqlite_desk, path))["runaway.tsv:3"]
    assert reason.startswith("the record starting on this line runs on for more than 500 characters (to line ")
    assert "probably never closed" in reason and "pass --no-quoting" in reason
    assert set(stored_posts(sqlite_desk)) == {"a"}


def test_options_are_checked_where_they_are_made(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="should hold \\{\\} once"):
        ReadOptions(image_path="{}/pic.jpg")
    assert parse_mapping(" text = tweetText , images=imageId(s)") == {"text": "tweetText", "images": "imageId(s)"}

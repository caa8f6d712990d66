"""The demo dataset and the post browser's queries (search, filters, keyset paging)."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
from sqlalchemy import func, select

from db.models import Media, Post, PostMedia
from review.browse import PostFilter, count_posts, facet_counts, list_posts
from review.cli import main
from review.demo import DEMO_SOURCE, demo_posts, load_demo


def _hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def test_demo_loads_realistic_posts(desk) -> None:  # type: ignore[no-untyped-def]
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
            assert _hamming(phash["cream.jpg"], phash[variant]) <= 12, variant
        assert _hamming(phash["cream.jpg"], phash["mug.jpg"]) > 20
        tall = session.scalar(select(Media).where(Media.height > 2 * Media.width))
        assert tall is not None  # the long screenshot


def test_demo_is_deterministic() -> None:
    def fingerprint() -> list[tuple[str, str, list[tuple[str, str]]]]:
        return [
            (p.text, p.scenario, [(n, hashlib.sha256(im.tobytes()).hexdigest()) for n, im, _ in p.images])
            for p in demo_posts()
        ]

    assert fingerprint() == fingerprint()  # same posts, same pixels


def test_demo_command_only_fills_an_empty_database(sqlite_desk, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", sqlite_desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(sqlite_desk.settings.media_dir))
    assert main(["demo", "--no-score"]) == 0  # scoring: tests/test_signals_pipeline.py
    assert "40 added" in capsys.readouterr().out
    assert main(["demo"]) == 0
    out, err = capsys.readouterr()
    assert "already holds 40 posts" in out
    assert "40 posts have no verdict yet: python -m review score" in err
    assert main(["demo", "--force", "--no-score"]) == 0
    assert "0 added, 40 already present" in capsys.readouterr().out
    with sqlite_desk.sessions() as session:
        assert session.scalar(select(func.count(Post.id))) == 40


def _seed(desk, n: int = 45) -> None:  # type: ignore[no-untyped-def]
    with desk.sessions() as session, session.begin():
        for i in range(n):
            session.add(
                Post(
                    source="weibo" if i % 3 else "douyin",
                    external_id=f"p{i}",
                    text=f"post number {i} " + ("岁月静好 100%_off" if i % 10 == 0 else "ordinary"),
                    author=f"User{i}",
                    status="unscored" if i % 2 else "queued",
                )
            )


def test_keyset_paging_visits_every_post_once(desk) -> None:  # type: ignore[no-untyped-def]
    _seed(desk)
    seen: list[int] = []
    with desk.sessions() as session:
        page = list_posts(session, PostFilter(), limit=20)
        assert not page.has_newer and page.has_older
        pages = [page]
        while page.has_older:
            page = list_posts(session, PostFilter(), older_than=page.last_id, limit=20)
            pages.append(page)
        for p in pages:
            seen += [r.id for r in p.rows]
        assert len(pages) == 3 and len(seen) == 45 == len(set(seen))
        assert seen == sorted(seen, reverse=True)  # newest first
        # And back again from the last page.
        back = list_posts(session, PostFilter(), newer_than=pages[-1].first_id, limit=20)
        assert [r.id for r in back.rows] == [r.id for r in pages[1].rows]
        assert back.has_newer and back.has_older


def test_search_and_filters(desk) -> None:  # type: ignore[no-untyped-def]
    _seed(desk)
    with desk.sessions() as session:
        assert count_posts(session, PostFilter(search="岁月静好")) == 5
        assert count_posts(session, PostFilter(search="USER7")) == 1  # case-insensitive, author
        assert count_posts(session, PostFilter(search="p4")) == 6  # external ids p4, p40..p44
        # LIKE wildcards in the query are literal characters.
        assert count_posts(session, PostFilter(search="100%_off")) == 5
        assert count_posts(session, PostFilter(search="%")) == 5
        assert count_posts(session, PostFilter(search="_")) == 5
        assert count_posts(session, PostFilter(source="douyin")) == 15
        assert count_posts(session, PostFilter(source="douyin", status="queued")) == 8
        rows = list_posts(session, PostFilter(search="岁月静好", source="douyin"), limit=50).rows
        assert {r.external_id for r in rows} == {"p0", "p30"}
        facets = facet_counts(session)
        assert facets["source"] == {"douyin": 15, "weibo": 30}
        assert facets["status"] == {"queued": 23, "unscored": 22}


@pytest.mark.parametrize("limit", [1, 7])
def test_paging_with_filters(sqlite_desk, limit: int) -> None:  # type: ignore[no-untyped-def]
    _seed(sqlite_desk)
    flt = PostFilter(source="douyin")
    with sqlite_desk.sessions() as session:
        ids: list[int] = []
        page = list_posts(session, flt, limit=limit)
        ids += [r.id for r in page.rows]
        while page.has_older:
            page = list_posts(session, flt, older_than=page.last_id, limit=limit)
            ids += [r.id for r in page.rows]
        assert len(ids) == 15 == len(set(ids))

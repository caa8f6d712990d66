"""review/browse.py, the post browser's queries: search, filters, keyset paging; NUL bytes and
undecodable characters in what people type, in searches and in every filter that takes text."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from db.models import Post
from review import report
from review.browse import PostFilter, count_posts, facet_counts, list_posts
from review.decisions import claim
from review.metrics.filters import MetricFilter
from review.queue import QueueFilter, category_counts, queue_page
from review.visibility import COMMAND_LINE, Viewer
from tests.conftest import account, unscored_posts


def _seed(desk, n: int = 45) -> None:
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


def test_keyset_paging_visits_every_post_once(desk) -> None:
    _seed(desk)
    seen: list[int] = []
    with desk.sessions() as session:
        page = list_posts(session, COMMAND_LINE, PostFilter(), limit=20)
        assert not page.has_newer and page.has_older
        pages = [page]
        while page.has_older:
            page = list_posts(session, COMMAND_LINE, PostFilter(), older_than=page.last_id, limit=20)
            pages.append(page)
        for p in pages:
            seen += [r.id for r in p.rows]
        assert len(pages) == 3 and len(seen) == 45 == len(set(seen))
        assert seen == sorted(seen, reverse=True)  # newest first
        # And back again from the last page.
        back = list_posts(session, COMMAND_LINE, PostFilter(), newer_than=pages[-1].first_id, limit=20)
        assert [r.id for r in back.rows] == [r.id for r in pages[1].rows]
        assert back.has_newer and back.has_older


def test_search_and_filters(desk) -> None:
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
        rows = list_posts(session, COMMAND_LINE, PostFilter(search="岁月静好", source="douyin"), limit=50).rows
        assert {r.external_id for r in rows} == {"p0", "p30"}
        facets = facet_counts(session)
        assert facets["source"] == {"douyin": 15, "weibo": 30}
        assert facets["status"] == {"queued": 23, "unscored": 22}


@pytest.mark.parametrize("limit", [1, 7])
def test_paging_with_filters(sqlite_desk, limit: int) -> None:
    _seed(sqlite_desk)
    flt = PostFilter(source="douyin")
    with sqlite_desk.sessions() as session:
        ids: list[int] = []
        page = list_posts(session, COMMAND_LINE, flt, limit=limit)
        ids += [r.id for r in page.rows]
        while page.has_older:
            page = list_posts(session, COMMAND_LINE, flt, older_than=page.last_id, limit=limit)
            ids += [r.id for r in page.rows]
        assert len(ids) == 15 == len(set(ids))


def test_nul_and_surrogates_in_searches_and_filters(desk) -> None:
    unscored_posts(desk, 3, source="weibo")
    with desk.sessions() as session, session.begin():
        session.execute(update(Post).values(status="queued", priority=1.0))
    mod, lead = account(desk, "moderator"), account(desk, "lead")
    with desk.sessions() as session:
        assert len(list_posts(session, COMMAND_LINE, PostFilter(search="po\x00st")).rows) == 3  # the NUL is dropped
        assert len(list_posts(session, COMMAND_LINE, PostFilter(source="wei\x00bo")).rows) == 3
        assert list_posts(session, COMMAND_LINE, PostFilter(search="\udcff")).rows  # an undecodable byte from argv
        assert len(queue_page(session, Viewer(mod), QueueFilter(source="weibo\x00")).rows) == 3
        flt = QueueFilter(source="\x00", category="x\x00", model_id="\x00", prompt_version="\udcff")
        assert queue_page(session, Viewer(mod), flt).rows == []
        assert category_counts(session, mod, QueueFilter(source="weibo\x00")) == {None: 3}
        report.build(session, lead, MetricFilter(source="we\x00ibo", model_id="\udcff"))
    assert claim(desk.sessions, mod, flt=QueueFilter(source="wei\x00bo")) is not None

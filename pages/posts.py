"""Post browser: read-only list of posts with search, filters and paging; select a row to see it
with its latest verdict, the OCR text of its images and their signals, and why an escalated post
was escalated.

Post text, author, ids, OCR text and model output are untrusted: they are shown in a table or
with st.text, never as markdown or HTML. Images the NSFW score or the verdict's category marks
are blurred, in the table and in the detail, until a moderator reveals them.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from pages._common import (
    HIDDEN_BADGE,
    current_actor,
    current_desk,
    show_media,
    show_post_body,
    thumbnail,
)
from review.auth import Permission
from review.browse import PostFilter, count_posts, facet_counts, list_posts
from review.purge import tombstones
from review.visibility import Viewer

PAGE_SIZES = (20, 50, 100)
CURSOR = "posts_cursor"

desk = current_desk()
actor = current_actor()


def reset_paging() -> None:
    st.session_state[CURSOR] = None


st.title("Posts")


@st.cache_data(ttl=30, show_spinner=False)
def cached_facets(database_url: str) -> dict[str, dict[str, int]]:
    """Per-source and per-status counts: a full scan on big databases, so refreshed every 30 s."""
    with desk.sessions() as session:
        return facet_counts(session)


facets = cached_facets(desk.settings.database_url)
if not facets["source"]:  # an empty database is cheap to recount: show new posts at once
    cached_facets.clear()
    facets = cached_facets(desk.settings.database_url)

if not facets["source"]:
    st.info(
        "The database holds no posts yet. Load some with `python -m review ingest FILE.jsonl` "
        "or the demo set with `python -m review demo`."
    )
    st.stop()

col_search, col_source, col_status, col_size = st.columns([4, 2, 2, 1])
search = col_search.text_input(
    "Search", key="posts_search", placeholder="text, external id or author", on_change=reset_paging
)


def facet_filter(column: DeltaGenerator, label: str, facet: str, anything: str) -> str | None:
    """A select box over one facet's values with their counts; None means no filter."""
    counts = facets[facet]
    return column.selectbox(
        label,
        [None, *counts],
        format_func=lambda value: anything if value is None else f"{value} ({counts[value]})",
        key=f"posts_{facet}",
        on_change=reset_paging,
    )


source = facet_filter(col_source, "Source", "source", "All sources")
status = facet_filter(col_status, "Status", "status", "Any status")
page_size = col_size.selectbox("Per page", PAGE_SIZES, key="posts_page_size", on_change=reset_paging)

flt = PostFilter(search=search, source=source, status=status)
cursor = st.session_state.get(CURSOR)
with desk.sessions() as session:
    total = count_posts(session, flt)
    page = list_posts(
        session,
        Viewer.of(actor, desk.settings),
        flt,
        older_than=cursor[1] if cursor and cursor[0] == "older" else None,
        newer_than=cursor[1] if cursor and cursor[0] == "newer" else None,
        limit=page_size,
    )
    erased = tombstones(session, [r.id for r in page.rows])  # review/purge.py: content gone, row kept

matches = "1 post matches" if total == 1 else f"{total:,} posts match"
st.caption(matches + (f" · showing {len(page.rows)}" if page.rows else ""))
if not page.rows:
    st.info("No post matches these filters.")
    st.stop()

table = pd.DataFrame(
    {
        "thumbnail": [thumbnail(desk, r) for r in page.rows],
        "text": [
            "(erased)" if r.id in erased and "text" in erased[r.id].kinds else " ".join(r.text.split())[:200]
            for r in page.rows
        ],
        "verdict": [
            HIDDEN_BADGE if r.verdict_hidden else r.verdict.badge if r.verdict else "not scored yet" for r in page.rows
        ],
        "source": [r.source for r in page.rows],
        "author": [r.author or "" for r in page.rows],
        "posted": [r.created_at for r in page.rows],
        "status": [r.status for r in page.rows],
    },
    index=[r.id for r in page.rows],
)
list_column, detail_column = st.columns([3, 2], gap="medium")
with list_column:
    selection = st.dataframe(
        table,
        # A new key per page and filter: a row chosen on one page is not applied to another.
        key=f"posts_table:{flt}:{cursor}:{page_size}",
        on_select="rerun",
        selection_mode="single-row",
        row_height=64,
        height=64 * (len(page.rows) + 1) + 3,
        placeholder="—",
        column_config={
            "thumbnail": st.column_config.ImageColumn("", width="small"),
            "text": st.column_config.TextColumn("Text", width="medium"),
            "verdict": st.column_config.TextColumn("Verdict", width="medium"),
            "posted": st.column_config.DatetimeColumn("Posted", format="YYYY-MM-DD HH:mm"),
        },
    )
    newer, older = st.columns(2)
    if newer.button("← Newer", disabled=not page.has_newer, key="posts_newer", shortcut="Left"):
        st.session_state[CURSOR] = ("newer", page.first_id)
        st.rerun()
    if older.button("Older →", disabled=not page.has_older, key="posts_older", shortcut="Right"):
        st.session_state[CURSOR] = ("older", page.last_id)
        st.rerun()


with detail_column:
    rows = [i for i in (selection.selection.rows if selection else []) if i < len(page.rows)]
    if not rows:
        st.caption("Select a row to see the post.")
    else:
        post = page.rows[rows[0]]
        st.subheader(f"Post {post.id}")
        posted = f"{post.created_at:%Y-%m-%d %H:%M} UTC" if post.created_at else "—"
        st.text(
            f"{post.source} · {post.external_id} · by {post.author or '—'}\n"
            f"posted {posted} · ingested {post.ingested_at:%Y-%m-%d %H:%M} UTC · {post.status}"
        )
        tomb = erased.get(post.id)
        if tomb is not None:
            st.warning("This post's content was erased. The post stays as a tombstone, so its decisions still count.",
                       icon=":material/delete_forever:")  # fmt: skip
            what = ", ".join(tomb.kinds) or "content"
            line = f"{what} erased {tomb.purged_at:%Y-%m-%d %H:%M} UTC by {tomb.actor} ({tomb.action})"
            if tomb.reason and actor.can(Permission.AUDIT):  # a reason may name who asked: admins only
                line += f"\nreason: {tomb.reason}"
            st.text(line)
        show_post_body(desk, actor, post, "(erased)" if tomb is not None and "text" in tomb.kinds else "(no text)")
        for i, m in enumerate(post.media, start=1):
            show_media(desk, post.id, i, m)

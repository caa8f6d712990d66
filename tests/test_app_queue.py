"""The Queue page (pages/queue.py), headless (AppTest): filters, counts, blur and paging, opening
a post for review (the filter then drives "next"), and a lead's bulk decisions."""

from __future__ import annotations

from pathlib import Path

import pytest

from pages._common import REVIEW
from review.browse import get_posts
from review.decisions import claim
from review.media import data_uri
from review.queue import QueueFilter
from review.visibility import COMMAND_LINE
from tests.conftest import account, focus_target, held_post, open_app, picked_labels, review_events
from tests.factories import queued_posts

pytestmark = pytest.mark.usefixtures("fresh_caches")


def test_queue_filters_counts_blur_and_paging(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    ids = queued_posts(sqlite_desk, tmp_path, 6)
    at = open_app(monkeypatch, sqlite_desk, "moderator", "pages/queue.py")
    assert not at.exception
    assert "6 posts waiting" in at.caption[0].value
    table = at.dataframe[0].value
    assert list(table.index) == [ids[0], ids[1], ids[3], ids[5], ids[2], ids[4]]  # priority, then oldest
    assert table.loc[ids[0], "verdict"] == "⚠ violence_gore 0.90"
    # violence_gore is blurred in the table; fraud_spam is not
    with sqlite_desk.sessions() as session:
        thumbs = {i: p.media[0].thumb_path for i, p in get_posts(session, COMMAND_LINE, ids[:2]).items()}
    media_dir = sqlite_desk.settings.media_dir
    assert table.loc[ids[0], "thumbnail"] == data_uri(media_dir, thumbs[ids[0]], blur=True)
    assert table.loc[ids[1], "thumbnail"] == data_uri(media_dir, thumbs[ids[1]])

    at.selectbox(key="q_category").select("fraud_spam").run()
    assert "3 posts waiting under these filters" in at.caption[0].value
    assert set(at.dataframe[0].value.index) == {ids[1], ids[3], ids[5]}
    at.selectbox(key="q_category").select("any").run()
    at.selectbox(key="q_violation").select("no violation").run()
    assert set(at.dataframe[0].value.index) == {ids[2], ids[4]}
    at.selectbox(key="q_violation").select("any").run()

    # keyset pages of 25 need more posts: shrink the page by hand through the cursor
    at.session_state["queue_cursors"] = [None, (1.8, ids[3])]
    at.run()
    assert list(at.dataframe[0].value.index) == [ids[5], ids[2], ids[4]]
    at.button(key="queue_prev").click().run()
    assert len(at.dataframe[0].value) == 6


def test_queue_opens_a_post_for_review_and_the_filter_drives_next(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    ids = queued_posts(sqlite_desk, tmp_path, 6)
    at = open_app(monkeypatch, sqlite_desk, "moderator", "pages/queue.py")
    at.selectbox(key="q_violation").select("no violation").run()
    at.session_state[at.dataframe[0].key] = {"selection": {"rows": [1], "columns": [], "cells": []}}
    at.run()
    at.button(key="queue_open").click().run()
    assert held_post(at) == ids[4]
    at.button(key="review_skip").click().run()  # the next post comes from the filtered queue
    assert held_post(at) == ids[2]


def test_queue_filters_live_in_the_url(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    """A link names a filtered queue: the page shows it (what it cannot take is ignored with a
    warning), hands it to the Review page's "Next", and writes each change back to the URL."""
    ids = queued_posts(sqlite_desk, tmp_path, 6)
    at = open_app(monkeypatch, sqlite_desk, "moderator", "pages/queue.py")
    assert at.query_params == {}
    at.query_params = {"category": "fraud_spam", "min_confidence": "0.5", "escalated": "yes", "colour": "red"}
    at.run()
    assert not at.exception
    assert set(at.dataframe[0].value.index) == {ids[1], ids[3], ids[5]}
    assert at.selectbox(key="q_category").value == "fraud_spam" and at.slider(key="q_confidence").value == (0.5, 1.0)
    assert [w.value for w in at.warning] == ["Part of the link was ignored:"]
    assert at.code[0].value == (  # verbatim, not markdown: anyone may have written the link
        "Ignored escalated=yes in the link: only leads see escalated posts.\n"
        "Ignored colour in the link: not a filter of the queue."
    )
    assert at.query_params == {"category": "fraud_spam", "min_confidence": "0.5"}  # the URL says what is applied
    assert at.session_state[REVIEW].flt == QueueFilter(category="fraud_spam", min_confidence=0.5)

    at.selectbox(key="q_violation").select("violation").run()
    assert at.query_params == {"category": "fraud_spam", "violation": "yes", "min_confidence": "0.5"}
    assert not at.warning and at.selectbox(key="q_category").value == "fraud_spam"


def test_bulk_decision_by_a_lead(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    ids = queued_posts(sqlite_desk, tmp_path, 4)
    moderator = open_app(monkeypatch, sqlite_desk, "moderator", "pages/queue.py")
    assert "bulk_apply" not in [b.key for b in moderator.button]  # no bulk panel for moderators

    lead = open_app(monkeypatch, sqlite_desk, "lead", "pages/queue.py")
    lead.session_state[lead.dataframe[0].key] = {"selection": {"rows": [0, 1, 2], "columns": [], "cells": []}}
    lead.run()
    lead.selectbox(key="bulk_decision").select("overturn").run()
    lead.button(key="bulk_pick_none").click().run()
    lead.text_input(key="bulk_note").input("campaign was fine").run()
    lead.button(key="bulk_apply").click().run()
    assert not lead.exception
    events = [e for e in review_events(sqlite_desk) if e.bulk_id]
    assert {e.post_id for e in events} == {ids[0], ids[1], ids[3]}
    assert len({e.bulk_id for e in events}) == 1
    assert all(e.note == "campaign was fine" and e.label_violation is False for e in events)
    assert any("3 overturned, 0 skipped" in s.value for s in lead.success)
    assert lead.button(key="bulk_apply").disabled  # the selection is gone with the rows it named


def test_bulk_overturn_needs_a_chosen_label(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    """No decision, category or severity is preset for a bulk decision: Apply with overturn and
    no label decides nothing and asks for it; the categories' keys pick it, as on Review."""
    ids = queued_posts(sqlite_desk, tmp_path, 4)
    lead = open_app(monkeypatch, sqlite_desk, "lead", "pages/queue.py")
    lead.session_state[lead.dataframe[0].key] = {"selection": {"rows": [1, 2], "columns": [], "cells": []}}
    lead.run()
    assert lead.selectbox(key="bulk_decision").value is None and lead.button(key="bulk_apply").disabled
    lead.selectbox(key="bulk_decision").select("overturn").run()
    assert not picked_labels(lead, "bulk")
    assert lead.button(key="bulk_pick_fraud_spam").proto.shortcut == "6"
    lead.button(key="bulk_apply").click().run()
    assert not [e for e in review_events(sqlite_desk) if e.bulk_id]
    assert any("Nothing was decided" in w.value and "Choose the new label" in w.value for w in lead.warning)
    assert focus_target(lead) == "bulk_categories"
    lead.button(key="bulk_pick_illegal_goods").click().run()
    lead.button(key="bulk_apply").click().run()  # a violation without a severity: still nothing
    assert not [e for e in review_events(sqlite_desk) if e.bulk_id]
    assert any("Choose the severity" in w.value for w in lead.warning)
    lead.button(key="bulk_severity_1").click().run()
    lead.button(key="bulk_apply").click().run()
    events = [e for e in review_events(sqlite_desk) if e.bulk_id]
    assert {e.post_id for e in events} == {ids[1], ids[3]}  # the second and third rows
    assert {(e.action, e.label_category, e.label_severity) for e in events} == {("overturn", "illegal_goods", 1)}
    assert any("2 overturned, 0 skipped" in s.value for s in lead.success)
    assert not picked_labels(lead, "bulk")  # the next bulk overturn is chosen afresh


def test_a_bulk_outcome_stays_until_dismissed(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    """What a bulk decision did and which posts it skipped, with why, stay on the page over later
    runs (its rows and selection are gone) until Dismiss."""
    ids = queued_posts(sqlite_desk, tmp_path, 4)
    assert claim(sqlite_desk.sessions, account(sqlite_desk, "moderator"), ids[1]) is not None
    lead = open_app(monkeypatch, sqlite_desk, "lead", "pages/queue.py")
    lead.session_state[lead.dataframe[0].key] = {"selection": {"rows": [0, 1, 2], "columns": [], "cells": []}}
    lead.run()
    lead.selectbox(key="bulk_decision").select("confirm").run()
    lead.button(key="bulk_apply").click().run()
    for _ in range(2):  # the run after the decision, and any later one
        assert [w.value for w in lead.warning] == [f"2 confirmed, 1 skipped (bulk {_bulk_id(sqlite_desk)[:8]})."]
        skipped = next(df.value for df in lead.dataframe if "why skipped" in df.value.columns)
        assert skipped.to_dict("records") == [{"post": ids[1], "why skipped": "another moderator is reviewing it"}]
        lead.run()
    lead.button(key="bulk_dismiss").click().run()
    assert not lead.warning and not [df for df in lead.dataframe if "why skipped" in df.value.columns]


def _bulk_id(desk) -> str:
    (bulk_id,) = {e.bulk_id for e in review_events(desk) if e.bulk_id}
    return bulk_id

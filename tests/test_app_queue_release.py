"""The Queue page (pages/queue.py), headless (AppTest): a lead releases another moderator's claim on
the selected post, with a reason; a moderator is not offered the button. (Filters, paging, opening
a post and bulk decisions: test_app_queue.py.)"""

from __future__ import annotations

from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from db.models import ReviewEvent
from review.auth import Actor
from review.decisions import claim
from tests.conftest import open_page, people
from tests.factories import claim_holder, spam_queue


def test_queue_page_lets_a_lead_release_a_claim(sqlite_desk, monkeypatch) -> None:
    p = people(sqlite_desk)
    ids = spam_queue(sqlite_desk, 3)
    assert claim(sqlite_desk.sessions, p["ann"], ids[1]) is not None

    def queue_page(actor: Actor) -> AppTest:
        at = open_page(monkeypatch, sqlite_desk, actor, "pages/queue.py")
        row = list(at.dataframe[0].value.index).index(ids[1])
        at.session_state[at.dataframe[0].key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
        return at.run()

    moderator = queue_page(p["bob"])
    assert "force_release" not in [b.key for b in moderator.button]
    lead = queue_page(p["lea"])
    assert any(t.value == f"ann is reviewing post {ids[1]}." for t in lead.text)
    lead.text_input(key="force_release_reason").input("left it open")
    lead.button(key="force_release").click().run()
    assert not lead.exception
    assert any(f"Released ann's claim on post {ids[1]}." in s.value for s in lead.success)
    assert claim_holder(sqlite_desk, ids[1]) is None
    with sqlite_desk.sessions() as session:
        event = session.scalars(select(ReviewEvent).order_by(ReviewEvent.id.desc()).limit(1)).one()
    assert (event.action, event.user_id, event.note) == ("release", p["lea"].id, "released ann's claim: left it open")

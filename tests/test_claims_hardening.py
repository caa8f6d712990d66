"""Claims at the edges (issue 14): renew and release check the account as it is stored now,
leases are bounded, deactivating an account releases its claims (audited), a lead can release
another moderator's claim (core and Queue page), two concurrent decisions with one
idempotency key are one decision, the second a repeat of the first; an erased post is no work
(not claimed, decided, bulk-decided, undone, scored, nor counted as backlog or unscored), and
decisions check the stored account with require_live (SQLite and Postgres)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from streamlit.testing.v1 import AppTest

from db.models import AuditEvent, Post, ReviewEvent, User, Verdict
from review import purge as purging
from review import scoring
from review.audit import Action
from review.auth import OPERATOR, Actor, PermissionDenied, set_active
from review.cli import main
from review.decisions import (
    MAX_LEASE,
    ClaimLost,
    claim,
    decide,
    decide_bulk,
    force_release,
    history,
    release,
    renew,
    undo,
)
from review.errors import ReviewError
from review.metrics import operations
from review.queue import queue_count
from review.verdicts import point_at
from tests.conftest import REPO, people


def _queue(desk, n: int) -> list[int]:  # type: ignore[no-untyped-def]
    """n queued posts, each with a usable verdict."""
    ids = []
    with desk.sessions() as session, session.begin():
        for i in range(n):
            post = Post(source="t", external_id=f"p{i}", text=f"post {i}", status="queued", priority=1.0)
            session.add(post)
            session.flush()
            verdict = Verdict(post_id=post.id, provider="transformers", model_id="m", prompt_version="v",
                              input_hash=f"i{i}", text_hash=f"t{i}", parse_status="ok", violation=True,
                              category="fraud_spam", severity=2, confidence=0.9, tags=[], parse_notes=[])  # fmt: skip
            session.add(verdict)
            session.flush()
            point_at(session, verdict)
            ids.append(post.id)
    return ids


def _holder(desk, post_id: int) -> int | None:  # type: ignore[no-untyped-def]
    with desk.sessions() as session:
        return session.scalar(select(Post.claimed_by_id).where(Post.id == post_id))


def _audit(desk, action: str) -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    with desk.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def _set_stored(desk, name: str, **values: object) -> None:  # type: ignore[no-untyped-def]
    """Change the stored account behind the actor's back (as another admin's session would)."""
    with desk.sessions() as session, session.begin():
        session.execute(update(User).where(User.username == name).values(**values))


def test_renew_and_release_check_the_stored_account(desk) -> None:  # type: ignore[no-untyped-def]
    """Before the fix a deactivated account (its Actor still in a browser session) kept renewing
    and releasing."""
    p = people(desk)
    ids = _queue(desk, 2)
    assert claim(desk.sessions, p["ann"], ids[0]) is not None
    _set_stored(desk, "ann", active=False)  # not through set_active: the claim stays, only the check stops it
    with pytest.raises(PermissionDenied, match="no longer active"):
        renew(desk.sessions, p["ann"], ids[0])
    with pytest.raises(PermissionDenied, match="no longer active"):
        release(desk.sessions, p["ann"], ids[0])
    assert _holder(desk, ids[0]) == p["ann"].id  # nothing changed
    with pytest.raises(PermissionDenied):  # an Actor claiming a role it does not have
        renew(desk.sessions, Actor(p["ann"].id, "ann", "viewer"), ids[0])


def test_leases_are_bounded(desk) -> None:  # type: ignore[no-untyped-def]
    """A lease longer than MAX_LEASE (30 minutes) is refused, not clamped; a 10-year lease
    worked before the fix."""
    p = people(desk)
    ids = _queue(desk, 2)
    now = datetime.now(UTC)
    got = claim(desk.sessions, p["ann"], ids[0], lease=MAX_LEASE, now=now)
    assert got is not None and got.lease_expires_at == now + MAX_LEASE
    for lease in (timedelta(days=3650), MAX_LEASE + timedelta(seconds=1)):
        with pytest.raises(ReviewError, match="a lease is at most 30 minutes"):
            renew(desk.sessions, p["ann"], ids[0], lease=lease, now=now)
        with pytest.raises(ReviewError, match="a lease is at most 30 minutes"):
            claim(desk.sessions, p["bob"], ids[1], lease=lease)
    with pytest.raises(ReviewError, match="longer than zero"):
        renew(desk.sessions, p["ann"], ids[0], lease=timedelta(0), now=now)
    with desk.sessions() as session:
        expires = session.scalar(select(Post.lease_expires_at).where(Post.id == ids[0]))
    assert expires == now + MAX_LEASE
    assert renew(desk.sessions, p["ann"], ids[0], now=now) == now + timedelta(minutes=10)  # the default
    event = decide(desk.sessions, p["ann"], ids[0], "confirm", now=now)
    with pytest.raises(ReviewError, match="a lease is at most"):
        undo(desk.sessions, p["ann"], event.id, lease=timedelta(hours=2), now=now)
    assert _holder(desk, ids[1]) is None


def test_deactivation_releases_the_claims_and_says_so(desk) -> None:  # type: ignore[no-untyped-def]
    p = people(desk)
    ids = _queue(desk, 4)
    now = datetime.now(UTC)
    for post_id in ids[:2]:
        assert claim(desk.sessions, p["ann"], post_id) is not None
    assert claim(desk.sessions, p["ann"], ids[2], lease=timedelta(seconds=1), now=now - timedelta(minutes=1))
    assert claim(desk.sessions, p["bob"], ids[3]) is not None
    assert set_active(desk.sessions, "ann", False, by=p["admin"]) == 2  # the expired claim was free already
    assert _holder(desk, ids[0]) is None and _holder(desk, ids[1]) is None and _holder(desk, ids[3]) == p["bob"].id
    assert claim(desk.sessions, p["bob"], ids[0]) is not None  # free at once, not when the lease ends
    with desk.sessions() as session:
        releases = session.scalars(select(ReviewEvent).where(ReviewEvent.action == "release")).all()
    assert [(e.post_id, e.user_id, e.note) for e in releases] == [
        (post_id, p["admin"].id, "released ann's claim: the account was deactivated") for post_id in ids[:2]
    ]
    (released,) = _audit(desk, Action.CLAIMS_RELEASED)
    assert (released.actor_name, released.subject, released.details["count"]) == ("admin", "ann", 2)
    (deactivated,) = _audit(desk, Action.USER_DEACTIVATE)
    assert deactivated.id < released.id  # one transaction, in order
    # from the command line (no account): the events name nobody
    assert set_active(desk.sessions, "bob", False, by=OPERATOR) == 2
    with desk.sessions() as session:
        last = session.scalars(select(ReviewEvent).order_by(ReviewEvent.id.desc()).limit(2)).all()
    assert {(e.action, e.user_id) for e in last} == {("release", None)}
    assert _audit(desk, Action.CLAIMS_RELEASED)[-1].actor_name == "(command line)"


def test_a_lead_releases_another_moderators_claim(desk) -> None:  # type: ignore[no-untyped-def]
    p = people(desk)
    ids = _queue(desk, 2)
    assert claim(desk.sessions, p["ann"], ids[0]) is not None
    with pytest.raises(PermissionDenied, match="a moderator may not bulk"):
        force_release(desk.sessions, p["bob"], ids[0])
    with pytest.raises(ReviewError, match="nobody is reviewing post"):
        force_release(desk.sessions, p["lea"], ids[1])
    with pytest.raises(ReviewError, match="there is no post"):
        force_release(desk.sessions, p["lea"], 999_999)
    assert force_release(desk.sessions, p["lea"], ids[0], reason="  gone home for the day ") == "ann"
    assert _holder(desk, ids[0]) is None
    with pytest.raises(ClaimLost, match="you do not hold post"):
        decide(desk.sessions, p["ann"], ids[0], "confirm")
    with desk.sessions() as session:
        entries = history(session, p["lea"], ids[0])
    assert [(e.who, e.action, e.note) for e in entries][-1] == (
        "lea",
        "release",
        "released ann's claim: gone home for the day",
    )
    (released,) = _audit(desk, Action.CLAIMS_RELEASED)
    assert (released.actor_name, released.subject, released.details["post_id"]) == ("lea", "ann", ids[0])
    # a lead demoted since sign-in is refused by the stored role
    assert claim(desk.sessions, p["bob"], ids[1]) is not None
    _set_stored(desk, "lea", role="moderator")
    with pytest.raises(PermissionDenied):
        force_release(desk.sessions, p["lea"], ids[1])
    assert _holder(desk, ids[1]) == p["bob"].id


def test_concurrent_decisions_with_one_key_are_one_decision(desk) -> None:  # type: ignore[no-untyped-def]
    """Two threads send the same decision with the same key at once (a double submit), 15
    times: both get the one event, and one event is written. Before the fix the second said
    "nothing was saved" on Postgres although the first had saved it (94 in 100)."""
    p = people(desk)
    ids = _queue(desk, 15)
    outcomes = []
    with ThreadPoolExecutor(2) as pool:
        for i, post_id in enumerate(ids):
            assert claim(desk.sessions, p["ann"], post_id) is not None
            start = threading.Barrier(2)

            def send(post_id: int = post_id, key: str = f"double-{i}", start: threading.Barrier = start) -> object:
                start.wait(10)
                try:
                    return decide(desk.sessions, p["ann"], post_id, "confirm", idempotency_key=key).id
                except ClaimLost as exc:
                    return str(exc)

            outcomes.append(list(pool.map(lambda _: send(), range(2))))
    refused = [o for o in outcomes if o[0] != o[1] or not isinstance(o[0], int)]
    assert not refused, refused
    with desk.sessions() as session:
        keys = session.scalars(select(ReviewEvent.idempotency_key).where(ReviewEvent.action == "confirm")).all()
    assert sorted(keys) == sorted(f"double-{i}" for i in range(len(ids)))


def test_queue_page_lets_a_lead_release_a_claim(sqlite_desk, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import streamlit as st

    from pages._common import ACTOR

    p = people(sqlite_desk)
    ids = _queue(sqlite_desk, 3)
    assert claim(sqlite_desk.sessions, p["ann"], ids[1]) is not None
    st.cache_resource.clear()  # the desk is cached per process
    monkeypatch.setenv("DATABASE_URL", sqlite_desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(sqlite_desk.settings.media_dir))

    def queue_page(actor: Actor) -> AppTest:
        at = AppTest.from_file(str(Path(REPO) / "dashboard.py"), default_timeout=60)
        at.session_state[ACTOR] = actor
        at.switch_page("pages/queue.py")
        at.run()
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
    assert _holder(sqlite_desk, ids[1]) is None
    with sqlite_desk.sessions() as session:
        event = session.scalars(select(ReviewEvent).order_by(ReviewEvent.id.desc()).limit(1)).one()
    assert (event.action, event.user_id, event.note) == ("release", p["lea"].id, "released ann's claim: left it open")


def _events(desk) -> int:  # type: ignore[no-untyped-def]
    with desk.sessions() as session:
        return len(session.scalars(select(ReviewEvent.id)).all())


def _erase(desk, ids: list[int]) -> None:  # type: ignore[no-untyped-def]
    erased = purging.purge(desk.sessions, OPERATOR, desk.settings, ids, reason="the author asked for erasure")
    assert erased.erased == sorted(ids)


def test_an_erased_post_cannot_be_decided_or_undone(desk) -> None:  # type: ignore[no-untyped-def]
    """An erased post keeps its status, so only the live-post rule keeps it out of work. Before
    the fix the moderator's undo reopened the tombstone as queued and claimed by them, and a
    lead's bulk decision decided it."""
    p = people(desk)
    ids = _queue(desk, 4)
    assert claim(desk.sessions, p["ann"], ids[0]) is not None
    decided = decide(desk.sessions, p["ann"], ids[0], "confirm")
    assert claim(desk.sessions, p["ann"], ids[1]) is not None  # held while it is erased
    _erase(desk, ids[:3])
    before = _events(desk)
    with pytest.raises(ReviewError, match=f"^post {ids[0]} was erased; its decisions cannot be undone$"):
        undo(desk.sessions, p["ann"], decided.id)
    with pytest.raises(ClaimLost, match=f"^post {ids[1]} was erased; nothing was saved$"):
        decide(desk.sessions, p["ann"], ids[1], "confirm")
    with pytest.raises(ClaimLost, match="was erased"):
        renew(desk.sessions, p["ann"], ids[1])
    assert claim(desk.sessions, p["bob"], ids[2]) is None  # not even when asked for by id
    bulk = decide_bulk(desk.sessions, p["lea"], [ids[0], ids[2], ids[3]], "confirm")
    assert bulk.decided == [ids[3]]
    assert bulk.skipped == {ids[0]: "erased: nothing left to decide", ids[2]: "erased: nothing left to decide"}
    assert _events(desk) == before + 1  # the live post's bulk decision, nothing else
    with desk.sessions() as session:
        rows = session.execute(select(Post.id, Post.status, Post.claimed_by_id).where(Post.id.in_(ids[:3]))).all()
    assert sorted(rows) == [(ids[0], "decided", None), (ids[1], "queued", None), (ids[2], "queued", None)]


def test_erased_posts_are_neither_backlog_nor_unscored(desk, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """Purge keeps the status of a waiting post (queued, unscored): before the fix those posts
    counted as backlog and as waiting for a verdict for ever (metrics.operations, the Operations
    page's and ``score``'s unscored count, ``demo``'s hint). One rule, LIVE_POST, everywhere."""
    p = people(desk)
    queued = _queue(desk, 3)
    with desk.sessions() as session, session.begin():
        unscored = []
        for i in range(3):
            post = Post(source="t", external_id=f"u{i}", text=f"unscored {i}")
            session.add(post)
            session.flush()
            unscored.append(post.id)
    _erase(desk, [queued[0], unscored[0], unscored[1]])
    with desk.sessions() as session:
        assert scoring.unscored_count(session) == 1
        assert session.scalars(scoring.unscored_query()).all() == [unscored[2]]
        assert queue_count(session, p["lea"]) == 2
        today = operations(session, p["lea"]).days[-1]
    assert today.waiting == 3  # two queued and one unscored post left, the erased ones are no backlog
    assert scoring.lease_batch(desk.sessions, "worker-1", 10) == [unscored[2]]
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    capsys.readouterr()
    assert main(["demo"]) == 0  # a desk with posts: the demo is not loaded, the unscored ones are named
    assert "1 posts have no verdict yet" in capsys.readouterr().err


def test_decisions_check_the_stored_account_as_everything_else_does(desk) -> None:  # type: ignore[no-untyped-def]
    """Decisions use require_live, as every other core function: an Actor whose id is now
    another account's (its name differs) is refused, and the command line, which is no account,
    is told it decides nothing. Before the fix decisions had their own copy of the check, which
    took the stored account for the id whatever the name (the lead "bob" claimed as ann) and
    said "no longer active" to the command line."""
    p = people(desk)
    ids = _queue(desk, 2)
    stale = Actor(p["ann"].id, "bob", "lead")
    with pytest.raises(PermissionDenied, match="no longer active: sign in again"):
        claim(desk.sessions, stale, ids[0])
    with pytest.raises(PermissionDenied, match="no longer active: sign in again"):
        decide_bulk(desk.sessions, stale, [ids[0]], "confirm")
    with pytest.raises(PermissionDenied, match="^the command line holds no claims and decides no posts"):
        claim(desk.sessions, OPERATOR, ids[0])
    with pytest.raises(PermissionDenied, match="^the command line holds no claims"):
        decide_bulk(desk.sessions, OPERATOR, [ids[0]], "confirm")
    assert _holder(desk, ids[0]) is None and _events(desk) == 0

"""review/auth.py, the accounts as stored now: per-user display preferences, ``active_actor`` after
a role change or a deactivation, and a deactivation releasing the account's claims (audited).
(Passwords, sign-in and permissions: test_auth.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from db.models import ReviewEvent, User
from review.audit import Action
from review.auth import (
    OPERATOR,
    PermissionDenied,
    Preferences,
    active_actor,
    preferences,
    set_active,
    set_preferences,
    set_role,
)
from review.decisions import claim, decide_bulk
from tests.conftest import audit_rows, people
from tests.factories import claim_holder, queued_posts_with_verdicts, spam_queue, staff


def test_preferences_default_round_trip_and_stay_per_user(desk) -> None:
    p = staff(desk)
    ann, bob = p["ann"], p["bob"]
    with desk.sessions() as session:
        assert preferences(session, ann) == Preferences(blur_flagged=True, greyscale=False)
    set_preferences(desk.sessions, ann, Preferences(blur_flagged=False, greyscale=True))
    with desk.sessions() as session:
        assert preferences(session, ann) == Preferences(blur_flagged=False, greyscale=True)
        assert preferences(session, bob) == Preferences(blur_flagged=True, greyscale=False)
    set_preferences(desk.sessions, bob, Preferences(blur_flagged=True, greyscale=True))
    set_preferences(desk.sessions, ann, Preferences(blur_flagged=False, greyscale=False))
    with desk.sessions() as session:
        assert preferences(session, ann) == Preferences(blur_flagged=False, greyscale=False)
        assert preferences(session, bob) == Preferences(blur_flagged=True, greyscale=True)
        assert preferences(session, p["cid"]) == Preferences()
        stored = session.scalar(select(User.preferences).where(User.id == ann.id))
    assert stored == {"blur_flagged": False, "greyscale": False}
    # unknown keys stored by a future version are ignored
    with desk.sessions() as session, session.begin():
        session.get(User, bob.id).preferences = {"greyscale": True, "zoom": 3}
    with desk.sessions() as session:
        assert preferences(session, bob) == Preferences(blur_flagged=True, greyscale=True)


def test_active_actor_reflects_the_account_now(desk) -> None:
    p = staff(desk)
    admin, bob = p["admin"], p["bob"]
    with desk.sessions() as session:
        assert active_actor(session, bob.id) == bob
        assert active_actor(session, 987654) is None
    set_role(desk.sessions, "bob", "lead", by=admin)
    with desk.sessions() as session:
        now_lead = active_actor(session, bob.id)
    assert now_lead is not None and now_lead.role == "lead" and now_lead.username == "bob"
    ids = queued_posts_with_verdicts(desk, ["fraud_spam"])
    assert decide_bulk(desk.sessions, now_lead, ids, "confirm").decided == ids
    set_active(desk.sessions, "bob", False, by=admin)
    with desk.sessions() as session:
        assert active_actor(session, bob.id) is None
    with pytest.raises(PermissionDenied, match="no longer active"):
        claim(desk.sessions, now_lead)  # the old handle is refused by the core too
    set_active(desk.sessions, "bob", True, by=admin)
    with desk.sessions() as session:
        assert active_actor(session, bob.id) == now_lead


def test_deactivation_releases_the_claims_and_says_so(desk) -> None:
    p = people(desk)
    ids = spam_queue(desk, 4)
    now = datetime.now(UTC)
    for post_id in ids[:2]:
        assert claim(desk.sessions, p["ann"], post_id) is not None
    assert claim(desk.sessions, p["ann"], ids[2], lease=timedelta(seconds=1), now=now - timedelta(minutes=1))
    assert claim(desk.sessions, p["bob"], ids[3]) is not None
    assert set_active(desk.sessions, "ann", False, by=p["admin"]) == 2  # the expired claim was free already
    assert (
        claim_holder(desk, ids[0]) is None
        and claim_holder(desk, ids[1]) is None
        and claim_holder(desk, ids[3]) == p["bob"].id
    )
    assert claim(desk.sessions, p["bob"], ids[0]) is not None  # free at once, not when the lease ends
    with desk.sessions() as session:
        releases = session.scalars(select(ReviewEvent).where(ReviewEvent.action == "release")).all()
    assert [(e.post_id, e.user_id, e.note) for e in releases] == [
        (post_id, p["admin"].id, "released ann's claim: the account was deactivated") for post_id in ids[:2]
    ]
    (released,) = audit_rows(desk, Action.CLAIMS_RELEASED)
    assert (released.actor_name, released.subject, released.details["count"]) == ("admin", "ann", 2)
    (deactivated,) = audit_rows(desk, Action.USER_DEACTIVATE)
    assert deactivated.id < released.id  # one transaction, in order
    # from the command line (no account): the events name nobody
    assert set_active(desk.sessions, "bob", False, by=OPERATOR) == 2
    with desk.sessions() as session:
        last = session.scalars(select(ReviewEvent).order_by(ReviewEvent.id.desc()).limit(2)).all()
    assert {(e.action, e.user_id) for e in last} == {("release", None)}
    assert audit_rows(desk, Action.CLAIMS_RELEASED)[-1].actor_name == "(command line)"

"""Sign-in sessions (review/websession.py) on SQLite and Postgres: the one-time hand-over code,
the cookie's token, the timeouts, and every way a session ends — with the reason its user is
told. The HTTP routes and the cookie in a real browser are in tests/test_browser.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from db.models import SessionEnd, WebSession
from review import websession
from review.auth import set_active, set_password, set_role
from review.decisions import LEAVE_GRACE, claim, held_claim, leave
from review.websession import Gone, Live
from tests.factories import queued_posts_with_verdicts, staff

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def _signed_in(desk, actor, now: datetime = T0) -> tuple[int, str]:
    """A session for ``actor`` and its cookie's token, as the sign-in page and app.py make them."""
    started = websession.start(desk.sessions, actor, desk.settings, client="10.0.0.7", now=now)
    traded = websession.trade(desk.sessions, started.handoff, now=now + timedelta(seconds=1))
    assert traded is not None
    return started.session_id, traded[0]


def test_a_code_is_traded_once_for_a_token_that_only_its_hash_stores(desk) -> None:
    ann = staff(desk)["ann"]
    started = websession.start(desk.sessions, ann, desk.settings, now=T0)
    token, expires = websession.trade(desk.sessions, started.handoff, now=T0 + timedelta(seconds=5))
    assert expires == T0 + timedelta(hours=desk.settings.session_max_hours)
    assert websession.trade(desk.sessions, started.handoff, now=T0 + timedelta(seconds=6)) is None  # used
    with desk.sessions() as session:
        row = session.get(WebSession, started.session_id)
        assert row.handoff_hash is None and row.token_hash is not None
        assert token not in (row.token_hash, started.handoff) and started.handoff not in row.token_hash
    found = websession.resume(desk.sessions, token, desk.settings, now=T0 + timedelta(minutes=1))
    assert found == Live(started.session_id, ann)
    # a code past its minute, an unknown one, an empty one, a megabyte: nothing, no session
    late = websession.start(desk.sessions, ann, desk.settings, now=T0)
    after = T0 + timedelta(seconds=websession.HANDOFF_SECONDS + 1)
    for code in (late.handoff, "not-a-code", "", "x" * 1_000_000):
        assert websession.trade(desk.sessions, code, now=after) is None
    for token in (None, "", "not-a-token", "x" * 1_000_000, late.handoff):
        assert websession.resume(desk.sessions, token, desk.settings, now=after) == Gone()


def test_a_session_idles_out_and_ends_at_its_absolute_limit(desk) -> None:
    ann = staff(desk)["ann"]
    idle = timedelta(minutes=desk.settings.session_idle_minutes)
    session_id, token = _signed_in(desk, ann)
    # background refreshes (touch=False) are no activity: the session idles out all the same
    for minutes in (10, 30, 50):
        assert isinstance(websession.check(desk.sessions, session_id, desk.settings, touch=False,
                                           now=T0 + timedelta(minutes=minutes)), Live)  # fmt: skip
    ended = websession.check(desk.sessions, session_id, desk.settings, now=T0 + idle)
    assert ended == Gone(SessionEnd.IDLE)
    assert ended.message(desk.settings) == f"You were signed out after {idle.seconds // 60} minutes without activity."
    assert websession.resume(desk.sessions, token, desk.settings, now=T0 + idle) == Gone(SessionEnd.IDLE)
    # clicks keep a session alive (last_seen_at written at most once a minute) until its absolute limit
    session_id, token = _signed_in(desk, ann)
    now = T0
    while now < T0 + timedelta(hours=desk.settings.session_max_hours) - idle / 2:
        now += idle / 2
        assert isinstance(websession.check(desk.sessions, session_id, desk.settings, now=now), Live), now
    limit = T0 + timedelta(hours=desk.settings.session_max_hours)
    assert websession.check(desk.sessions, session_id, desk.settings, now=limit) == Gone(SessionEnd.EXPIRED)
    with desk.sessions() as session:
        row = session.get(WebSession, session_id)
        assert (row.ended_at, row.end_reason) == (limit, SessionEnd.EXPIRED)


def test_last_seen_is_written_at_most_once_a_minute(desk) -> None:
    ann = staff(desk)["ann"]
    session_id, _ = _signed_in(desk, ann)

    def seen() -> datetime:
        with desk.sessions() as session:
            return session.get(WebSession, session_id).last_seen_at

    websession.check(desk.sessions, session_id, desk.settings, now=T0 + timedelta(seconds=30))
    assert seen() == T0
    websession.check(desk.sessions, session_id, desk.settings, now=T0 + timedelta(seconds=61))
    assert seen() == T0 + timedelta(seconds=61)
    websession.check(desk.sessions, session_id, desk.settings, touch=False, now=T0 + timedelta(minutes=5))
    assert seen() == T0 + timedelta(seconds=61)


def test_sign_out_ends_the_session_in_every_tab_and_tells_nothing(desk) -> None:
    ann = staff(desk)["ann"]
    session_id, token = _signed_in(desk, ann)
    websession.end(desk.sessions, session_id, now=T0 + timedelta(minutes=1))
    gone = websession.resume(desk.sessions, token, desk.settings, now=T0 + timedelta(minutes=2))
    assert gone == Gone(SessionEnd.SIGNED_OUT) and gone.message(desk.settings) is None
    # by the cookie (app.py's /auth/sign-out); an unknown cookie changes nothing
    other, other_token = _signed_in(desk, ann)
    websession.end_by_token(desk.sessions, "someone else's", now=T0)
    assert isinstance(websession.check(desk.sessions, other, desk.settings, now=T0 + timedelta(minutes=1)), Live)
    websession.end_by_token(desk.sessions, other_token, now=T0 + timedelta(minutes=1))
    assert websession.check(desk.sessions, other, desk.settings, now=T0 + timedelta(minutes=2)) == Gone(
        SessionEnd.SIGNED_OUT
    )


def test_account_changes_end_every_session_of_that_account_only(desk) -> None:
    p = staff(desk)
    admin, ann, bob = p["admin"], p["ann"], p["bob"]
    now = datetime.now(UTC)
    bobs = _signed_in(desk, bob, now)[0]

    def ended_by(change, reason: SessionEnd) -> None:
        tabs = [_signed_in(desk, ann, now)[0] for _ in range(2)]
        change()
        for tab in tabs:
            gone = websession.check(desk.sessions, tab, desk.settings)
            assert gone == Gone(reason), change
            assert gone.message(desk.settings).startswith("You were signed out: ")
        assert isinstance(websession.check(desk.sessions, bobs, desk.settings), Live)

    ended_by(lambda: set_role(desk.sessions, "ann", "lead", by=admin), SessionEnd.ROLE)
    ended_by(lambda: set_password(desk.sessions, "ann", "a new long password", by=admin), SessionEnd.PASSWORD)
    ended_by(lambda: set_active(desk.sessions, "ann", False, by=admin), SessionEnd.DEACTIVATED)
    # setting the role an account already has is no change: its sessions go on
    set_active(desk.sessions, "ann", True, by=admin)
    tab = _signed_in(desk, ann, now)[0]
    set_role(desk.sessions, "ann", "lead", by=admin)
    assert isinstance(websession.check(desk.sessions, tab, desk.settings), Live)
    with desk.sessions() as session:
        reasons = session.scalars(select(WebSession.end_reason).order_by(WebSession.id)).all()
    assert reasons.count(SessionEnd.DEACTIVATED) == 2 and reasons.count(None) == 2  # bob's, and the last


def test_a_closed_tab_hands_its_post_back_soon_and_a_reload_keeps_it(desk) -> None:
    p = staff(desk)
    ann, bob = p["ann"], p["bob"]
    first, second = queued_posts_with_verdicts(desk, ["fraud_spam", "sexual"])
    now = datetime.now(UTC)
    claim(desk.sessions, ann, first, now=now)
    assert not leave(desk.sessions, bob.id, first, now=now)  # not bob's claim: untouched
    assert leave(desk.sessions, ann.id, first, now=now)
    assert not leave(desk.sessions, ann.id, first, now=now)  # already short: never lengthened
    with desk.sessions() as session:
        held = held_claim(session, ann, now + LEAVE_GRACE - timedelta(seconds=1))
        assert held is not None and held.lease_expires_at == now + LEAVE_GRACE  # a reload finds it
        assert held_claim(session, ann, now + LEAVE_GRACE) is None
    taken = claim(desk.sessions, bob, first, now=now + LEAVE_GRACE)  # free for the others
    assert taken is not None and taken.post_id == first
    assert not leave(desk.sessions, ann.id, second, now=now)  # no claim at all


def test_ended_sessions_are_deleted_a_month_later(desk) -> None:
    ann = staff(desk)["ann"]
    ended, _ = _signed_in(desk, ann)
    websession.end(desk.sessions, ended, now=T0 + timedelta(minutes=1))
    expired, _ = _signed_in(desk, ann)  # never ended: it expires after session_max_hours
    live, _ = _signed_in(desk, ann, T0 + websession.KEEP_ENDED)
    websession.start(desk.sessions, ann, desk.settings, now=T0 + websession.KEEP_ENDED + timedelta(hours=13))
    with desk.sessions() as session:
        kept = set(session.scalars(select(WebSession.id)))
    assert ended not in kept and expired not in kept and live in kept

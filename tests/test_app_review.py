"""The moderation pages, headless (AppTest): sign-in and the first admin, what each role may
open (refusals included), the Review page's claim-decide-undo loop, blind second review, the
Queue page's filters, paging and bulk decisions, Operations, Users and display preferences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select, update
from streamlit.testing.v1 import AppTest

from db.models import Post, ReviewEvent, User, Verdict
from pages._common import ACTOR
from review.auth import preferences
from review.browse import get_posts
from review.ingest import ingest_records
from review.media import data_uri
from review.scoring import point_at, queue_priority
from tests.conftest import ACCOUNT_PASSWORD, account

DASHBOARD = str(Path(__file__).resolve().parents[1] / "dashboard.py")
HOSTILE = "**bold** <script>alert(1)</script> [link](javascript:alert(1)) $x^2$"


@pytest.fixture(autouse=True)
def _fresh_desk_cache() -> None:
    import streamlit as st

    st.cache_resource.clear()  # the desk is cached per process; each test has its own database


def _queue(desk, tmp_path: Path, n: int = 6) -> list[int]:  # type: ignore[no-untyped-def]
    """n queued posts with an image and a usable verdict each: post 0 violence_gore (a blurred
    category) with hostile text, the others fraud_spam or no violation."""
    records = []
    for i in range(n):
        Image.new("RGB", (120, 90), (30 * i % 255, 90, 160)).save(tmp_path / f"img{i}.png")
        records.append(
            {"external_id": f"q{i}", "text": HOSTILE if i == 0 else f"post number {i}", "images": [f"img{i}.png"]}
        )
    ids = ingest_records(desk.sessions, records, desk.settings, base_dir=tmp_path).post_ids
    with desk.sessions() as session, session.begin():
        for i, post_id in enumerate(ids):
            category = "violence_gore" if i == 0 else ("fraud_spam" if i % 2 else "none")
            verdict = Verdict(
                post_id=post_id, provider="transformers", model_id="m", prompt_version="p@1", input_hash=f"h{i}",
                text_hash=f"t{i}", parse_status="ok", violation=category != "none", category=category,
                severity=0 if category == "none" else 2, confidence=0.9, tags=[], parse_notes=[],
                rationale=f"rationale {i} <b>not html</b>",
            )  # fmt: skip
            session.add(verdict)
            session.flush()
            point_at(session, verdict)
            session.execute(
                update(Post).where(Post.id == post_id).values(status="queued", priority=queue_priority(verdict))
            )
    return ids


def _app(monkeypatch: pytest.MonkeyPatch, desk, role: str | None, page: str | None = None, name: str | None = None,
         **env: str) -> AppTest:  # type: ignore[no-untyped-def]  # fmt: skip
    monkeypatch.setenv("DATABASE_URL", desk.settings.database_url)
    monkeypatch.setenv("MEDIA_DIR", str(desk.settings.media_dir))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(DASHBOARD, default_timeout=60)
    if role is not None:
        at.session_state[ACTOR] = account(desk, role, name)
    if page is not None:
        at.switch_page(page)
    return at.run()


def _events(desk, action: str | None = None) -> list[ReviewEvent]:  # type: ignore[no-untyped-def]
    with desk.sessions() as session:
        query = select(ReviewEvent).order_by(ReviewEvent.id)
        if action:
            query = query.where(ReviewEvent.action == action)
        return list(session.scalars(query))


def _status(desk, post_id: int) -> str:  # type: ignore[no-untyped-def]
    with desk.sessions() as session:
        return session.scalar(select(Post.status).where(Post.id == post_id)) or ""


def _held(at: AppTest) -> int | None:
    claim = at.session_state["review_claim"] if "review_claim" in at.session_state else None  # noqa: SIM401 (no .get)
    return None if claim is None else claim.post_id


# ---------------------------------------------------------------------------------------------
# Signing in


def test_first_run_creates_the_admin_and_signs_in(sqlite_desk, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    at = _app(monkeypatch, sqlite_desk, None)
    assert not at.exception
    assert any("no accounts yet" in i.value for i in at.info)
    at.text_input(key="first_username").input("boss")
    at.text_input(key="first_password").input("long enough password")
    at.text_input(key="first_password_again").input("long enough password")
    at.button[0].click().run()
    assert not at.exception
    assert at.session_state[ACTOR].username == "boss" and at.session_state[ACTOR].role == "admin"
    with sqlite_desk.sessions() as session:
        assert session.scalar(select(User.role).where(User.username == "boss")) == "admin"


def test_sign_in_refuses_wrong_password_then_accepts_and_signs_out(sqlite_desk, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    account(sqlite_desk, "moderator", "ann")
    at = _app(monkeypatch, sqlite_desk, None)
    assert not any("no accounts yet" in i.value for i in at.info)
    at.text_input(key="login_username").input("ann")
    at.text_input(key="login_password").input("not the password")
    at.button[0].click().run()
    assert at.error and "wrong username or password" in at.error[0].value.lower()
    assert ACTOR not in at.session_state
    at.text_input(key="login_password").input(ACCOUNT_PASSWORD)
    at.button[0].click().run()
    assert at.session_state[ACTOR].username == "ann"
    # AppTest runs dashboard.py, with the sidebar, on a session's first run only: a new session
    at = _app(monkeypatch, sqlite_desk, "moderator", name="ann")
    assert any("Signed in as ann (moderator)" in t.value for t in at.sidebar.text)
    at.button(key="sign_out").click().run()
    assert ACTOR not in at.session_state


def test_a_deactivated_account_is_signed_out_at_the_next_click(sqlite_desk, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    at = _app(monkeypatch, sqlite_desk, "moderator")
    assert not at.exception and ACTOR in at.session_state
    with sqlite_desk.sessions() as session, session.begin():
        session.execute(update(User).where(User.username == "moderator").values(active=False))
    at.run()
    assert ACTOR not in at.session_state
    assert any("signed out" in e.value for e in at.error)


# ---------------------------------------------------------------------------------------------
# What each role may open


@pytest.mark.parametrize(
    ("role", "page", "refusal"),
    [
        ("moderator", "pages/users.py", "may not manage users"),
        ("moderator", "pages/operations.py", "may not ingest or score"),
        ("lead", "pages/users.py", "may not manage users"),
    ],
)
def test_pages_refuse_roles_without_the_permission(
    sqlite_desk, monkeypatch, role: str, page: str, refusal: str
) -> None:  # type: ignore[no-untyped-def]
    """Even when opened directly (not listed in the navigation), a page refuses and shows nothing."""
    at = _app(monkeypatch, sqlite_desk, role, page)
    assert not at.exception
    assert any(refusal in e.value for e in at.error)
    assert not at.dataframe and not [b for b in at.button if b.key in ("score_start", "user_set_role")]


@pytest.mark.parametrize("role", ["moderator", "lead", "admin"])
def test_every_page_a_role_may_open_renders(sqlite_desk, monkeypatch, tmp_path: Path, role: str) -> None:  # type: ignore[no-untyped-def]
    _queue(sqlite_desk, tmp_path, 3)
    pages = ["pages/review.py", "pages/queue.py", "pages/posts.py"]
    pages += ["pages/operations.py"] if role != "moderator" else []
    pages += ["pages/users.py"] if role == "admin" else []
    for page in pages:
        at = _app(monkeypatch, sqlite_desk, role, page)
        assert not at.exception, (page, at.exception)
        assert not at.error, (page, [e.value for e in at.error])


# ---------------------------------------------------------------------------------------------
# Review


def test_next_confirm_overturn_escalate_skip_and_undo(sqlite_desk, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids = _queue(sqlite_desk, tmp_path)
    at = _app(monkeypatch, sqlite_desk, "moderator", "pages/review.py")
    assert any("Press **N**" in i.value for i in at.info)
    at.button(key="review_next").click().run()
    first = _held(at)
    assert first == ids[0]  # violence_gore, severity 2 × 0.9: first in the queue, oldest first
    assert at.button(key="review_confirm").proto.shortcut  # the key is on the button
    # hostile text and model output come out as plain text
    assert any(t.value == HOSTILE for t in at.text)
    assert any("<b>not html</b>" in t.value for t in at.text)
    assert all("alert(1)" not in m.value and "<b>" not in m.value for m in at.markdown)

    at.text_area(key=f"note:{first}").input("clear case")
    at.button(key="review_confirm").click().run()
    assert _status(sqlite_desk, first) == "decided"
    confirm = _events(sqlite_desk, "confirm")[-1]
    assert (confirm.post_id, confirm.label_category, confirm.note) == (first, "violence_gore", "clear case")
    assert confirm.time_spent_ms is not None and confirm.verdict_id is not None
    second = _held(at)
    assert second not in (None, first)  # the next post is loaded at once

    at.selectbox(key=f"category:{second}").select("hate_harassment").run()
    at.button(key="review_overturn").click().run()
    overturn = _events(sqlite_desk, "overturn")[-1]
    assert (overturn.post_id, overturn.label_violation, overturn.label_category) == (second, True, "hate_harassment")

    third = _held(at)
    at.button(key="review_escalate").click().run()
    assert _status(sqlite_desk, third) == "escalated"  # a moderator's queue no longer has it
    fourth = _held(at)
    at.button(key="review_skip").click().run()
    assert _status(sqlite_desk, fourth) == "queued"
    fifth = _held(at)
    assert fifth not in (None, fourth)  # a skipped post is not handed straight back

    # undo takes back the last decision (the skip), as a new event, and hands the post back;
    # the post taken meanwhile goes back to the queue
    at.button(key="review_undo").click().run()
    assert _held(at) == fourth
    assert [(e.post_id, e.action) for e in _events(sqlite_desk)[-2:]] == [(fourth, "reopen"), (fifth, "release")]
    assert any("Undone" in i.value for i in at.info)
    assert at.button(key="review_undo").disabled


def test_two_moderators_never_get_the_same_post(sqlite_desk, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _queue(sqlite_desk, tmp_path, 3)
    ann = _app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", name="ann")
    bob = _app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", name="bob")
    ann.button(key="review_next").click().run()
    bob.button(key="review_next").click().run()
    assert _held(ann) is not None and _held(bob) is not None and _held(ann) != _held(bob)


def test_a_decision_on_an_expired_claim_is_refused_and_writes_nothing(sqlite_desk, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _queue(sqlite_desk, tmp_path, 2)
    ann = _app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", name="ann")
    ann.button(key="review_next").click().run()
    post_id = _held(ann)
    assert post_id is not None
    # the lease ran out and Bob took the post meanwhile
    past = datetime.now(UTC) - timedelta(seconds=1)
    with sqlite_desk.sessions() as session, session.begin():
        session.execute(update(Post).where(Post.id == post_id).values(lease_expires_at=past))
    bob = _app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", name="bob")
    bob.button(key="review_next").click().run()
    assert _held(bob) == post_id
    before = len(_events(sqlite_desk))
    ann.button(key="review_confirm").click().run()
    assert any("another moderator is reviewing" in e.value for e in [*ann.error, *ann.warning])
    assert len(_events(sqlite_desk)) == before
    assert _status(sqlite_desk, post_id) == "queued"


def test_a_reload_gives_the_moderator_their_claim_back(sqlite_desk, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _queue(sqlite_desk, tmp_path, 2)
    at = _app(monkeypatch, sqlite_desk, "moderator", "pages/review.py")
    at.button(key="review_next").click().run()
    held = _held(at)
    again = _app(monkeypatch, sqlite_desk, "moderator", "pages/review.py")  # a new browser session
    assert _held(again) == held
    assert any("it is yours again" in i.value for i in again.info)


def test_blind_second_review_by_another_moderator(sqlite_desk, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids = _queue(sqlite_desk, tmp_path, 1)
    env = {"SECOND_REVIEW_SHARE": "1", "SECOND_REVIEW_HIDE_VERDICT": "true"}
    ann = _app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", name="ann", **env)
    ann.button(key="review_next").click().run()
    ann.text_area(key=f"note:{ids[0]}").input("ann's reasons")
    ann.button(key="review_confirm").click().run()
    assert _status(sqlite_desk, ids[0]) == "second_review"
    assert _held(ann) is None  # nobody second-reviews their own decision

    bob = _app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", name="bob", **env)
    bob.button(key="review_next").click().run()
    assert _held(bob) == ids[0]
    assert any("Second review" in i.value for i in bob.info)
    assert bob.button(key="review_confirm").disabled  # the verdict is hidden: there is nothing to confirm
    assert not any("rationale 0" in t.value for t in bob.text)
    # nothing on the page tells the verdict: no preselected label, no category in the blur caption
    assert bob.selectbox(key=f"category:{ids[0]}").value is None and bob.button(key="review_overturn").disabled
    assert not any("violence" in c.value for c in bob.caption)
    bob.selectbox(key=f"category:{ids[0]}").select("violence_gore").run()
    bob.button(key="review_overturn").click().run()  # "Decide": the same label as the model's
    last = _events(sqlite_desk)[-1]
    assert (last.action, last.second_review, last.label_category) == ("confirm", True, "violence_gore")
    assert _status(sqlite_desk, ids[0]) == "decided"
    assert any(f"Post {ids[0]}: decision saved" in i.value for i in bob.info)  # not "confirm saved"


def test_listings_hide_the_verdict_of_a_blind_second_review(sqlite_desk, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids = _queue(sqlite_desk, tmp_path, 2)
    env = {"SECOND_REVIEW_SHARE": "1", "SECOND_REVIEW_HIDE_VERDICT": "true"}
    ann = _app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", name="ann", **env)
    ann.button(key="review_next").click().run()
    ann.button(key="review_confirm").click().run()
    assert _status(sqlite_desk, ids[0]) == "second_review"
    bob = _app(monkeypatch, sqlite_desk, "moderator", "pages/queue.py", name="bob", **env)
    table = bob.dataframe[0].value
    assert table.loc[ids[0], "verdict"] == "hidden until its second review"
    assert table.loc[ids[1], "verdict"] == "⚠ fraud_spam 0.90"
    lead = _app(monkeypatch, sqlite_desk, "lead", "pages/queue.py", **env)
    assert lead.dataframe[0].value.loc[ids[0], "verdict"] == "⚠ violence_gore 0.90"


def test_skipping_the_last_free_post_explains_the_empty_queue(sqlite_desk, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids = _queue(sqlite_desk, tmp_path, 2)
    at = _app(monkeypatch, sqlite_desk, "moderator", "pages/review.py")
    at.button(key="review_next").click().run()
    assert _held(at) == ids[0]
    at.button(key="review_next").click().run()  # N while holding: give it back, take another
    assert _held(at) == ids[1]
    at.button(key="review_skip").click().run()  # ids[0] was not skipped: it comes next
    assert _held(at) == ids[0]
    at.button(key="review_skip").click().run()
    assert _held(at) is None
    assert any("you skipped them in this session" in i.value for i in at.info)
    at.button(key="review_unskip").click().run()
    at.button(key="review_next").click().run()
    assert _held(at) == ids[0]


# ---------------------------------------------------------------------------------------------
# Queue


def test_queue_filters_counts_blur_and_paging(sqlite_desk, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids = _queue(sqlite_desk, tmp_path, 6)
    at = _app(monkeypatch, sqlite_desk, "moderator", "pages/queue.py")
    assert not at.exception
    assert "6 posts waiting" in at.caption[0].value
    table = at.dataframe[0].value
    assert list(table.index) == [ids[0], ids[1], ids[3], ids[5], ids[2], ids[4]]  # priority, then oldest
    assert table.loc[ids[0], "verdict"] == "⚠ violence_gore 0.90"
    # violence_gore is blurred in the table; fraud_spam is not
    with sqlite_desk.sessions() as session:
        thumbs = {i: p.media[0].thumb_path for i, p in get_posts(session, ids[:2]).items()}
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


def test_queue_opens_a_post_for_review_and_the_filter_drives_next(sqlite_desk, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids = _queue(sqlite_desk, tmp_path, 6)
    at = _app(monkeypatch, sqlite_desk, "moderator", "pages/queue.py")
    at.selectbox(key="q_violation").select("no violation").run()
    at.session_state[at.dataframe[0].key] = {"selection": {"rows": [1], "columns": [], "cells": []}}
    at.run()
    at.button(key="queue_open").click().run()
    assert _held(at) == ids[4]
    at.button(key="review_skip").click().run()  # the next post comes from the filtered queue
    assert _held(at) == ids[2]


def test_bulk_decision_by_a_lead(sqlite_desk, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids = _queue(sqlite_desk, tmp_path, 4)
    moderator = _app(monkeypatch, sqlite_desk, "moderator", "pages/queue.py")
    assert "bulk_apply" not in [b.key for b in moderator.button]  # no bulk panel for moderators

    lead = _app(monkeypatch, sqlite_desk, "lead", "pages/queue.py")
    lead.session_state[lead.dataframe[0].key] = {"selection": {"rows": [0, 1, 2], "columns": [], "cells": []}}
    lead.run()
    lead.selectbox(key="bulk_decision").select("overturn").run()
    lead.selectbox(key="bulk_category").select("none").run()
    lead.text_input(key="bulk_note").input("campaign was fine").run()
    lead.button(key="bulk_apply").click().run()
    assert not lead.exception
    events = [e for e in _events(sqlite_desk) if e.bulk_id]
    assert {e.post_id for e in events} == {ids[0], ids[1], ids[3]}
    assert len({e.bulk_id for e in events}) == 1
    assert all(e.note == "campaign was fine" and e.label_violation is False for e in events)
    assert any("3 decided" in s.value for s in lead.success)
    assert lead.button(key="bulk_apply").disabled  # the selection is gone with the rows it named


# ---------------------------------------------------------------------------------------------
# Operations, users, preferences


def test_operations_starts_a_scoring_worker(sqlite_desk, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    Image.new("RGB", (64, 64), (10, 200, 10)).save(tmp_path / "a.png")
    ingest_records(sqlite_desk.sessions, [{"external_id": "u1", "text": "加微信 abc12345 领红包", "images": ["a.png"]}],
                   sqlite_desk.settings, base_dir=tmp_path)  # fmt: skip
    at = _app(monkeypatch, sqlite_desk, "lead", "pages/operations.py")
    assert any("1 post waits for a verdict" in c.value for c in at.caption)
    at.selectbox(key="score_provider").select("baseline").run()
    at.button(key="score_start").click().run()
    assert not at.exception
    deadline = datetime.now(UTC) + timedelta(seconds=120)
    while datetime.now(UTC) < deadline:
        with sqlite_desk.sessions() as session:
            if session.scalar(select(func.count(Verdict.id))):
                break
    with sqlite_desk.sessions() as session:
        verdict = session.scalars(select(Verdict)).one()
    assert verdict.provider == "baseline" and verdict.violation


def test_admin_adds_a_user_and_changes_a_role(sqlite_desk, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    at = _app(monkeypatch, sqlite_desk, "admin", "pages/users.py")
    at.text_input(key="new_username").input("carol")
    at.selectbox(key="new_role").select("moderator")
    at.text_input(key="new_password").input("carols password 1")
    at.button[[b.label for b in at.button].index("Add user")].click().run()
    assert any("Added carol (moderator)" in s.value for s in at.success)
    at.selectbox(key="change_user").select("carol")
    at.selectbox(key="change_role").select("lead")
    at.button(key="user_set_role").click().run()
    with sqlite_desk.sessions() as session:
        assert session.scalar(select(User.role).where(User.username == "carol")) == "lead"
    at.selectbox(key="change_user").select("admin")
    at.button(key="user_deactivate").click().run()
    assert any("cannot deactivate their own account" in c.value for c in at.code)  # verbatim, not markdown


def test_display_preferences_are_kept_per_user(sqlite_desk, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids = _queue(sqlite_desk, tmp_path, 1)
    # AppTest runs dashboard.py (with the sidebar) on a session's first run only: a new session per step
    _app(monkeypatch, sqlite_desk, "moderator").toggle(key="pref_grey").set_value(True).run()
    at = _app(monkeypatch, sqlite_desk, "moderator")
    at.toggle(key="pref_blur").set_value(False).run()
    at.switch_page("pages/queue.py").run()
    actor = at.session_state[ACTOR]
    with sqlite_desk.sessions() as session:
        prefs = preferences(session, actor)
    assert (prefs.greyscale, prefs.blur_flagged) == (True, False)
    thumb = at.dataframe[0].value.loc[ids[0], "thumbnail"]
    fresh = _app(monkeypatch, sqlite_desk, "moderator")  # kept for the next session
    assert fresh.toggle(key="pref_grey").value is True
    fresh.switch_page("pages/queue.py").run()
    assert fresh.dataframe[0].value.loc[ids[0], "thumbnail"] == thumb
    other = _app(monkeypatch, sqlite_desk, "moderator", name="other")
    assert other.toggle(key="pref_grey").value is False


def test_ask_the_model_about_the_post(sqlite_desk, monkeypatch, tmp_path: Path, tiny_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """A conversation on the review page with the configured model (the tiny random Qwen3-VL:
    the answer is noise, the plumbing is real), shown as plain text and downloadable as JSON."""
    ids = _queue(sqlite_desk, tmp_path, 1)
    env = {"PROVIDER": "transformers", "MODEL": str(tiny_model_dir)}
    at = _app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", **env)
    at.button(key="review_next").click().run()
    at.chat_input(key=f"chat_input:{ids[0]}").set_value("Is the image **graphic**?").run()
    assert not at.exception and not at.error
    turns = at.session_state[f"chat:{ids[0]}"]
    assert len(turns) == 1 and turns[0].question == "Is the image **graphic**?" and turns[0].error is None
    assert any(t.value == "Is the image **graphic**?" for t in at.text)  # literal, not bold
    # the JSON itself is review.followup.conversation_json's (tests/test_followup.py)
    assert [b.label for b in at.download_button] == ["Download the conversation (JSON)"]


def test_ask_the_model_says_when_the_provider_cannot_answer(sqlite_desk, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids = _queue(sqlite_desk, tmp_path, 1)
    at = _app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", PROVIDER="baseline")
    at.button(key="review_next").click().run()
    at.chat_input(key=f"chat_input:{ids[0]}").set_value("why?").run()
    assert not at.exception
    assert any("baseline provider cannot answer" in t.value for t in at.text)

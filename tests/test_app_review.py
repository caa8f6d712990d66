"""The moderation pages, headless (AppTest): sign-in and the first admin, what each role may
open (refusals included), the Review page's claim-decide-undo loop, blind second review, the
Queue page's filters, paging and bulk decisions, Operations, Users and display preferences."""

from __future__ import annotations

import re
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
from review.decisions import EscalationReasonMissing, decide_bulk, history
from review.ingest import ingest_records
from review.media import data_uri
from review.policy import RESERVED_KEYS, load_policy
from review.priority import queue_priority
from review.verdicts import point_at
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


def _picked(at: AppTest, prefix: str) -> list[str]:
    """The label picker's buttons that stand out as chosen (a category or a severity)."""
    picker = (f"{prefix}_pick_", f"{prefix}_severity_")
    return [b.key for b in at.button if b.key and b.key.startswith(picker) and b.proto.type == "primary"]


def _focus_target(at: AppTest) -> str | None:
    """The container the page's focus script aims at (None: no script on the page)."""
    bodies = [e.value for e in at.get("html")]
    aims = [c for body in bodies for c in re.findall(r"\.st-key-(\w+) ", body)]
    return aims[-1] if aims else None


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

    at.button(key="review_pick_hate_harassment").click().run()
    at.button(key="review_severity_3").click().run()
    at.button(key="review_overturn").click().run()
    overturn = _events(sqlite_desk, "overturn")[-1]
    assert (overturn.post_id, overturn.label_violation, overturn.label_category, overturn.label_severity) == (
        second, True, "hate_harassment", 3
    )  # fmt: skip

    third = _held(at)
    at.text_area(key=f"note:{third}").input("satire or a threat?")
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


def test_an_overturn_never_guesses_the_label(sqlite_desk, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 13: O on a post once recorded a preselected label ("none" on a flagged post, the
    first category, severity 2, on a clean one). Now nothing is preselected; O alone saves
    nothing and asks for the label (the focus goes to the categories), and the label picked
    next, with the category's own key, completes that overturn."""
    ids = _queue(sqlite_desk, tmp_path, 3)  # the model: ids[0] violence_gore, ids[1] fraud_spam, ids[2] none
    at = _app(monkeypatch, sqlite_desk, "moderator", "pages/review.py")
    at.button(key="review_next").click().run()
    flagged = _held(at)
    assert flagged == ids[0]
    assert not _picked(at, "review")  # nothing preselected, not even the opposite of the model
    assert at.button(key="review_pick_fraud_spam").proto.shortcut == "6"  # the key, from prompts/policy.toml
    assert at.button(key="review_pick_none").proto.shortcut == "0"

    at.button(key="review_overturn").click().run()  # O with no choice
    assert not _events(sqlite_desk, "overturn") and _held(at) == flagged
    assert any("nothing saved" in w.value and "Choose the new label" in w.value for w in at.warning)
    assert _focus_target(at) == "review_categories"
    at.button(key="review_pick_fraud_spam").click().run()  # a violation: its severity is still to choose
    assert not _events(sqlite_desk, "overturn") and _held(at) == flagged
    assert any("Choose the severity" in w.value for w in at.warning)
    assert _focus_target(at) == "review_severity" and _picked(at, "review") == ["review_pick_fraud_spam"]
    at.button(key="review_severity_3").click().run()  # complete: the waiting overturn is saved
    event = _events(sqlite_desk, "overturn")[-1]
    assert (event.post_id, event.label_violation, event.label_category, event.label_severity) == (
        flagged, True, "fraud_spam", 3
    )  # fmt: skip

    # the next post (the model: fraud_spam): O, then 0 records "no violation", on purpose
    nxt = _held(at)
    assert nxt == ids[1] and not _picked(at, "review") and not any("nothing saved" in w.value for w in at.warning)
    at.button(key="review_overturn").click().run()
    assert len(_events(sqlite_desk, "overturn")) == 1
    at.button(key="review_pick_none").click().run()
    event = _events(sqlite_desk, "overturn")[-1]
    assert (event.post_id, event.label_violation, event.label_category, event.label_severity) == (nxt, False, "none", 0)

    # picking first and pressing O after works too; a severity chosen for another category is dropped
    last = _held(at)
    assert last == ids[2]
    at.button(key="review_pick_sexual").click().run()
    at.button(key="review_severity_1").click().run()
    assert not _events(sqlite_desk, "overturn")[2:]  # picking alone decides nothing
    at.button(key="review_pick_illegal_goods").click().run()
    assert _picked(at, "review") == ["review_pick_illegal_goods"]
    at.button(key="review_overturn").click().run()
    assert not _events(sqlite_desk, "overturn")[2:] and any("Choose the severity" in w.value for w in at.warning)
    at.button(key="review_severity_2").click().run()
    event = _events(sqlite_desk, "overturn")[-1]
    assert (event.post_id, event.label_category, event.label_severity) == (last, "illegal_goods", 2)


def test_review_page_shortcuts_are_distinct_and_reserved(sqlite_desk, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Every single-key shortcut of the Review page is either a category's key from the policy
    or in review.policy.RESERVED_KEYS (which the policy's keys must avoid), and none repeats."""
    _queue(sqlite_desk, tmp_path, 1)
    at = _app(monkeypatch, sqlite_desk, "moderator", "pages/review.py")
    at.button(key="review_next").click().run()
    shortcuts = [b.proto.shortcut for b in at.button if b.proto.shortcut]
    assert len(shortcuts) == len(set(shortcuts))
    keys = {c.key for c in load_policy().category}
    single = {s for s in shortcuts if len(s) == 1}
    assert keys <= single
    assert single - keys <= RESERVED_KEYS
    assert {"n", "y", "o", "e", "s", "h", "u"} <= single - keys  # the page's own keys are found here


def test_escalation_needs_a_reason_that_the_lead_sees(sqlite_desk, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids = _queue(sqlite_desk, tmp_path, 2)
    at = _app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", name="ann")
    at.button(key="review_next").click().run()
    post_id = _held(at)
    assert post_id == ids[0]
    at.text_area(key=f"note:{post_id}").input("   ")  # blank is no reason
    at.button(key="review_escalate").click().run()
    assert not _events(sqlite_desk, "escalate") and _held(at) == post_id and _status(sqlite_desk, post_id) == "queued"
    assert any("Write the reason in the note" in w.value for w in at.warning)
    assert _focus_target(at) == "review_note"
    reason = "**Fake** <b>charity</b>: the same QR code as last week's scam"
    at.text_area(key=f"note:{post_id}").input(reason)
    at.button(key="review_escalate").click().run()
    event = _events(sqlite_desk, "escalate")[-1]
    assert (event.post_id, event.note) == (post_id, reason)
    assert _status(sqlite_desk, post_id) == "escalated"

    # the core refuses it too, one by one and in bulk, whatever the page does
    lead_actor = account(sqlite_desk, "lead", "lea")
    with pytest.raises(EscalationReasonMissing):
        decide_bulk(sqlite_desk.sessions, lead_actor, [ids[1]], "escalate", note=" ")
    assert _status(sqlite_desk, ids[1]) == "queued"

    # the lead: the reason in the queue's listing of escalated posts, on the post and in its history
    lead = _app(monkeypatch, sqlite_desk, "lead", "pages/queue.py", name="lea")
    lead.selectbox(key="q_escalated").select("only escalated").run()
    table = lead.dataframe[0].value
    assert list(table.index) == [post_id] and table.loc[post_id, "escalation reason"] == f"ann: {reason}"
    lead.session_state[lead.dataframe[0].key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    lead.run()
    lead.button(key="queue_open").click().run()
    assert _held(lead) == post_id
    assert any("Escalated for a lead to decide" in w.value for w in lead.warning)
    assert any(t.value == f"ann: {reason}" for t in lead.text)  # plain text, not markdown
    assert all("charity" not in m.value for m in lead.markdown)
    with sqlite_desk.sessions() as session:
        entries = history(session, lead_actor, post_id)
    assert [(e.action, e.note) for e in entries if e.action == "escalate"] == [("escalate", reason)]
    # and another moderator does not read ann's reason (notes are for leads)
    posts = _app(monkeypatch, sqlite_desk, "moderator", "pages/posts.py", name="bob")
    posts.session_state[posts.dataframe[0].key] = {
        "selection": {"rows": [list(posts.dataframe[0].value.index).index(post_id)], "columns": [], "cells": []}
    }
    posts.run()
    assert any("Escalated for a lead to decide" in w.value for w in posts.warning)
    assert not any("charity" in t.value for t in posts.text)


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
    assert not _picked(bob, "review") and f"category:{ids[0]}" not in bob.session_state
    assert not any("violence" in c.value for c in bob.caption)
    bob.button(key="review_overturn").click().run()  # "Decide" before choosing: asks, saves nothing
    assert _events(sqlite_desk)[-1].action == "claim" and any("nothing saved" in w.value for w in bob.warning)
    bob.button(key="review_pick_violence_gore").click().run()
    bob.button(key="review_severity_2").click().run()  # the label is complete: the waiting "Decide" saves it
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
    lead.button(key="bulk_pick_none").click().run()
    lead.text_input(key="bulk_note").input("campaign was fine").run()
    lead.button(key="bulk_apply").click().run()
    assert not lead.exception
    events = [e for e in _events(sqlite_desk) if e.bulk_id]
    assert {e.post_id for e in events} == {ids[0], ids[1], ids[3]}
    assert len({e.bulk_id for e in events}) == 1
    assert all(e.note == "campaign was fine" and e.label_violation is False for e in events)
    assert any("3 decided" in s.value for s in lead.success)
    assert lead.button(key="bulk_apply").disabled  # the selection is gone with the rows it named


def test_bulk_overturn_needs_a_chosen_label(sqlite_desk, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """No decision, category or severity is preset for a bulk decision: Apply with overturn and
    no label decides nothing and asks for it; the categories' keys pick it, as on Review."""
    ids = _queue(sqlite_desk, tmp_path, 4)
    lead = _app(monkeypatch, sqlite_desk, "lead", "pages/queue.py")
    lead.session_state[lead.dataframe[0].key] = {"selection": {"rows": [1, 2], "columns": [], "cells": []}}
    lead.run()
    assert lead.selectbox(key="bulk_decision").value is None and lead.button(key="bulk_apply").disabled
    lead.selectbox(key="bulk_decision").select("overturn").run()
    assert not _picked(lead, "bulk")
    assert lead.button(key="bulk_pick_fraud_spam").proto.shortcut == "6"
    lead.button(key="bulk_apply").click().run()
    assert not [e for e in _events(sqlite_desk) if e.bulk_id]
    assert any("Nothing was decided" in w.value and "Choose the new label" in w.value for w in lead.warning)
    assert _focus_target(lead) == "bulk_categories"
    lead.button(key="bulk_pick_illegal_goods").click().run()
    lead.button(key="bulk_apply").click().run()  # a violation without a severity: still nothing
    assert not [e for e in _events(sqlite_desk) if e.bulk_id]
    assert any("Choose the severity" in w.value for w in lead.warning)
    lead.button(key="bulk_severity_1").click().run()
    lead.button(key="bulk_apply").click().run()
    events = [e for e in _events(sqlite_desk) if e.bulk_id]
    assert {e.post_id for e in events} == {ids[1], ids[3]}  # the second and third rows
    assert {(e.action, e.label_category, e.label_severity) for e in events} == {("overturn", "illegal_goods", 1)}
    assert any("2 decided" in s.value for s in lead.success)
    assert not _picked(lead, "bulk")  # the next bulk overturn is chosen afresh


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

"""The Review page (pages/review.py), headless (AppTest): the claim-decide-undo loop, the label
picker and its shortcuts, escalation with a reason, claims (never two moderators on one post, an
expired one refused, given back on reload), blind second review, the empty queue, and asking the
model about a post."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from db.models import Post
from review.decisions import EscalationReasonMissing, decide_bulk, history
from review.inference.baseline import BaselineProvider
from review.ingest import StorePolicy, ingest_paths
from review.policy import RESERVED_KEYS, load_policy
from review.reports import add_report
from review.scoring import Scorer
from tests.conftest import (
    account,
    focus_target,
    held_post,
    make_image,
    open_app,
    picked_labels,
    post_status,
    review_events,
    write_jsonl,
)
from tests.factories import HOSTILE, queued_posts

pytestmark = pytest.mark.usefixtures("fresh_caches")


def open_chat(at, post_id: int) -> None:
    """Unfold "Ask the model about this post" (its open state is kept under its key)."""
    at.session_state[f"review_chat:{post_id}"] = True
    at.run()


def test_next_confirm_overturn_escalate_skip_and_undo(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    ids = queued_posts(sqlite_desk, tmp_path)
    at = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py")
    assert any("Press **N**" in i.value for i in at.info)
    at.button(key="review_next").click().run()
    first = held_post(at)
    assert first == ids[0]  # violence_gore, severity 2 × 0.9: first in the queue, oldest first
    assert at.button(key="review_confirm").proto.shortcut  # the key is on the button
    # hostile text and model output come out as plain text
    assert any(t.value == HOSTILE for t in at.text)
    assert any("<b>not html</b>" in t.value for t in at.text)
    assert all("alert(1)" not in m.value and "<b>" not in m.value for m in at.markdown)

    at.text_area(key=f"note:{first}").input("clear case")
    at.button(key="review_confirm").click().run()
    assert post_status(sqlite_desk, first) == "decided"
    confirm = review_events(sqlite_desk, "confirm")[-1]
    assert (confirm.post_id, confirm.label_category, confirm.note) == (first, "violence_gore", "clear case")
    assert confirm.time_spent_ms is not None and confirm.verdict_id is not None
    second = held_post(at)
    assert second not in (None, first)  # the next post is loaded at once

    at.button(key="review_pick_hate_harassment").click().run()
    at.button(key="review_severity_3").click().run()
    at.button(key="review_overturn").click().run()
    overturn = review_events(sqlite_desk, "overturn")[-1]
    assert (overturn.post_id, overturn.label_violation, overturn.label_category, overturn.label_severity) == (
        second, True, "hate_harassment", 3
    )  # fmt: skip

    third = held_post(at)
    at.text_area(key=f"note:{third}").input("satire or a threat?")
    at.button(key="review_escalate").click().run()
    assert post_status(sqlite_desk, third) == "escalated"  # a moderator's queue no longer has it
    fourth = held_post(at)
    at.button(key="review_skip").click().run()
    assert post_status(sqlite_desk, fourth) == "queued"
    fifth = held_post(at)
    assert fifth not in (None, fourth)  # a skipped post is not handed straight back

    # undo takes back the last decision (the skip), as a new event, and hands the post back;
    # the post taken meanwhile goes back to the queue
    at.button(key="review_undo").click().run()
    assert held_post(at) == fourth
    assert [(e.post_id, e.action) for e in review_events(sqlite_desk)[-2:]] == [(fourth, "reopen"), (fifth, "release")]
    assert any("Undone" in i.value for i in at.info)
    assert at.button(key="review_undo").label == f"Undo escalate of post {third}"  # the one before, next


def test_an_overturn_never_guesses_the_label(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    """Issue 13: O on a post once recorded a preselected label ("none" on a flagged post, the
    first category, severity 2, on a clean one). Now nothing is preselected; O alone saves
    nothing and asks for the label (the focus goes to the categories), and the label picked
    next, with the category's own key, completes that overturn."""
    ids = queued_posts(sqlite_desk, tmp_path, 3)  # the model: ids[0] violence_gore, ids[1] fraud_spam, ids[2] none
    at = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py")
    at.button(key="review_next").click().run()
    flagged = held_post(at)
    assert flagged == ids[0]
    assert not picked_labels(at, "review")  # nothing preselected, not even the opposite of the model
    assert at.button(key="review_pick_fraud_spam").proto.shortcut == "6"  # the key, from prompts/policy.toml
    assert at.button(key="review_pick_none").proto.shortcut == "0"

    at.button(key="review_overturn").click().run()  # O with no choice
    assert not review_events(sqlite_desk, "overturn") and held_post(at) == flagged
    assert any("nothing saved" in w.value and "Choose the new label" in w.value for w in at.warning)
    assert focus_target(at) == "review_categories"
    at.button(key="review_pick_fraud_spam").click().run()  # a violation: its severity is still to choose
    assert not review_events(sqlite_desk, "overturn") and held_post(at) == flagged
    assert any("Choose the severity" in w.value for w in at.warning)
    assert focus_target(at) == "review_severity" and picked_labels(at, "review") == ["review_pick_fraud_spam"]
    at.button(key="review_severity_3").click().run()  # complete: the waiting overturn is saved
    event = review_events(sqlite_desk, "overturn")[-1]
    assert (event.post_id, event.label_violation, event.label_category, event.label_severity) == (
        flagged, True, "fraud_spam", 3
    )  # fmt: skip

    # the next post (the model: fraud_spam): O, then 0 records "no violation", on purpose
    nxt = held_post(at)
    assert nxt == ids[1] and not picked_labels(at, "review") and not any("nothing saved" in w.value for w in at.warning)
    at.button(key="review_overturn").click().run()
    assert len(review_events(sqlite_desk, "overturn")) == 1
    at.button(key="review_pick_none").click().run()
    event = review_events(sqlite_desk, "overturn")[-1]
    assert (event.post_id, event.label_violation, event.label_category, event.label_severity) == (nxt, False, "none", 0)

    # picking first and pressing O after works too; a severity chosen for another category is dropped
    last = held_post(at)
    assert last == ids[2]
    at.button(key="review_pick_sexual").click().run()
    at.button(key="review_severity_1").click().run()
    assert not review_events(sqlite_desk, "overturn")[2:]  # picking alone decides nothing
    at.button(key="review_pick_illegal_goods").click().run()
    assert picked_labels(at, "review") == ["review_pick_illegal_goods"]
    at.button(key="review_overturn").click().run()
    assert not review_events(sqlite_desk, "overturn")[2:] and any("Choose the severity" in w.value for w in at.warning)
    at.button(key="review_severity_2").click().run()
    event = review_events(sqlite_desk, "overturn")[-1]
    assert (event.post_id, event.label_category, event.label_severity) == (last, "illegal_goods", 2)


def test_review_page_shortcuts_are_distinct_and_reserved(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    """Every single-key shortcut of the Review page is either a category's key from the policy
    or in review.policy.RESERVED_KEYS (which the policy's keys must avoid), and none repeats."""
    queued_posts(sqlite_desk, tmp_path, 1)
    at = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py")
    at.button(key="review_next").click().run()
    shortcuts = [b.proto.shortcut for b in at.button if b.proto.shortcut]
    assert len(shortcuts) == len(set(shortcuts))
    keys = {c.key for c in load_policy().category}
    single = {s for s in shortcuts if len(s) == 1}
    assert keys <= single
    assert single - keys <= RESERVED_KEYS
    assert {"n", "y", "o", "e", "s", "h", "u"} <= single - keys  # the page's own keys are found here


def test_escalation_needs_a_reason_that_the_lead_sees(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    ids = queued_posts(sqlite_desk, tmp_path, 2)
    at = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", name="ann")
    at.button(key="review_next").click().run()
    post_id = held_post(at)
    assert post_id == ids[0]
    at.text_area(key=f"note:{post_id}").input("   ")  # blank is no reason
    at.button(key="review_escalate").click().run()
    assert (
        not review_events(sqlite_desk, "escalate")
        and held_post(at) == post_id
        and post_status(sqlite_desk, post_id) == "queued"
    )
    assert any("Write the reason in the note" in w.value for w in at.warning)
    assert focus_target(at) == "review_note"
    reason = "**Fake** <b>charity</b>: the same QR code as last week's scam"
    at.text_area(key=f"note:{post_id}").input(reason)
    at.button(key="review_escalate").click().run()
    event = review_events(sqlite_desk, "escalate")[-1]
    assert (event.post_id, event.note) == (post_id, reason)
    assert post_status(sqlite_desk, post_id) == "escalated"

    # the core refuses it too, one by one and in bulk, whatever the page does
    lead_actor = account(sqlite_desk, "lead", "lea")
    with pytest.raises(EscalationReasonMissing):
        decide_bulk(sqlite_desk.sessions, lead_actor, [ids[1]], "escalate", note=" ")
    assert post_status(sqlite_desk, ids[1]) == "queued"

    # the lead: the reason in the queue's listing of escalated posts, on the post and in its history
    lead = open_app(monkeypatch, sqlite_desk, "lead", "pages/queue.py", name="lea")
    lead.selectbox(key="q_escalated").select("only escalated").run()
    table = lead.dataframe[0].value
    assert list(table.index) == [post_id] and table.loc[post_id, "escalation reason"] == f"ann: {reason}"
    lead.session_state[lead.dataframe[0].key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    lead.run()
    lead.button(key="queue_open").click().run()
    assert held_post(lead) == post_id
    assert any("Escalated for a lead to decide" in w.value for w in lead.warning)
    assert any(t.value == f"ann: {reason}" for t in lead.text)  # plain text, not markdown
    assert all("charity" not in m.value for m in lead.markdown)
    with sqlite_desk.sessions() as session:
        entries = history(session, lead_actor, post_id)
    assert [(e.action, e.note) for e in entries if e.action == "escalate"] == [("escalate", reason)]
    # and another moderator does not read ann's reason (notes are for leads)
    posts = open_app(monkeypatch, sqlite_desk, "moderator", "pages/posts.py", name="bob")
    posts.session_state[posts.dataframe[0].key] = {
        "selection": {"rows": [list(posts.dataframe[0].value.index).index(post_id)], "columns": [], "cells": []}
    }
    posts.run()
    assert any("Escalated for a lead to decide" in w.value for w in posts.warning)
    assert not any("charity" in t.value for t in posts.text)


def test_two_moderators_never_get_the_same_post(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    queued_posts(sqlite_desk, tmp_path, 3)
    ann = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", name="ann")
    bob = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", name="bob")
    ann.button(key="review_next").click().run()
    bob.button(key="review_next").click().run()
    assert held_post(ann) is not None and held_post(bob) is not None and held_post(ann) != held_post(bob)


def test_a_decision_on_an_expired_claim_is_refused_and_writes_nothing(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    queued_posts(sqlite_desk, tmp_path, 2)
    ann = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", name="ann")
    ann.button(key="review_next").click().run()
    post_id = held_post(ann)
    assert post_id is not None
    # the lease ran out and Bob took the post meanwhile
    past = datetime.now(UTC) - timedelta(seconds=1)
    with sqlite_desk.sessions() as session, session.begin():
        session.execute(update(Post).where(Post.id == post_id).values(lease_expires_at=past))
    bob = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", name="bob")
    bob.button(key="review_next").click().run()
    assert held_post(bob) == post_id
    before = len(review_events(sqlite_desk))
    ann.button(key="review_confirm").click().run()
    assert any("another moderator is reviewing" in e.value for e in [*ann.error, *ann.warning])
    assert len(review_events(sqlite_desk)) == before
    assert post_status(sqlite_desk, post_id) == "queued"


def test_a_reload_gives_the_moderator_their_claim_back(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    queued_posts(sqlite_desk, tmp_path, 2)
    at = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py")
    at.button(key="review_next").click().run()
    held = held_post(at)
    again = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py")  # a new browser session
    assert held_post(again) == held
    assert any("it is yours again" in i.value for i in again.info)


def test_blind_second_review_by_another_moderator(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    ids = queued_posts(sqlite_desk, tmp_path, 1)
    env = {"SECOND_REVIEW_SHARE": "1", "SECOND_REVIEW_HIDE_VERDICT": "true"}
    ann = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", name="ann", **env)
    ann.button(key="review_next").click().run()
    ann.text_area(key=f"note:{ids[0]}").input("ann's reasons")
    ann.button(key="review_confirm").click().run()
    assert post_status(sqlite_desk, ids[0]) == "second_review"
    assert held_post(ann) is None  # nobody second-reviews their own decision

    bob = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", name="bob", **env)
    bob.button(key="review_next").click().run()
    assert held_post(bob) == ids[0]
    assert any("Second review" in i.value for i in bob.info)
    assert bob.button(key="review_confirm").disabled  # the verdict is hidden: there is nothing to confirm
    assert not any("rationale 0" in t.value for t in bob.text)
    # nothing on the page tells the verdict: no preselected label, no category in the blur caption
    assert not picked_labels(bob, "review") and f"category:{ids[0]}" not in bob.session_state
    assert not any("violence" in c.value for c in bob.caption)
    bob.button(key="review_overturn").click().run()  # "Decide" before choosing: asks, saves nothing
    assert review_events(sqlite_desk)[-1].action == "claim" and any("nothing saved" in w.value for w in bob.warning)
    bob.button(key="review_pick_violence_gore").click().run()
    bob.button(key="review_severity_2").click().run()  # the label is complete: the waiting "Decide" saves it
    last = review_events(sqlite_desk)[-1]
    assert (last.action, last.second_review, last.label_category) == ("confirm", True, "violence_gore")
    assert post_status(sqlite_desk, ids[0]) == "decided"
    assert any(f"Post {ids[0]}: decision saved" in i.value for i in bob.info)  # not "confirm saved"


def test_listings_hide_the_verdict_of_a_blind_second_review(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    ids = queued_posts(sqlite_desk, tmp_path, 2)
    env = {"SECOND_REVIEW_SHARE": "1", "SECOND_REVIEW_HIDE_VERDICT": "true"}
    ann = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", name="ann", **env)
    ann.button(key="review_next").click().run()
    ann.button(key="review_confirm").click().run()
    assert post_status(sqlite_desk, ids[0]) == "second_review"
    bob = open_app(monkeypatch, sqlite_desk, "moderator", "pages/queue.py", name="bob", **env)
    table = bob.dataframe[0].value
    assert table.loc[ids[0], "verdict"] == "hidden until its second review"
    assert table.loc[ids[1], "verdict"] == "⚠ fraud_spam 0.90"
    lead = open_app(monkeypatch, sqlite_desk, "lead", "pages/queue.py", **env)
    assert lead.dataframe[0].value.loc[ids[0], "verdict"] == "⚠ violence_gore 0.90"


def test_skipping_the_last_free_post_explains_the_empty_queue(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    ids = queued_posts(sqlite_desk, tmp_path, 2)
    at = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py")
    at.button(key="review_next").click().run()
    assert held_post(at) == ids[0]
    at.button(key="review_next").click().run()  # N while holding: give it back, take another
    assert held_post(at) == ids[1]
    at.button(key="review_skip").click().run()  # ids[0] was not skipped: it comes next
    assert held_post(at) == ids[0]
    at.button(key="review_skip").click().run()
    assert held_post(at) is None
    assert any("you skipped them in the last 30 minutes" in i.value for i in at.info)
    at.button(key="review_unskip").click().run()
    at.button(key="review_next").click().run()
    assert held_post(at) == ids[0]


def test_ask_the_model_about_the_post(sqlite_desk, monkeypatch, tmp_path: Path, tiny_model_dir: Path) -> None:
    """A conversation on the review page with the configured model (the tiny random Qwen3-VL:
    the answer is noise, the plumbing is real), shown as plain text and downloadable as JSON."""
    ids = queued_posts(sqlite_desk, tmp_path, 1)
    env = {"PROVIDER": "transformers", "MODEL": str(tiny_model_dir)}
    at = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", **env)
    at.button(key="review_next").click().run()
    open_chat(at, ids[0])
    at.chat_input(key=f"chat_input:{ids[0]}").set_value("Is the image **graphic**?").run()
    assert not at.exception and not at.error
    turns = at.session_state[f"chat:{ids[0]}"]
    assert len(turns) == 1 and turns[0].question == "Is the image **graphic**?" and turns[0].error is None
    assert any(t.value == "Is the image **graphic**?" for t in at.text)  # literal, not bold
    # the JSON itself is review.followup.conversation_json's (tests/test_followup.py)
    assert [b.label for b in at.download_button] == ["Download the conversation (JSON)"]


def test_ask_the_model_says_when_the_provider_cannot_answer(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    ids = queued_posts(sqlite_desk, tmp_path, 1)
    at = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", PROVIDER="baseline")
    at.button(key="review_next").click().run()
    open_chat(at, ids[0])
    at.chat_input(key=f"chat_input:{ids[0]}").set_value("why?").run()
    assert not at.exception
    assert any("baseline provider cannot answer" in t.value for t in at.text)


def test_the_post_on_screen_shows_its_reports(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    """Issue 16: the platform's reports show near the verdict, in one line, their reasons as plain
    text; a post without reports shows none."""
    ids = queued_posts(sqlite_desk, tmp_path, 2)
    add_report(sqlite_desk.sessions, sqlite_desk.settings, ids[0], "user_report", "spam", 3)
    add_report(sqlite_desk.sessions, sqlite_desk.settings, ids[0], "classifier", "nsfw", 2)
    add_report(sqlite_desk.sessions, sqlite_desk.settings, ids[0], "user_report", "**bold** <b>x</b>", 1)
    at = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py")
    at.button(key="review_next").click().run()
    assert held_post(at) == ids[0]
    lines = [t.value for t in at.text if t.value.startswith("Reported")]
    assert lines == ["Reported 6× — user report: spam ×3, classifier: nsfw ×2, user report: **bold** <b>x</b> ×1"]
    assert not any("Back in the queue" in i.value for i in at.info)  # never decided: nothing came back
    at.button(key="review_confirm").click().run()
    assert held_post(at) == ids[1]
    assert not [t for t in at.text if t.value.startswith("Reported")]


def test_a_post_reports_sent_back_says_so(desk, monkeypatch, tmp_path: Path) -> None:
    """A decided post that reports re-queued (review.reports: ``requeue_after_reports``, 3 by
    default) tells the next moderator why it is back, and when it was decided (SQLite and Postgres)."""
    ids = queued_posts(desk, tmp_path, 1)
    ann = open_app(monkeypatch, desk, "moderator", "pages/review.py", name="ann")
    ann.button(key="review_next").click().run()
    ann.button(key="review_confirm").click().run()
    assert post_status(desk, ids[0]) == "decided"
    decided_at = [e for e in review_events(desk) if e.action == "confirm"][-1].created_at
    add_report(desk.sessions, desk.settings, ids[0], "user_report", "spam", 1)
    outcome = add_report(desk.sessions, desk.settings, ids[0], "classifier", "spam", 2)
    assert outcome.requeued and post_status(desk, ids[0]) == "queued"

    bob = open_app(monkeypatch, desk, "moderator", "pages/review.py", name="bob")
    bob.button(key="review_next").click().run()
    assert held_post(bob) == ids[0]
    back = [i.value for i in bob.info if i.value.startswith("Back in the queue")]
    assert back == [f"Back in the queue: 3 reports after its decision on {decided_at:%Y-%m-%d %H:%M} UTC."]
    assert any(t.value == "Reported 3× — classifier: spam ×2, user report: spam ×1" for t in bob.text)


def test_the_moderator_is_told_which_images_were_missing_at_ingest(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    """A post stored with --missing-images skip names the images it lacks above the pictures,
    verbatim (the names come from the platform's file)."""
    make_image(tmp_path / "there.jpg", 1)
    path = write_jsonl(tmp_path / "p.jsonl", [{"external_id": "m", "text": "two pictures",
                                               "images": ["there.jpg", "**gone**.jpg"]}])  # fmt: skip
    ingest_paths(sqlite_desk.sessions, [path], sqlite_desk.settings, policy=StorePolicy(missing_images="skip"))
    Scorer(sqlite_desk.sessions, sqlite_desk.settings, BaselineProvider()).run()
    at = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py")
    at.button(key="review_next").click().run()
    assert not at.exception
    assert any(w.value.startswith("1 image of this post could not be found when it was ingested") for w in at.warning)
    assert any(t.value == "**gone**.jpg" for t in at.text)  # plain text, not markdown

"""Issue 17 on the Review page (pages/review.py), headless (AppTest): the images reach the browser
before the decision buttons, the page's address carries the post (``?post=``), the earlier
decisions can be undone from a list, the context line, a failed model load remembered with a
retry, the scroll to the top per post, and no "None" on a post without images. The rules
behind them are tested without Streamlit in tests/test_workbench_floor.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.runtime.forward_msg_queue import ForwardMsgQueue

from pages._common import REVIEW
from review.queue import QueueFilter
from tests.conftest import held_post, open_app, post_status, review_events
from tests.factories import queued_posts, queued_posts_with_verdicts

pytestmark = pytest.mark.usefixtures("fresh_caches")


def _sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the script sends to the browser from now on, in order, one name per new element: the
    element's type, and a button's key. Streamlit's own queue of messages to the browser is
    watched (each message still goes on), so the order is the one the browser receives."""
    names: list[str] = []
    enqueue = ForwardMsgQueue.enqueue

    def watched(queue: ForwardMsgQueue, msg) -> None:  # noqa: ANN001 (a ForwardMsg)
        if msg.WhichOneof("type") == "delta" and msg.delta.WhichOneof("type") == "new_element":
            element = msg.delta.new_element
            kind = element.WhichOneof("type")
            names.append(f"button {element.button.id.rsplit('-', 1)[-1]}" if kind == "button" else kind)
        enqueue(queue, msg)

    monkeypatch.setattr(ForwardMsgQueue, "enqueue", watched)
    return names


def test_the_images_reach_the_browser_before_the_decision_buttons(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    """Issue 17: the buttons (and their Y/O/E/S shortcuts) once reached the browser 0.2–1 s before
    the image, so a fast moderator could confirm a post unseen. Streamlit sends elements in the
    order the script makes them, whatever column they sit in: the images' column is filled first."""
    ids = queued_posts(sqlite_desk, tmp_path, 2)
    at = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py")
    sent = _sent(monkeypatch)
    at.button(key="review_next").click().run()
    assert held_post(at) == ids[0]
    decisions = [sent.index(f"button {key}") for key in ("review_confirm", "review_overturn", "review_escalate")]
    assert "imgs" in sent and sent.index("imgs") < min([*decisions, sent.index("button review_skip")])
    sent.clear()
    at.button(key="review_confirm").click().run()  # the next post, the same order
    assert held_post(at) == ids[1] and sent.index("imgs") < sent.index("button review_confirm")


def test_the_address_carries_the_post(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    """``/?post=ID`` (a link, a reload, the Accuracy page's drill-down) opens that post; while a
    post is shown the address names it; a post that cannot be had is said, and left out of it."""
    ids = queued_posts(sqlite_desk, tmp_path, 3)
    at = open_app(monkeypatch, sqlite_desk, "moderator", name="ann")  # signed in; Review is the first page
    for bad in ("²", "9" * 30, "-1", "12abc"):  # digits to str.isdigit, or too large: ignored, said
        at.query_params["post"] = bad
        at.run()
        assert not at.exception and held_post(at) is None and "post" not in at.query_params
        assert "Part of the link was ignored:" in [w.value for w in at.warning]
    at.query_params["post"] = str(ids[2])
    at.run()
    assert held_post(at) == ids[2] and at.query_params["post"] == str(ids[2])
    at.button(key="review_confirm").click().run()
    nxt = held_post(at)
    assert nxt not in (None, ids[2]) and at.query_params["post"] == str(nxt)  # the decided post is not reopened
    bob = open_app(monkeypatch, sqlite_desk, "moderator", name="bob")
    bob.query_params["post"] = str(nxt)
    bob.run()
    refused = f"Post {nxt} cannot be opened for you: another moderator is reviewing it."
    assert refused in [w.value for w in bob.warning]
    # ... and shown read-only (a lead's drill-down lands on decided posts): nothing on it decides
    assert held_post(bob) is None and bob.query_params["post"] == str(nxt)
    assert [h.value for h in bob.subheader] == [f"Post {nxt}"]
    assert "Shown read-only: queued." in [c.value for c in bob.caption]
    assert not any(b.key in ("review_confirm", "review_overturn", "review_escalate", "review_skip") for b in bob.button)
    bob.run()  # a rerun neither asks again nor leaves the view
    assert refused not in [w.value for w in bob.warning] and [h.value for h in bob.subheader] == [f"Post {nxt}"]
    # a decided post, linked while ann holds another: shown read-only, and ann keeps hers
    at.query_params["post"] = str(ids[2])
    at.run()
    assert held_post(at) == nxt and at.query_params["post"] == str(ids[2])
    assert [h.value for h in at.subheader] == [f"Post {ids[2]}"]
    assert "Shown read-only: decided." in [c.value for c in at.caption]
    at.button(key="review_back").click().run()
    assert held_post(at) == nxt and at.query_params["post"] == str(nxt)
    assert [h.value for h in at.subheader] == [f"Post {nxt}"]


def test_earlier_decisions_are_listed_for_undo(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    ids = queued_posts(sqlite_desk, tmp_path, 4)
    at = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", SECOND_REVIEW_SHARE="0")
    at.button(key="review_next").click().run()
    decided = []
    for _ in range(3):
        decided.append(held_post(at))
        at.button(key="review_confirm").click().run()
    meanwhile = held_post(at)
    assert sorted([*decided, meanwhile]) == ids
    assert at.button(key="review_undo").label == f"Undo confirm of post {decided[2]}"
    confirms = review_events(sqlite_desk, "confirm")
    earlier = [b for b in at.button if b.key and b.key.startswith("review_undo_")]
    assert [b.label for b in earlier] == [f"Undo confirm of post {decided[1]}", f"Undo confirm of post {decided[0]}"]
    assert [b.key for b in earlier] == [f"review_undo_{confirms[1].id}", f"review_undo_{confirms[0].id}"]
    earlier[1].click().run()  # the oldest, first: the post held meanwhile goes back
    assert held_post(at) == decided[0] and post_status(sqlite_desk, meanwhile) == "queued"
    assert at.button(key="review_undo").label == f"Undo confirm of post {decided[2]}"
    at.button(key="review_undo").click().run()  # U: the newest
    assert held_post(at) == decided[2] and post_status(sqlite_desk, decided[0]) == "queued"
    assert at.button(key="review_undo").label == f"Undo confirm of post {decided[1]}"


def test_the_context_line_and_the_filters(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    ids = queued_posts(sqlite_desk, tmp_path, 3)  # violence_gore, fraud_spam, none
    at = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py")
    assert not any("filters" in t.value for t in at.text)
    at.session_state[REVIEW].flt = QueueFilter(violation=True, category="fraud_spam")  # what the Queue page sets
    at.button(key="review_next").click().run()
    assert held_post(at) == ids[1]
    texts = [t.value for t in at.text]
    assert texts[0] == (
        f"1 posts waiting under the Queue page's filters: category fraud_spam, violation · you hold post {ids[1]} "
        f"until {at.session_state[REVIEW].claim.lease_expires_at:%H:%M} UTC"
    )
    assert re.fullmatch(r"Waiting \d+ s", texts[2])  # the post's line, then how long it has waited


def test_a_failed_model_load_is_remembered_with_a_retry(sqlite_desk, monkeypatch, tmp_path: Path) -> None:
    """The model that cannot be loaded (here: the openai provider without its server's address)
    is said once and remembered for the session, with a button to try again; the panel stays open."""
    import review.inference

    loads: list[int] = []
    real_load = review.inference.load_provider

    def counted(settings):  # noqa: ANN001, ANN202 (the real loader, counted)
        loads.append(1)
        return real_load(settings)

    monkeypatch.setattr(review.inference, "load_provider", counted)
    ids = queued_posts(sqlite_desk, tmp_path, 1)
    at = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", PROVIDER="openai")
    at.button(key="review_next").click().run()
    at.session_state[f"review_chat:{ids[0]}"] = True
    at.run()
    assert not at.error  # nothing is loaded before the first question
    at.chat_input(key=f"chat_input:{ids[0]}").set_value("why?").run()
    failed = [e.value for e in at.error if e.value.startswith("The model cannot be loaded")]
    assert failed and "MODEL_BASE_URL" in failed[0] and at.session_state[f"review_chat:{ids[0]}"]
    assert len(loads) == 1
    at.run()  # remembered: still said, without a question, and not loaded again
    assert [e.value for e in at.error] == failed and len(loads) == 1
    at.chat_input(key=f"chat_input:{ids[0]}").set_value("and now?").run()
    assert len(loads) == 1  # nor for another question
    at.button(key="review_model_retry").click().run()
    assert at.button(key="review_model_retry") and [e.value for e in at.error] == failed  # tried again: still failing
    assert len(loads) == 2


def test_each_new_post_scrolls_to_the_top_and_shows_no_none(sqlite_desk, monkeypatch) -> None:
    """A post without images (and a verdict without a rationale) shows no "None" anywhere; each
    post carries its own scroll-to-top script, so the browser runs it once per post."""
    ids = queued_posts_with_verdicts(sqlite_desk, ["none", "fraud_spam"])
    at = open_app(monkeypatch, sqlite_desk, "moderator", "pages/review.py", SECOND_REVIEW_SHARE="0")
    at.button(key="review_next").click().run()
    first = held_post(at)

    def scripts() -> list[str]:
        return [e.value for e in at.get("html") if "scrollTop = 0" in e.value]

    assert len(scripts()) == 1 and f"post {first} " in scripts()[0]
    shown = [e.value for kind in ("text", "caption", "markdown", "info", "warning", "success") for e in at.get(kind)]
    shown += [b.label for b in at.button]
    assert not [s for s in shown if "None" in str(s)]
    assert any("This post has no images." in s for s in shown)
    at.button(key="review_confirm").click().run()
    assert held_post(at) in ids and held_post(at) != first
    assert len(scripts()) == 1 and f"post {held_post(at)} " in scripts()[0]

"""Review: take the next post of the queue (under the Queue page's filters), see it with the
model's verdict, and decide it — keyboard first.

Keys (shown on the buttons): N next post, Y confirm the verdict, O overturn with the label
chosen on the page, E escalate (the note is its reason, required), S skip, V reveal blurred
images, U undo the last decision, H history; each policy category's own key (prompts/policy.toml)
picks it, Shift+1/2/3 the severity. Nothing is preselected: O before a label is chosen saves
nothing, asks for the label and moves the focus to the categories; the overturn is then saved
as soon as the label is complete (O, then 0 records "no violation"). Single-key shortcuts do not
fire while typing in the note or the chat.

A claim is a 10-minute lease in the database (review.decisions); every action on this page
renews it when less than 8 minutes are left, so an active moderator keeps the post and an
abandoned one goes back to the queue. After a decision the next post is claimed at once.
"""

from __future__ import annotations

import time
from dataclasses import replace
from functools import partial

import pandas as pd
import streamlit as st

from pages._common import (
    HIDDEN_BADGE,
    allowed_or_stop,
    chosen_label,
    current_actor,
    current_desk,
    guarded,
    label_picker,
    missing_choice,
    move_focus,
    revealed_all,
    show_escalation,
    show_history,
    show_media,
    show_verdict,
    user_preferences,
    verdict_details,
)
from review.auth import Permission
from review.browse import PostRow, get_posts
from review.decisions import (
    ClaimLost,
    Decision,
    EscalationReasonMissing,
    blind_for,
    claim,
    decide,
    held_claim,
    new_idempotency_key,
    release,
    renew,
    undo,
)
from review.errors import ReviewError
from review.followup import MAX_QUESTION_CHARS, Turn, ask, conversation_json, load_post
from review.inference import load_provider
from review.policy import load_policy
from review.queue import ANY, QueueFilter, cluster_post_ids, queue_count

CLAIM = "review_claim"  # the Claim being reviewed
STARTED = "review_started"  # monotonic time the post was first shown (time spent)
KEY = "review_key"  # idempotency key of the decision on the current claim
LAST = "review_last"  # (event id, post id, action) of this session's last decision
FILTER = "queue_filter"  # set on the Queue page
OPEN = "review_open"  # a post id the Queue page asks this page to open
SKIPPED = "review_skipped"  # posts skipped in this session: Next does not hand them straight back
MAX_SKIPPED = 200
NOTHING_FREE = "review_nothing_free"  # the last "Next" found no free post
FLASH = "review_flash"  # (kind, message) to show once on the next run
PENDING = "review_pending"  # post id whose overturn waits for its label (O pressed before choosing)
NO_REASON = "review_no_reason"  # post id whose escalation was refused for want of a reason
FOCUS = "review_focus"  # (container key, nonce): where the keyboard focus goes on the next run
MAX_SIMILAR = 20  # near duplicates listed
RENEW_BELOW = 8 * 60  # seconds of lease left under which an action renews it

desk = current_desk()
actor = current_actor()
allowed_or_stop(actor, Permission.REVIEW, "review posts")
policy = load_policy()
flt: QueueFilter = st.session_state.get(FILTER, ANY)


def hold(new_claim) -> None:  # type: ignore[no-untyped-def]
    for prompt in (PENDING, NO_REASON, FOCUS):
        st.session_state.pop(prompt, None)
    st.session_state[CLAIM] = new_claim
    st.session_state[STARTED] = time.monotonic()
    st.session_state[KEY] = new_idempotency_key()


def take_next(*, leave_out: tuple[int, ...] = ()) -> None:
    """Claim the next post under the filters, leaving out the ones skipped in this session."""
    try:
        taken = claim(desk.sessions, actor, flt=flt, exclude=[*st.session_state.get(SKIPPED, ()), *leave_out])
    except ReviewError as exc:
        taken = None
        st.session_state[FLASH] = ("error", str(exc))
    hold(taken)
    st.session_state[NOTHING_FREE] = taken is None


def drop_claim(message: str) -> None:
    st.session_state[CLAIM] = None
    st.warning(message)


st.title("Review")

# A post opened from the Queue page, or the claim this moderator already holds (after a reload).
if (wanted := st.session_state.pop(OPEN, None)) is not None:
    current = st.session_state.get(CLAIM)
    if current is None or current.post_id != wanted:
        if current is not None:
            release(desk.sessions, actor, current.post_id)
        opened = claim(desk.sessions, actor, wanted)
        if opened is None:
            st.warning(f"Post {wanted} is not free for you to review (taken, decided, or not in your queue).")
        hold(opened)
elif st.session_state.get(CLAIM) is None:
    with desk.sessions() as session:
        resumed = held_claim(session, actor)
    if resumed is not None:
        hold(resumed)
        st.info(f"You were reviewing post {resumed.post_id}; it is yours again.")

current = st.session_state.get(CLAIM)
if current is not None:  # any action on the page counts as activity: keep the lease
    left = (current.lease_expires_at - pd.Timestamp.now(tz="UTC").to_pydatetime()).total_seconds()
    if left < RENEW_BELOW:
        try:
            expires = renew(desk.sessions, actor, current.post_id)
            st.session_state[CLAIM] = replace(current, lease_expires_at=expires)
            current = st.session_state[CLAIM]
        except ClaimLost as exc:
            drop_claim(str(exc))
            current = None


def undo_last() -> None:
    last = st.session_state.get(LAST)
    if last is None:
        return
    event_id, post_id, action = last
    holding = st.session_state.get(CLAIM)
    try:
        reopened = undo(desk.sessions, actor, event_id)
    except ReviewError as exc:
        st.session_state[FLASH] = ("error", str(exc))
        return
    if holding is not None and holding.post_id != post_id:
        release(desk.sessions, actor, holding.post_id)
    st.session_state[LAST] = None
    hold(reopened)
    st.session_state[FLASH] = ("info", f"Undone: your {action} of post {post_id}. Decide it again.")


with desk.sessions() as session:
    waiting = queue_count(session, actor, flt)

top = st.columns([2, 2, 2, 4])
if top[0].button("Next post", key="review_next", shortcut="N", type="primary" if current is None else "secondary"):
    if current is not None:  # N while holding a post: give it back and take another one
        release(desk.sessions, actor, current.post_id)
    take_next(leave_out=(current.post_id,) if current is not None else ())
    st.rerun()
last = st.session_state.get(LAST)
top[1].button(
    "Undo last" if last is None else f"Undo {last[2]} of post {last[1]}",
    key="review_undo",
    shortcut="U",
    disabled=last is None,
    on_click=guarded(undo_last),
)
if top[2].button("Release post", key="review_release", disabled=current is None):
    release(desk.sessions, actor, current.post_id)
    st.session_state[CLAIM] = None
    st.rerun()
top[3].caption(
    f"{waiting:,} posts waiting" + ("" if flt == ANY else " under the Queue page's filters")
    + (f" · you hold post {current.post_id} until {current.lease_expires_at:%H:%M} UTC" if current else "")
)  # fmt: skip

flash = st.session_state.pop(FLASH, None)
if flash:
    (st.error if flash[0] == "error" else st.info)(flash[1])

if current is None:
    skipped = st.session_state.get(SKIPPED, [])
    if not st.session_state.get(NOTHING_FREE):
        st.info("Press **N** (Next post) to take the next post of the queue.")
    elif waiting == 0:
        st.success("Nothing left to review under these filters.")
    else:
        why = "other moderators are reviewing them" + (", or you skipped them in this session" if skipped else "")
        st.info(f"No post is free for you under these filters: {why}. Press **N** to look again.")
        if skipped and st.button(f"Show the {len(skipped)} posts I skipped again", key="review_unskip"):
            st.session_state[SKIPPED] = []
            st.rerun()
    st.stop()

with desk.sessions() as session:
    post: PostRow | None = get_posts(session, [current.post_id], policy).get(current.post_id)
    blind = blind_for(session, actor, current.post_id)
if post is None:
    drop_claim(f"Post {current.post_id} no longer exists.")
    st.stop()

hide_verdict = blind and desk.settings.second_review_hide_verdict
verdict = post.verdict
usable = verdict is not None and verdict.usable


def focus_on(container_key: str) -> None:
    st.session_state[FOCUS] = (container_key, time.monotonic_ns())


def act(post_id: int, decision: Decision, blind: bool) -> None:
    """Record the decision on ``post_id``; then the next post of the queue is taken. Runs as a
    button callback, with the page's state as it is now: a second key press that arrives
    after the next post was taken finds another post held and does nothing. An overturn whose
    label is not complete saves nothing: it waits for the label (see ``picked``)."""
    held = st.session_state.get(CLAIM)
    if held is None or held.post_id != post_id:
        return
    category = st.session_state.get(f"category:{post_id}")
    label = chosen_label(category, st.session_state.get(f"severity:{post_id}"))
    if decision is Decision.OVERTURN and label is None:
        st.session_state[PENDING] = post_id
        focus_on("review_categories" if category is None else "review_severity")
        return
    note = st.session_state.get(f"note:{post_id}", "")
    spent = int((time.monotonic() - st.session_state.get(STARTED, time.monotonic())) * 1000)
    try:
        event = decide(
            desk.sessions, actor, post_id, decision, label=label if decision is Decision.OVERTURN else None,
            note=note, time_spent_ms=spent, idempotency_key=st.session_state.get(KEY), policy=policy,
            share=desk.settings.second_review_share, raters=desk.settings.qa_raters,
        )  # fmt: skip
    except EscalationReasonMissing:
        st.session_state[NO_REASON] = post_id
        focus_on("review_note")
        return
    except ClaimLost as exc:
        st.session_state[CLAIM] = None
        st.session_state[FLASH] = ("error", str(exc))
        return
    except ReviewError as exc:
        st.session_state[FLASH] = ("error", str(exc))
        return
    st.session_state[LAST] = (event.id, post_id, event.action)
    if decision is Decision.SKIP:
        st.session_state[SKIPPED] = [*st.session_state.get(SKIPPED, []), post_id][-MAX_SKIPPED:]
    # in a blind review, "confirm" or "overturn" would tell how the hidden verdict compares
    what = "decision" if blind and event.action in ("confirm", "overturn") else event.action
    st.session_state[FLASH] = ("info", f"Post {post_id}: {what} saved. Undo with U.")
    take_next()


def picked(post_id: int, blind: bool) -> None:
    """After a category or severity is picked: an overturn waiting for its label (O came
    first) is saved once the label is complete, or asks for what is still missing."""
    if st.session_state.get(PENDING) == post_id:
        act(post_id, Decision.OVERTURN, blind)


@st.cache_resource(show_spinner="Loading the model …")
def chat_provider(settings):  # type: ignore[no-untyped-def]
    return load_provider(settings)


def ask_the_model(post_id: int, hide_verdict: bool) -> None:
    """A conversation about the post with the verdict model (review.followup), shown as plain
    text; without the verdict when it is hidden for a blind second review."""
    turns: list[Turn] = st.session_state.setdefault(f"chat:{post_id}", [])
    for turn in turns:
        with st.chat_message("user"):
            st.text(turn.question)
        with st.chat_message("assistant"):
            st.text(turn.answer if turn.error is None else f"(no answer: {turn.error})")
    question = st.chat_input("Ask about this post", key=f"chat_input:{post_id}", max_chars=MAX_QUESTION_CHARS)
    try:
        provider = chat_provider(desk.settings) if question or turns else None
    except ReviewError as exc:
        st.error(f"The model cannot be loaded: {exc}")
        return
    if question and provider is not None:
        with desk.sessions() as session:
            context = load_post(session, desk.settings, post_id)
        if hide_verdict:
            context = replace(context, verdict_json=None)
        try:
            with st.spinner("The model is answering …"):
                turns.append(ask(provider, context, turns, question))
        except ReviewError as exc:
            st.error(str(exc))
        st.rerun()
    if turns and provider is not None:
        with desk.sessions() as session:
            context = load_post(session, desk.settings, post_id)
        if hide_verdict:
            context = replace(context, verdict_json=None)
        st.download_button(
            "Download the conversation (JSON)",
            conversation_json(context, turns, provider),
            file_name=f"post-{post_id}-conversation.json",
            mime="application/json",
            key=f"chat_download:{post_id}",
        )


images, side = st.columns([2, 3], gap="medium")
with side:
    st.subheader(f"Post {post.id}")
    posted = f"{post.created_at:%Y-%m-%d %H:%M} UTC" if post.created_at else "—"
    st.text(f"{post.source} · {post.external_id} · by {post.author or '—'} · posted {posted}")
    if blind:
        hidden = "the first decision and the model's verdict are" if hide_verdict else "the first decision is"
        st.info(f"Second review: decide on your own; {hidden} hidden.")
    elif post.status == "escalated":
        show_escalation(desk, actor, post.id)
    with st.container(border=True):
        st.text(post.text or "(no text)")
    if hide_verdict:
        st.caption("Model verdict hidden for this second review.")
    else:
        show_verdict(verdict)

    # The label is the moderator's own choice: nothing is preselected (a preset once recorded
    # "sexual, severity 2" or "no violation" when O was pressed alone), and in a blind second
    # review no button stands out, so the page tells nothing of the hidden verdict.
    if st.session_state.get(PENDING) == post.id:
        category = st.session_state.get(f"category:{post.id}")
        st.warning(f"Overturn: nothing saved yet. {missing_choice(category)}", icon="⌨️")
    label_picker(
        policy, f"category:{post.id}", f"severity:{post.id}", prefix="review",
        title="Your label" if hide_verdict else "Label for overturn (press the key on a category)",
        on_pick=partial(picked, post.id, blind),
    )  # fmt: skip

    buttons = st.columns(4)
    buttons[0].button(
        "Confirm", key="review_confirm", shortcut="Y", type="primary", disabled=not usable or hide_verdict,
        on_click=guarded(act), args=(post.id, Decision.CONFIRM, blind), help="The model's verdict is right.",
        width="stretch",
    )  # fmt: skip
    buttons[1].button(
        "Overturn" if not hide_verdict else "Decide",
        key="review_overturn", shortcut="O", on_click=guarded(act), args=(post.id, Decision.OVERTURN, blind),
        help="Record the label chosen above (O first: it waits for your choice).", width="stretch",
    )  # fmt: skip
    buttons[2].button(
        "Escalate", key="review_escalate", shortcut="E", on_click=guarded(act),
        args=(post.id, Decision.ESCALATE, blind),
        help="For a lead to decide; the note is the reason (required).", width="stretch",
    )  # fmt: skip
    buttons[3].button(
        "Skip", key="review_skip", shortcut="S", on_click=guarded(act), args=(post.id, Decision.SKIP, blind),
        help="Back to the queue.", width="stretch",
    )  # fmt: skip
    if st.session_state.get(NO_REASON) == post.id:
        st.warning("Escalation: nothing saved. Write the reason in the note, then Escalate (Tab, then E).", icon="⌨️")
    with st.container(key="review_note"):
        st.text_area("Note (optional; the reason when you escalate)", key=f"note:{post.id}", max_chars=2000, height=68)
    if (focus := st.session_state.pop(FOCUS, None)) is not None:
        move_focus(*focus)

    @st.dialog(f"History of post {post.id}", width="large")
    def history_dialog() -> None:
        show_history(desk, actor, post.id)

    extra = st.columns(4)
    if extra[0].button("History", key="review_history", shortcut="H", width="stretch"):
        history_dialog()
    flagged = any(m.blur for m in post.media) and user_preferences().blur_flagged
    if flagged and extra[1].button("Reveal images", key="review_reveal", shortcut="V", width="stretch"):
        st.session_state[revealed_all(post.id)] = True
        st.rerun()

    if verdict is not None and not hide_verdict and (details := verdict_details(verdict)):
        with st.expander("Verdict details"):
            st.text(details)
    with desk.sessions() as session:
        similar = [i for i in cluster_post_ids(session, post.id, limit=MAX_SIMILAR + 1) if i != post.id]
        similar_posts = get_posts(session, similar[:MAX_SIMILAR], policy)
    if similar:
        more = "+" if len(similar) > MAX_SIMILAR else ""
        with st.expander(f"Near duplicates ({min(len(similar), MAX_SIMILAR)}{more})"):
            rows = [similar_posts[i] for i in similar[:MAX_SIMILAR] if i in similar_posts]
            st.dataframe(
                pd.DataFrame(
                    {
                        "post": [r.id for r in rows],
                        "status": [r.status.replace("_", " ") for r in rows],
                        "verdict": [
                            HIDDEN_BADGE if hide_verdict else r.verdict.badge if r.verdict else "not scored"
                            for r in rows
                        ],
                        "text": [" ".join(r.text.split())[:120] for r in rows],
                    }
                ),
                hide_index=True,
            )
    with st.expander("Ask the model about this post"):
        ask_the_model(post.id, hide_verdict)

with images:
    if not post.media:
        st.caption("This post has no images.")
    for i, m in enumerate(post.media, start=1):
        show_media(desk, post.id, i, m, blind=hide_verdict)

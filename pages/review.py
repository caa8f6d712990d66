"""Review: take the next post of the queue (under the Queue page's filters), see it with the
model's verdict, and decide it — keyboard first.

Keys (shown on the buttons): N next post, Y confirm the verdict, O overturn with the label
chosen on the page, E escalate (the note is its reason, required), S skip (the post is not
offered again for ``skip_defer_minutes``), V reveal blurred images, U undo the newest of the
session's last decisions (the older ones are listed under "Earlier"), H history; each policy
category's own key (prompts/policy.toml) picks it, Shift+1/2/3 the severity. Nothing is
preselected: O before a label is chosen saves nothing, asks for the label and moves the focus to
the categories; the overturn is then saved as soon as the label is complete (O, then 0 records
"no violation"). Single-key shortcuts do not fire while typing in the note or the chat.

The images are sent before the decision buttons (their column is filled first), so no
shortcut can act on a post whose picture has not reached the browser.

A claim is a 10-minute lease in the database (review.decisions); every action on this page
renews it when less than 8 minutes are left, and while the post is on screen a heartbeat renews
it every minute for up to ``reading_max_minutes`` after the last action, so a moderator reading
keeps the post and an abandoned tab gives it back. After a decision the next post is claimed at
once. The address carries the post shown (``?post=ID``): a reload or a shared link opens it.

This page is widgets and layout only: the working session (claim, resume, keep-alive, next,
skip, undo, the Queue page's hand-off) is review.workbench.ReviewSession, whose state lives in
one session_state entry (pages._common.review_state), and what a blind second reviewer may see
is decided in the core (review.visibility).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import partial

import pandas as pd
import streamlit as st

from db.models import as_id
from pages._common import (
    HIDDEN_BADGE,
    allowed_or_stop,
    chosen_label,
    current_actor,
    current_desk,
    guarded,
    label_picker,
    leave_beacon,
    missing_choice,
    move_focus,
    revealed_all,
    review_state,
    show_escalation,
    show_history,
    show_ignored,
    show_media,
    show_missing_images,
    show_post_body,
    show_verdict,
    signed_in,
    user_preferences,
    verdict_details,
)
from review.auth import Permission
from review.config import Settings
from review.decisions import Decision
from review.errors import ReviewError
from review.followup import MAX_QUESTION_CHARS, Turn, ask, conversation_json
from review.inference import load_provider
from review.inference.base import Provider
from review.policy import load_policy
from review.text import one_line
from review.workbench import (
    HEARTBEAT_SECONDS,
    Outcome,
    PostReports,
    ReviewSession,
    Surroundings,
    filter_words,
    for_how_long,
)

MAX_SIMILAR = 20  # near duplicates listed
MAX_REPORT_REASONS = 5  # kinds and reasons of reports named; the rest are counted
FOCUS_TARGETS = {"label": "review_categories", "severity": "review_severity", "reason": "review_note"}
MODEL_FAILED = "review_model_failed"  # session_state: why the model could not be loaded (asked again on request)

desk = current_desk()
actor = current_actor()
allowed_or_stop(actor, Permission.REVIEW, "review posts")
policy = load_policy()
work = ReviewSession(desk.sessions, actor, desk.settings, policy, review_state())
state = work.state


def linked_post() -> int | None:
    """The post the page's address names (``?post=ID``: a reload, a shared link, the Accuracy
    page's drill-down); None when there is none or it is not a post id."""
    value = st.query_params.get("post")
    post_id = None if value is None else as_id(value)
    if value is not None and post_id is None:
        st.query_params.pop("post", None)
        show_ignored([f"Ignored post={one_line(value, 40)} in the link: not a post id."])
    return post_id


st.title("Review")
# the post the Queue page handed over or the address names, or the claim held after a reload; kept alive
work.arrive(link=linked_post())
current = state.claim
shown = state.viewing if state.viewing is not None else None if current is None else current.post_id
if shown is None:
    st.query_params.pop("post", None)
elif st.query_params.get("post") != str(shown):
    st.query_params["post"] = str(shown)  # a reload or a copied link returns to this post
state.address = shown  # what the address says now: only a change made elsewhere is a link
leave_beacon(None if current is None else current.post_id)  # a closed tab gives its post back soon

with desk.sessions() as session:
    waiting = work.waiting(session)

top = st.columns([2, 4, 2, 2])
if top[0].button(
    "Next post", key="review_next", shortcut="N", type="primary" if current is None else "secondary", width="stretch"
):
    work.next()
    st.rerun()
undoable = work.undoable
top[1].button(
    undoable[0].label if undoable else "Undo",
    key="review_undo",
    shortcut="U",
    disabled=not undoable,
    on_click=guarded(work.undo),
    width="stretch",
)
with top[2].popover(f"Earlier ({len(undoable[1:])})", disabled=len(undoable) < 2, width="stretch"):
    st.caption("Your earlier decisions in this session, newest first")
    for past in undoable[1:]:
        st.button(past.label, key=f"review_undo_{past.event_id}", on_click=guarded(work.undo), args=(past.event_id,))
if top[3].button("Release post", key="review_release", disabled=current is None, width="stretch"):
    work.release()
    st.rerun()
filters = filter_words(state.flt)
st.text(  # the filters name sources and models: plain text
    f"{waiting:,} posts waiting" + (f" under the Queue page's filters: {filters}" if filters else "")
    + (f" · you hold post {current.post_id} until {current.lease_expires_at:%H:%M} UTC" if current else "")
)  # fmt: skip

for notice in state.take_notices():
    {"error": st.error, "warning": st.warning, "info": st.info}[notice.kind](notice.text)


def leave_view() -> None:
    """Back from a linked post shown read-only (its link leaves the address too)."""
    st.query_params.pop("post", None)
    work.stop_viewing()


def show_read_only() -> None:
    """A post a link named that this moderator cannot take (decided, or someone else's), as the
    Posts page shows it, with its history: nothing on it decides."""
    with desk.sessions() as session:
        seen = work.viewed(session)
    back = "Close" if current is None else f"Back to post {current.post_id}"
    st.button(back, key="review_back", on_click=leave_view)
    if seen is None:
        return
    images, side = st.columns([2, 3], gap="medium")
    with images:
        for i, m in enumerate(seen.media, start=1):
            show_media(desk, seen.id, i, m)
    with side:
        st.subheader(f"Post {seen.id}")
        st.caption(f"Shown read-only: {seen.status.replace('_', ' ')}.")
        posted = f"{seen.created_at:%Y-%m-%d %H:%M} UTC" if seen.created_at else "—"
        st.text(f"{seen.source} · {seen.external_id} · by {seen.author or '—'} · posted {posted}")
        show_post_body(desk, actor, seen)
        show_history(desk, actor, seen.id)


if state.viewing is not None:
    show_read_only()
    st.stop()

if current is None:
    if not state.nothing_free:
        st.info("Press **N** (Next post) to take the next post of the queue.")
    elif waiting == 0:
        st.success("Nothing left to review under these filters.")
    else:
        skipped = work.deferred()
        minutes = desk.settings.skip_defer_minutes
        when = f"in the last {minutes} minutes" if minutes else "in this session"
        why = "other moderators are reviewing them" + (f", or you skipped them {when}" if skipped else "")
        st.info(f"No post is free for you under these filters: {why}. Press **N** to look again.")
        if skipped and st.button(f"Show the {len(skipped)} posts I skipped again", key="review_unskip"):
            work.unskip()
            st.rerun()
    st.stop()

with desk.sessions() as session:
    post = work.post(session)
    sight = work.sight(session)
if post is None:
    state.claim = None
    st.warning(f"Post {current.post_id} no longer exists.")
    st.stop()

blind, hide_verdict = sight.blind, sight.verdict_hidden
verdict = post.verdict
usable = verdict is not None and verdict.usable


def act(post_id: int, decision: Decision) -> None:
    """Record the decision on ``post_id`` with the label and note chosen on the page (a button
    callback); the next post is taken at once. An overturn whose label is not complete waits
    for it (see ``picked``), and the focus goes where the choice is missing."""
    category = st.session_state.get(f"category:{post_id}")
    label = chosen_label(category, st.session_state.get(f"severity:{post_id}"))
    outcome = work.decide(post_id, decision, label, st.session_state.get(f"note:{post_id}", ""))
    if outcome is Outcome.NEEDS_LABEL:
        state.focus = "label" if category is None else "severity"
    elif outcome is Outcome.NEEDS_REASON:
        state.focus = "reason"


def picked(post_id: int) -> None:
    """After a category or severity is picked: an overturn waiting for its label (O came
    first) is saved once the label is complete, or asks for what is still missing."""
    if state.awaiting_label == post_id:
        act(post_id, Decision.OVERTURN)


def show_reports(reports: PostReports) -> None:
    """The platform's reports on the post, in one line ("Reported 5× — user report: spam ×3,
    classifier: nsfw ×2"; the reasons are the platform's text: shown plain), and, when reports
    sent a decided post back to the queue, that it is back and why. Nothing when there are none."""
    if reports.requeue is not None:
        back = reports.requeue
        st.info(
            f"Back in the queue: {back.reports:,} report{'s' if back.reports != 1 else ''} after its decision "
            f"on {back.decided_at:%Y-%m-%d %H:%M} UTC.",
            icon="🚩",
        )
    if not reports.summaries:
        return
    named = [
        f"{s.kind.replace('_', ' ')}{': ' + one_line(s.reason, 60) if s.reason else ''} ×{s.count:,}"
        for s in reports.summaries[:MAX_REPORT_REASONS]
    ]
    more = len(reports.summaries) - MAX_REPORT_REASONS
    st.text(f"Reported {reports.total:,}× — {', '.join(named)}" + (f" and {more} more" if more > 0 else ""))


def show_surroundings(around: Surroundings) -> None:
    """Time in queue, near-duplicate count and, for a post back in the queue, its standing
    decision (hidden by the core from a blind second reviewer), in one plain line."""
    parts = [f"Waiting {for_how_long((datetime.now(UTC) - around.waiting_since).total_seconds())}"]
    if around.near_duplicates:
        n = f"{around.near_duplicates}{'+' if around.more_duplicates else ''}"
        parts.append(f"{n} near duplicate{'s' if n != '1' else ''}")
    last = around.last_decision
    if last is not None:
        parts.append(
            f"last decided: {last.action} ({last.label}) by {last.who or 'someone'}, {last.at:%Y-%m-%d %H:%M} UTC"
        )
    st.text(" · ".join(parts))


@st.cache_resource(show_spinner="Loading the model …")
def chat_provider(settings: Settings) -> Provider:
    return load_provider(settings)


def loaded_model() -> Provider | None:
    """The follow-up model, loaded once per process; a failure is remembered for this browser
    session (shown with a button to try again), not retried on every question."""
    failed = st.session_state.get(MODEL_FAILED)
    if failed is None or st.session_state.get("review_model_retry"):  # the retry button's click
        try:
            provider = chat_provider(desk.settings)
        except ReviewError as exc:
            st.session_state[MODEL_FAILED] = failed = str(exc)
        else:
            st.session_state.pop(MODEL_FAILED, None)
            return provider
    st.error(f"The model cannot be loaded: {failed}")
    st.button("Try loading the model again", key="review_model_retry")
    return None


def ask_the_model(post_id: int) -> None:
    """A conversation about the post with the verdict model (review.followup), shown as plain
    text; the core leaves out the verdict when it is hidden for a blind second review. The
    conversation is drawn after the question is answered, in the same run (no rerun), so the
    answer or the error shows at once."""
    turns: list[Turn] = st.session_state.setdefault(f"chat:{post_id}", [])
    conversation = st.container()
    question = st.chat_input("Ask about this post", key=f"chat_input:{post_id}", max_chars=MAX_QUESTION_CHARS)
    with conversation:  # a load failure and its retry above the input, with the conversation
        provider = loaded_model() if question or turns or MODEL_FAILED in st.session_state else None
    failed = None
    if question and provider is not None:
        with desk.sessions() as session:
            context = work.conversation(session)
        try:
            with st.spinner("The model is answering …"):
                turns.append(ask(provider, context, turns, question))
        except ReviewError as exc:
            failed = str(exc)
    with conversation:
        for turn in turns:
            with st.chat_message("user"):
                st.text(turn.question)
            with st.chat_message("assistant"):
                st.text(turn.answer if turn.error is None else f"(no answer: {turn.error})")
        if failed is not None:
            st.error(failed)
    if turns and provider is not None:
        with desk.sessions() as session:
            context = work.conversation(session)
        st.download_button(
            "Download the conversation (JSON)",
            conversation_json(context, turns, provider),
            file_name=f"post-{post_id}-conversation.json",
            mime="application/json",
            key=f"chat_download:{post_id}",
        )


def scroll_to_top(post_id: int) -> None:
    """Scroll the page to the top once per post: the script's text names the post, so the
    browser runs it again only when another post is shown."""
    st.html(
        f"""<script>/* post {post_id} */
        (() => {{
          const top = () => {{
            document.querySelectorAll('[data-testid="stAppScrollToBottomContainer"], [data-testid="stMain"]')
              .forEach((el) => {{ el.scrollTop = 0; }});
            window.scrollTo(0, 0);
          }};
          top();
          setTimeout(top, 100);
        }})();
        </script>""",
        unsafe_allow_javascript=True,
    )


# While a picture of the post shown is still loading (or not yet created: the page says how many
# there are, window.reviewPictures), the browser holds back the page's single-key
# shortcuts and clicks on the decision buttons: the buttons arrive after the images (the images'
# column is filled first) but a picture still takes a moment to load and decode, and no decision
# may be taken on a post whose picture the moderator could not see. Installed once per tab; it
# acts only while the Review page's buttons are on screen, and never on typing in a text field.
PICTURE_FIRST = """<script>(() => {
  if (window.reviewPictureFirst) return;
  window.reviewPictureFirst = true;
  const live = (el) => !el.closest('[data-stale="true"]');
  const reviewing = () => [...document.querySelectorAll('.st-key-review_confirm')].some(live);
  const loading = () => {
    if (!reviewing()) return false;
    const box = [...document.querySelectorAll('.st-key-review_images')].find(live);
    const pictures = box ? [...box.querySelectorAll('img')].filter(live) : [];
    return pictures.length < (window.reviewPictures || 0) || pictures.some((i) => !i.complete);
  };
  window.reviewPicturesLoading = loading;  // the one rule, also for the browser tests and bench/floor.py
  const typing = (t) => t && (t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName));
  const hold = (e) => { e.preventDefault(); e.stopImmediatePropagation(); };
  window.addEventListener('keydown', (e) => {
    if (!e.ctrlKey && !e.metaKey && !e.altKey && !typing(e.target) && loading()) hold(e);
  }, true);
  const deciding = '.st-key-review_confirm, .st-key-review_overturn, .st-key-review_escalate, .st-key-review_skip';
  window.addEventListener('click', (e) => {
    if (e.target.closest && e.target.closest(deciding) && loading()) hold(e);
  }, true);
})();</script>"""


@st.fragment(run_every=HEARTBEAT_SECONDS)
def heartbeat() -> None:
    """While the post is on screen: renew its lease every minute (up to ``reading_max_minutes``
    after the last action); when the claim is found lost, or the sign-in session has ended (an
    admin deactivated the account, a sign-out in another tab), run the whole page to say so."""
    if signed_in(desk, touch=False) is None or work.heartbeat():
        st.rerun(scope="app")


post_id = post.id
scroll_to_top(post_id)
st.html(PICTURE_FIRST, unsafe_allow_javascript=True)
heartbeat()
# The images' column is filled first: the browser gets the pictures before any button that
# decides (Y/O/E/S), so no decision is taken on a post whose images have not arrived.
images, side = st.columns([2, 3], gap="medium")
with images, st.container(key="review_images"):
    if not post.media:
        st.caption("This post has no images.")
    show_missing_images(post)
    pictures = sum(show_media(desk, post.id, i, m) for i, m in enumerate(post.media, start=1))
    # how many pictures the guard (PICTURE_FIRST) waits for: an <img> is created a moment after
    # its element arrives, so counting the ones loaded would not do
    st.html(f"<script>/* post {post.id} */ window.reviewPictures = {pictures};</script>", unsafe_allow_javascript=True)

with side:
    st.subheader(f"Post {post.id}")
    posted = f"{post.created_at:%Y-%m-%d %H:%M} UTC" if post.created_at else "—"
    st.text(f"{post.source} · {post.external_id} · by {post.author or '—'} · posted {posted}")
    with desk.sessions() as session:
        show_surroundings(work.surroundings(session))
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
    with desk.sessions() as session:
        reports = work.reports(session)
    show_reports(reports)

    # The label is the moderator's own choice: nothing is preselected (a preset once recorded
    # "sexual, severity 2" or "no violation" when O was pressed alone), and in a blind second
    # review no button stands out, so the page tells nothing of the hidden verdict.
    if state.awaiting_label == post.id:
        category = st.session_state.get(f"category:{post.id}")
        st.warning(f"Overturn: nothing saved yet. {missing_choice(category)}", icon="⌨️")
    label_picker(
        policy, f"category:{post.id}", f"severity:{post.id}", prefix="review",
        title="Your label" if hide_verdict else "Label for overturn (press the key on a category)",
        on_pick=partial(picked, post.id),
    )  # fmt: skip

    buttons = st.columns(4, gap="xsmall")  # about 130 px each at 1280 px with the sidebar open: labels uncut
    buttons[0].button(
        "Confirm", key="review_confirm", shortcut="Y", type="primary", disabled=not usable or hide_verdict,
        on_click=guarded(act), args=(post.id, Decision.CONFIRM), help="The model's verdict is right.",
        width="stretch",
    )  # fmt: skip
    buttons[1].button(
        "Overturn" if not hide_verdict else "Decide",
        key="review_overturn", shortcut="O", on_click=guarded(act), args=(post.id, Decision.OVERTURN),
        help="Record the label chosen above (O first: it waits for your choice).", width="stretch",
    )  # fmt: skip
    buttons[2].button(
        "Escalate", key="review_escalate", shortcut="E", on_click=guarded(act), args=(post.id, Decision.ESCALATE),
        help="For a lead to decide; the note is the reason (required).", width="stretch",
    )  # fmt: skip
    buttons[3].button(
        "Skip", key="review_skip", shortcut="S", on_click=guarded(act), args=(post.id, Decision.SKIP),
        help="Back to the queue.", width="stretch",
    )  # fmt: skip
    if state.reason_missing == post.id:
        st.warning("Escalation: nothing saved. Write the reason in the note, then Escalate (Tab, then E).", icon="⌨️")
    with st.container(key="review_note"):
        st.text_area("Note (optional; the reason when you escalate)", key=f"note:{post.id}", max_chars=2000, height=68)
    if state.focus is not None:
        move_focus(FOCUS_TARGETS[state.focus], time.monotonic_ns())  # a new nonce: the script runs again
        state.focus = None

    @st.dialog(f"History of post {post_id}", width="large")
    def history_dialog() -> None:
        show_history(desk, actor, post_id)

    extra = st.columns(3)
    if extra[0].button("History", key="review_history", shortcut="H", width="stretch"):
        history_dialog()
    revealed = bool(st.session_state.get(revealed_all(post.id)))
    flagged = any(m.blur for m in post.media) and user_preferences().blur_flagged and not revealed
    if flagged and extra[1].button("Reveal images", key="review_reveal", shortcut="V", width="stretch"):
        st.session_state[revealed_all(post.id)] = True
        st.rerun()

    if verdict is not None and (details := verdict_details(verdict)):
        with st.expander("Verdict details"):
            st.text(details)
    with desk.sessions() as session:
        similar, more = work.similar(session, MAX_SIMILAR)
    if similar:
        with st.expander(f"Near duplicates ({len(similar)}{'+' if more else ''})"):
            st.dataframe(
                pd.DataFrame(
                    {
                        "post": [r.id for r in similar],
                        "status": [r.status.replace("_", " ") for r in similar],
                        "verdict": [
                            HIDDEN_BADGE if r.verdict_hidden else r.verdict.badge if r.verdict else "not scored"
                            for r in similar
                        ],
                        "text": [" ".join(r.text.split())[:120] for r in similar],
                    }
                ),
                hide_index=True,
            )
    # its open state is kept (a question and its answer do not fold it), and it runs only when open
    chat = st.expander("Ask the model about this post", key=f"review_chat:{post.id}", on_change="rerun")
    with chat:
        if chat.open:
            ask_the_model(post.id)

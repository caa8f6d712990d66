"""Queue: the posts waiting for review in claim order, with filters, counts, blurred thumbnails
and verdict badges; open one for review, or (leads) decide many at once.

The filters set here are the ones the Review page's "Next" claims under, and they live in the URL
(review.queue.filter_params / filter_from_params: ``/queue?category=fraud_spam&violation=yes``), so
a lead can send a moderator a filtered queue; what a link cannot name is ignored with a warning.
Pages are keyset pages on (priority, id) (review.queue.queue_page), so the thousandth page costs
what the first does. Escalated posts show why they were escalated. A bulk decision is chosen,
never preset: an overturn needs its label picked (the categories' keys work here too), an
escalation a reason; its outcome and skipped posts stay on the page until the next one or Dismiss.
Leads can release another moderator's claim on the selected post (review.decisions.force_release:
a release event by the lead, with a note naming whose claim it was and why).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import cast

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from pages._common import (
    HIDDEN_BADGE,
    allowed_or_stop,
    chosen_label,
    current_actor,
    current_desk,
    label_picker,
    missing_choice,
    move_focus,
    request_address,
    review_state,
    show_error,
    show_ignored,
    thumbnail,
)
from review.auth import Permission
from review.browse import get_posts
from review.decisions import Decision, decide_bulk, escalations, force_release
from review.errors import ReviewError
from review.policy import load_policy
from review.queue import (
    ANY,
    MAX_AGE_HOURS,
    QueueFilter,
    category_counts,
    cluster_post_ids,
    filter_from_params,
    filter_params,
    queue_page,
)
from review.visibility import Viewer

CURSORS = "queue_cursors"  # keyset cursors of the pages before this one
URL_FILTER = "queue_url"  # the query parameters this page wrote last
BULK_ROUND = "queue_bulk_round"  # bulk decisions made: part of the table's key
BULK_CATEGORY = "bulk_category"  # the label picked for a bulk overturn (session state, no preset)
BULK_SEVERITY = "bulk_severity"
LISTED_AT = "queue_listed_at"  # when the run that drew the list read it
BULK_RESULT = "bulk_result"  # (decision, review.decisions.BulkResult) of the last bulk decision, until dismissed
DONE = {"confirm": "confirmed", "overturn": "overturned", "escalate": "escalated"}
PAGE_SIZES = (25, 50, 100)
ANY_LABEL = "any"

desk = current_desk()
actor = current_actor()
allowed_or_stop(actor, Permission.REVIEW, "see the review queue")
policy = load_policy()


def reset_paging() -> None:
    st.session_state[CURSORS] = [None]


# The three-way filters: widget key -> (QueueFilter field, its words for yes and no).
TRIS = {
    "q_violation": ("violation", "violation", "no violation"),
    "q_failure": ("model_failure", "only failures", "only usable verdicts"),
    "q_escalated": ("escalated", "only escalated", "not escalated"),
    "q_second": ("second_review", "only second reviews", "no second reviews"),
}


def tri(label: str, key: str, column: DeltaGenerator) -> bool | None:
    """A three-way filter: any / yes / no."""
    _, yes, no = TRIS[key]
    choice = column.selectbox(label, [ANY_LABEL, yes, no], key=key, on_change=reset_paging)
    return None if choice == ANY_LABEL else choice == yes


def show_filter(flt: QueueFilter) -> None:
    """Set the filter widgets to ``flt`` (before they are drawn)."""
    st.session_state["q_category"] = flt.category or ANY_LABEL
    for key, (name, yes, no) in TRIS.items():
        flag = getattr(flt, name)
        st.session_state[key] = ANY_LABEL if flag is None else yes if flag else no
    st.session_state["q_confidence"] = (
        flt.min_confidence or 0.0,
        1.0 if flt.max_confidence is None else flt.max_confidence,
    )
    st.session_state["q_source"] = flt.source or ""
    st.session_state["q_model"] = flt.model_id or ""
    st.session_state["q_prompt"] = flt.prompt_version or ""
    st.session_state["q_min_age"] = int(flt.min_age.total_seconds() // 3600) if flt.min_age else 0
    st.session_state["q_max_age"] = int(flt.max_age.total_seconds() // 3600) if flt.max_age else 0
    reset_paging()


st.title("Queue")

# The filters live in the URL, so a link names a filtered queue. Query parameters other than the
# ones this page wrote last came with a link (or a page change, which drops them): show what they
# name, or with none, the filters the Review page's "Next" claims under. The widgets take their
# values from here only (Streamlit drops them on other pages).
linked = st.query_params.to_dict()
if linked != st.session_state.get(URL_FILTER) or "q_confidence" not in st.session_state:
    named, ignored = filter_from_params(linked, policy.ids, actor) if linked else (review_state().flt, [])
    show_filter(named)
    show_ignored(ignored)

with st.expander("Filters"):
    row1 = st.columns(4)
    category = row1[0].selectbox(
        "Category", [ANY_LABEL, *policy.ids], key="q_category", on_change=reset_paging,
        help="The current verdict's category ('none': the model saw no violation).",
    )  # fmt: skip
    violation = tri("Verdict", "q_violation", row1[1])
    failure = tri("Model failure", "q_failure", row1[2])
    source = row1[3].text_input("Source", key="q_source", on_change=reset_paging).strip()
    row2 = st.columns(4)
    low, high = cast(  # a range: show_filter set a (low, high) pair
        tuple[float, float],
        row2[0].slider("Confidence", 0.0, 1.0, step=0.05, key="q_confidence", on_change=reset_paging),
    )
    escalated = tri("Escalated", "q_escalated", row2[1]) if actor.can(Permission.ESCALATIONS) else None
    second = tri("Second review", "q_second", row2[2])
    size = row2[3].selectbox("Per page", PAGE_SIZES, key="q_size", on_change=reset_paging)
    row3 = st.columns(4)
    model_id = row3[0].text_input("Model id", key="q_model", on_change=reset_paging).strip()
    prompt_version = row3[1].text_input("Prompt version", key="q_prompt", on_change=reset_paging).strip()
    min_hours = row3[2].number_input("Older than (hours)", 0, MAX_AGE_HOURS, key="q_min_age", on_change=reset_paging)
    max_hours = row3[3].number_input("Newer than (hours, 0 = any)", 0, MAX_AGE_HOURS, key="q_max_age",
                                     on_change=reset_paging)  # fmt: skip

flt = QueueFilter(
    category=None if category == ANY_LABEL else category,
    violation=violation,
    min_confidence=low if low > 0 else None,
    max_confidence=high if high < 1 else None,
    model_failure=failure,
    escalated=escalated,
    second_review=second,
    source=source or None,
    model_id=model_id or None,
    prompt_version=prompt_version or None,
    min_age=timedelta(hours=min_hours) if min_hours else None,
    max_age=timedelta(hours=max_hours) if max_hours else None,
)
review_state().flt = flt  # the Review page's "Next" claims under these filters
wanted = filter_params(flt)
if linked != wanted:
    st.query_params.from_dict(wanted)
st.session_state[URL_FILTER] = wanted

cursors = st.session_state.setdefault(CURSORS, [None])
now = datetime.now(UTC)
# when the list the lead is choosing from was read: the run before this one drew it (a bulk
# decision skips posts whose content an ingest update replaced since)
shown_at = st.session_state.get(LISTED_AT)
st.session_state[LISTED_AT] = now
with desk.sessions() as session:
    per_category = category_counts(session, actor, flt, now)
    total = sum(per_category.values())
    viewer = Viewer.of(actor, desk.settings)
    page = queue_page(session, viewer, flt, after=cursors[-1], limit=size, now=now)
    posts = get_posts(session, viewer, [r.post_id for r in page.rows], policy)
    escalated_rows = escalations(session, actor, [r.post_id for r in page.rows if r.status == "escalated"])

counts = " · ".join(f"{c or 'unscored / failed'} {n:,}" for c, n in per_category.items())
under = " under these filters" if flt != ANY else ""
st.caption(f"{total:,} posts waiting{under}" + (f": {counts}" if counts else ""))


def show_bulk_result() -> None:
    """The last bulk decision's outcome and its skipped posts with why, kept on screen (the table
    and selection it came from are gone) until the next bulk decision or Dismiss."""
    decision, result = st.session_state[BULK_RESULT]
    with st.container(border=True):
        done = f"{len(result.decided)} {DONE[decision]}, {len(result.skipped)} skipped (bulk {result.bulk_id[:8]})."
        (st.warning if result.skipped else st.success)(done)
        if result.skipped:
            skipped = {"post": list(result.skipped), "why skipped": list(result.skipped.values())}
            st.dataframe(pd.DataFrame(skipped), hide_index=True)
        if st.button("Dismiss", key="bulk_dismiss", icon=":material/close:"):
            del st.session_state[BULK_RESULT]
            st.rerun()


if BULK_RESULT in st.session_state:
    show_bulk_result()
if not page.rows:
    st.info("No post waits under these filters." if flt != ANY else "The queue is empty.")
    st.stop()


def badge(post_id: int) -> str:
    post = posts.get(post_id)
    if post is not None and post.verdict_hidden:
        return HIDDEN_BADGE
    return post.verdict.badge if post is not None and post.verdict is not None else "not scored"


table = pd.DataFrame(
    {
        "thumbnail": [thumbnail(desk, posts.get(r.post_id)) for r in page.rows],
        "verdict": [badge(r.post_id) for r in page.rows],
        "text": [" ".join(r.text.split())[:160] for r in page.rows],
        "status": [r.status.replace("_", " ") for r in page.rows],
        "in review by": [r.in_review_by or "" for r in page.rows],
        "source": [r.source for r in page.rows],
        "waiting since": [r.ingested_at for r in page.rows],
        "priority": [r.priority for r in page.rows],
    },
    index=pd.Index([r.post_id for r in page.rows], name="post"),
)


def reason(post_id: int) -> str:
    escalation = escalated_rows[post_id]
    why = "(hidden)" if escalation.reason_hidden else escalation.reason or "(no reason given)"
    return f"{escalation.by or 'unknown'}: {why}"


if escalated_rows:  # why a moderator escalated, beside the post, for the lead who decides it
    table.insert(2, "escalation reason", [reason(r.post_id) if r.post_id in escalated_rows else "" for r in page.rows])
bulk_allowed = actor.can(Permission.BULK)
# The selection is a list of row positions: the key names the exact rows shown (and the bulk
# decisions made so far), so a selection never carries over to rows that moved up or changed.
shown = hashlib.sha256(repr([r.post_id for r in page.rows]).encode()).hexdigest()[:16]
selection = st.dataframe(
    table,
    key=f"queue_table:{shown}:{st.session_state.get(BULK_ROUND, 0)}",
    on_select="rerun",
    selection_mode="multi-row" if bulk_allowed else "single-row",
    row_height=64,
    height=64 * (len(page.rows) + 1) + 3,
    column_config={
        "thumbnail": st.column_config.ImageColumn("", width="small"),
        "verdict": st.column_config.TextColumn("Verdict", width="medium"),
        "text": st.column_config.TextColumn("Text", width="large"),
        "escalation reason": st.column_config.TextColumn("Escalation reason", width="large"),
        "waiting since": st.column_config.DatetimeColumn("Ingested", format="YYYY-MM-DD HH:mm"),
        "priority": st.column_config.NumberColumn("Priority", format="%.2f"),
    },
)
chosen = [page.rows[i].post_id for i in (selection.selection.rows if selection else []) if i < len(page.rows)]

nav = st.columns([1, 1, 2, 4])
if nav[0].button("← Previous", key="queue_prev", disabled=len(cursors) == 1, shortcut="Left"):
    cursors.pop()
    st.rerun()
if nav[1].button("Next page →", key="queue_next_page", disabled=page.next_cursor is None, shortcut="Right"):
    cursors.append(page.next_cursor)
    st.rerun()
if nav[2].button("Review the selected post", key="queue_open", disabled=len(chosen) != 1, type="primary"):
    review_state().hand_over(chosen[0])
    st.switch_page("pages/review.py")
many = " or rows to decide them at once" if bulk_allowed else ""
nav[3].caption(f"Page {len(cursors)} · select a row to review it{many}")

if message := st.session_state.pop("queue_flash", None):
    st.success(message)
held_row = next((r for r in page.rows if len(chosen) == 1 and r.post_id == chosen[0]), None)
if bulk_allowed and held_row is not None and held_row.in_review_by and held_row.in_review_by != actor.username:
    # a lead frees a post someone left open (the holder's next action on it is refused)
    with st.expander("Release the claim on the selected post"):
        st.text(f"{held_row.in_review_by} is reviewing post {held_row.post_id}.")  # a name is not markdown
        why = st.text_input("Reason (kept in the post's history)", key="force_release_reason", max_chars=2000)
        if st.button("Release the claim", key="force_release"):
            try:
                holder = force_release(desk.sessions, actor, held_row.post_id, reason=why,
                                       client=request_address())  # fmt: skip
            except ReviewError as exc:
                show_error("Nothing was released.", str(exc))
            else:
                st.session_state["queue_flash"] = f"Released {holder}'s claim on post {held_row.post_id}."
                st.session_state[BULK_ROUND] = st.session_state.get(BULK_ROUND, 0) + 1
                st.rerun()

if bulk_allowed:
    with st.expander("Bulk decision", expanded=bool(chosen)):
        scope = st.radio(
            "Posts",
            ["the selected posts", "every post in the near-duplicate cluster of the selected post"],
            key="bulk_scope",
            horizontal=True,
        )
        targets = chosen
        if scope.startswith("every") and len(chosen) == 1:
            with desk.sessions() as session:
                targets = cluster_post_ids(session, chosen[0])
        elif scope.startswith("every"):
            targets = []
            st.caption("Select exactly one post to act on its cluster.")
        cols = st.columns([1, 3])
        decision = cols[0].selectbox("Decision", ["confirm", "overturn", "escalate"], index=None,
                                     placeholder="choose", key="bulk_decision")  # fmt: skip
        note = cols[1].text_input("Note (the reason, required to escalate)", key="bulk_note", max_chars=2000)
        if decision == "overturn":
            label_picker(policy, BULK_CATEGORY, BULK_SEVERITY, prefix="bulk", title="New label for every post")
        label = chosen_label(st.session_state.get(BULK_CATEGORY), st.session_state.get(BULK_SEVERITY))
        posts_word = f"{len(targets)} post{'s' if len(targets) != 1 else ''}"
        apply = st.button(f"{(decision or 'decide').capitalize()} {posts_word}", key="bulk_apply",
                          disabled=not targets or decision is None)  # fmt: skip
        if apply and decision == "overturn" and label is None:  # nothing is guessed: ask for the label
            picked_category = st.session_state.get(BULK_CATEGORY)
            st.warning(f"Nothing was decided. {missing_choice(picked_category)}")
            move_focus("bulk_categories" if picked_category is None else "bulk_severity", datetime.now(UTC))
        elif apply and decision is not None:  # the button is disabled without a decision
            st.session_state.pop(BULK_RESULT, None)  # the last outcome gives way to this one's
            try:
                overturn_label = label if decision == "overturn" else None
                decided = decide_bulk(
                    desk.sessions, actor, targets, Decision(decision), label=overturn_label, note=note, policy=policy,
                    shown_at=shown_at,
                )  # fmt: skip
            except ReviewError as exc:
                show_error("Nothing was decided.", str(exc))
            else:
                for picked in (BULK_CATEGORY, BULK_SEVERITY):  # the next bulk overturn is chosen afresh
                    st.session_state.pop(picked, None)
                st.session_state[BULK_RESULT] = (decision, decided)
                st.session_state[BULK_ROUND] = st.session_state.get(BULK_ROUND, 0) + 1
                reset_paging()
                st.rerun()

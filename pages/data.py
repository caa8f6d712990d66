"""Erasure and retention (admins): purge posts by id or by author with a reason, after a dry-run
preview and a confirmation; the retention settings, with a preview and a run now; the latest
purges and retention runs from the audit log.

Everything goes through review.purge, which checks the admin's permission against the stored
account itself, parses the ids and matches the author (a name no stored text can hold, such as
one with a NUL byte, matches nothing). Reasons, authors and folders are shown with st.text or in
tables, never as markdown; the lists under a summary are cut at MAX_LINES each.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._common import allowed_or_stop, current_actor, current_desk, show_error
from review.auth import Permission
from review.errors import ReviewError
from review.purge import (
    Erasure,
    apply_retention,
    check_reason,
    parse_ids,
    purge,
    recent,
    resolve_posts,
    retention_days,
)

PLAN = "data_plan"  # session_state: the previewed purge, with the inputs it was made from
RETENTION_PLAN = "data_retention_plan"
FLASH = "data_flash"
MAX_IDS = 10_000
MAX_LINES = 20  # per list under a summary (not found, already erased, …): the counts are in the summary

desk = current_desk()
actor = current_actor()
allowed_or_stop(actor, Permission.PURGE, "erase data")

st.title("Erasure and retention")
if message := st.session_state.pop(FLASH, None):
    st.success("Done.")
    st.text(message)


def ids_in(text: str) -> list[int]:
    ids = parse_ids(text)
    if len(ids) > MAX_IDS:
        raise ReviewError(f"at most {MAX_IDS} ids at a time here; for more, use python -m review purge --posts-file")
    return ids


def capped(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_LINES:
        return lines
    return [*lines[:MAX_LINES], f"… and {len(lines) - MAX_LINES} more"]


def describe(result: Erasure) -> str:
    lines = [result.summary()]
    lines += capped([f"not found: {m}" for m in result.not_found])
    lines += capped([f"post {p}: already erased, nothing left" for p in sorted(result.already)])
    lines += capped([f"export folder still holds erased posts (delete it or export again): {f}"
                     for f in result.export_folders])  # fmt: skip
    lines += capped([f"export folder could not be checked: {f}" for f in result.unchecked_exports])
    lines += capped([f"could not delete {f} (python -m review media gc removes it later)" for f in result.file_errors])
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
st.header("Purge posts")
st.caption(
    "Erases the text, author, metadata, images and thumbnails no other post shows, OCR and other signals, the "
    "verdicts' texts and raw output, review notes, and image copies in export folders. The post stays as a "
    "tombstone with its decisions, so history and metrics still count it."
)
how = st.radio("Which posts", ["By id", "By author"], key="data_how", horizontal=True)
if how == "By id":
    ids_text = st.text_area("Post ids", key="data_ids", placeholder="one a line, or separated by commas")
    author, source = "", ""
else:
    ids_text = ""
    author = st.text_input("Author (exactly as stored)", key="data_author")
    source = st.text_input("Only in source (optional)", key="data_source")
reason = st.text_area("Reason (required)", key="data_reason", placeholder="the request's reference, the legal ground")
inputs = (how, ids_text, author, source, reason)

if st.session_state.get(PLAN, {}).get("inputs") != inputs:
    st.session_state.pop(PLAN, None)  # the preview no longer matches what is asked

if st.button("Preview", key="data_preview", icon=":material/preview:"):
    try:
        text = check_reason(reason)
        if how == "By id":
            ids = ids_in(ids_text)
            if not ids:
                raise ReviewError("give at least one post id")
        elif not author.strip():
            raise ReviewError("give the author's name")
        with desk.sessions() as session:
            found, missing = resolve_posts(session, post_ids=ids if how == "By id" else (),
                                           author=author if how == "By author" else None,
                                           source=source.strip() or None)  # fmt: skip
        if not found:
            raise ReviewError("no post matches: nothing to erase (a purge erases the author, so posts purged "
                              "before no longer match by author)")  # fmt: skip
        preview = purge(desk.sessions, actor, desk.settings, found, reason=text, dry_run=True, not_found=missing)
    except ReviewError as exc:
        show_error("Nothing was erased.", str(exc))
    else:
        st.session_state[PLAN] = {"inputs": inputs, "ids": found, "missing": missing, "reason": text,
                                  "author": author if how == "By author" else None, "preview": describe(preview),
                                  "to_erase": len(preview.erased)}  # fmt: skip

plan = st.session_state.get(PLAN)
if plan is not None:
    with st.container(border=True):
        st.text("Preview (nothing changed yet):\n" + plan["preview"])
        if plan["to_erase"]:
            sure = st.checkbox(f"Erase the content of {plan['to_erase']} posts. This cannot be undone.",
                               key="data_confirm")  # fmt: skip
            if st.button(
                "Erase", key="data_erase", type="primary", disabled=not sure, icon=":material/delete_forever:"
            ):
                try:
                    done = purge(desk.sessions, actor, desk.settings, plan["ids"], reason=plan["reason"],
                                 not_found=plan["missing"], author=plan["author"])  # fmt: skip
                except ReviewError as exc:
                    show_error("Nothing was erased.", str(exc))
                else:
                    st.session_state.pop(PLAN, None)
                    st.session_state[FLASH] = describe(done)
                    st.rerun()

# ---------------------------------------------------------------------------------------------
st.header("Retention")
days = retention_days(desk.settings)
st.dataframe(
    pd.DataFrame(
        {
            "kind": ["images (files, thumbnails, signals)", "text (post, verdict texts, notes)", "raw model output"],
            "setting": ["RETAIN_MEDIA_DAYS", "RETAIN_TEXT_DAYS", "RETAIN_RAW_OUTPUT_DAYS"],
            "kept after the decision": [f"{d} days" if d else "for ever" for d in days.values()],
        }
    ),
    hide_index=True,
)
st.caption(
    "Set in review.toml or the environment; applied to decided posts by `python -m review retention` (run it "
    "from cron) or here."
)
if not any(days.values()):
    st.info("Every kind is kept for ever: nothing to apply.")
else:
    if st.button("Preview retention", key="data_retention_preview", icon=":material/preview:"):
        try:
            st.session_state[RETENTION_PLAN] = describe(apply_retention(desk.sessions, actor, desk.settings,
                                                                        dry_run=True))  # fmt: skip
        except ReviewError as exc:
            show_error("Nothing was erased.", str(exc))
    if (shown := st.session_state.get(RETENTION_PLAN)) is not None:
        with st.container(border=True):
            st.text("Preview (nothing changed yet):\n" + shown)
            if st.button("Run retention now", key="data_retention_run", type="primary"):
                try:
                    done = apply_retention(desk.sessions, actor, desk.settings)
                except ReviewError as exc:
                    show_error("Nothing was erased.", str(exc))
                else:
                    st.session_state.pop(RETENTION_PLAN, None)
                    st.session_state[FLASH] = describe(done)
                    st.rerun()

# ---------------------------------------------------------------------------------------------
st.header("Recent purges and retention runs")
with desk.sessions() as session:
    rows = recent(session, actor)
if rows:
    st.dataframe(  # not st.table, which renders markdown in its cells
        pd.DataFrame(rows),
        hide_index=True,
        column_config={"when": st.column_config.DatetimeColumn("When (UTC)", format="YYYY-MM-DD HH:mm:ss")},
    )
else:
    st.caption("None yet.")

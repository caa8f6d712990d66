"""Export (leads): the moderators' corrections as LoRA training data. The form picks what goes in
(disagreements or all decided posts, dates, categories, source, a cap per category), the split
and personal-data stripping; Preview counts the examples per category and split without writing,
Export writes the folder under EXPORT_DIR (with progress), shows the longest example in tokens and
the cutoff length that fits it, and offers the folder as a zip. Posts whose images have no
near-duplicate cluster yet (signals not computed) are refused unless the box allowing them is
ticked. Everything is done by review/export.py (the same as ``python -m review export``)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from pages._analytics import day_range
from pages._common import allowed_or_stop, current_actor, current_desk, show_error
from review.auth import Permission
from review.errors import ReviewError
from review.export import FORMATS, ExportOptions, export, new_folder, recent_exports, select_examples, zip_folder
from review.policy import load_policy

FORMAT_NAMES = {
    "llamafactory": "LLaMA-Factory (sharegpt JSON + dataset_info.json)",
    "swift": "ms-swift (JSONL)",
    "qwen": "Qwen-VL finetune scripts (JSON conversations)",
    "parquet": "Parquet with image bytes (Hugging Face datasets)",
}

desk = current_desk()
actor = current_actor()
allowed_or_stop(actor, Permission.EXPORT, "export training data")

st.title("Export training data")
st.caption(
    "Each example is a decided post: the prompt the model saw when it scored it, with the images, and the verdict "
    "JSON it should have given, carrying the moderator's label. Near-duplicates stay on one side of the split; exact "
    "duplicates are dropped."
)

with st.form("export_form"):
    left, right = st.columns(2)
    fmt = left.selectbox("Format", FORMATS, format_func=lambda name: FORMAT_NAMES[name])
    assert fmt is not None  # a selectbox with a default index always holds a choice
    include_all = right.toggle("All decided posts, not only disagreements", value=False)
    a, b, c = st.columns(3)
    since = a.date_input("Decided from", value=None, format="YYYY-MM-DD")
    until = b.date_input("through", value=None, format="YYYY-MM-DD")
    source = c.text_input("Source", placeholder="all")
    categories = st.multiselect("Human categories", load_policy().ids, placeholder="all")
    a, b, c = st.columns(3)
    cap = a.number_input("At most this many per category (0: no cap)", min_value=0, value=0, step=10)
    val = b.slider("Validation share", min_value=0.0, max_value=0.5, value=0.1, step=0.05)
    seed = c.number_input("Seed (split and cap)", min_value=0, value=0)
    pii = st.toggle("Strip handles, phone numbers, e-mails, messenger ids and links from the text", value=True)
    ungrouped = st.checkbox(
        "Allow images without near-duplicate clusters",
        value=False,
        help="Images get their cluster when the signals are computed (python -m review signals). Without one, near "
        "duplicates of a post may land in both the training and the validation split.",
    )
    preview = st.form_submit_button("Preview", icon=":material/preview:")
    go = st.form_submit_button("Export", type="primary", icon=":material/download:")

start, end = day_range(since, until)
opts = ExportOptions(
    format=fmt,
    include="all" if include_all else "disagreements",
    since=start,
    until=end,
    categories=tuple(categories),
    source=source.strip() or None,
    cap_per_category=int(cap) or None,
    val_fraction=float(val),
    strip_pii=pii,
    seed=int(seed),
    allow_ungrouped=ungrouped,
)

if preview:
    try:
        with desk.sessions() as session, st.spinner("Selecting the examples…"):
            selection = select_examples(session, actor, opts)
    except ReviewError as exc:
        show_error("The preview failed.", str(exc))
    else:
        counts = selection.counts()
        names = sorted(set(counts["train"]) | set(counts["val"]))
        table = pd.DataFrame(
            [{"category": n, "train": counts["train"].get(n, 0), "validation": counts["val"].get(n, 0)} for n in names]
        )
        st.subheader(f"{len(selection.examples):,} examples")
        st.dataframe(table, hide_index=True)
        for reason, n in selection.dropped.items():
            st.text(f"dropped {n:,}: {reason}")
        stale = sum(not e.reproduced for e in selection.examples)
        if stale:
            st.caption(
                f"{stale:,} examples were scored by the baseline rules or with an earlier prompt version; they carry "
                "today's prompt."
            )
        if selection.examples:
            first = selection.examples[0]
            with st.expander(f"The first example (post {first.post_id})"):
                st.text("User turn (after the system prompt and the images):")
                st.text(first.user)
                st.text("Assistant turn:")
                st.json(first.answer)

STAGES = {"examples": "Reading the decisions", "writing": "Writing the examples and copying the images"}


def _progress(stage: str, total: int) -> Callable[[int], None]:
    bar = st.progress(0.0, text=STAGES.get(stage, stage))

    def update(done: int) -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=f"{STAGES.get(stage, stage)}: {done:,} of {total:,}")

    return update


if go:
    folder = new_folder(desk.settings, fmt)
    try:
        with st.spinner("Exporting (the tokens are counted while the files are written)…"):
            result = export(desk.sessions, actor, desk.settings, opts, folder, progress=_progress)
    except ReviewError as exc:
        show_error("The export failed.", str(exc))
    else:
        m = result.manifest
        st.success(f"Export {result.export_id}: {m['examples']:,} examples written to the folder below.")
        st.code(str(result.out), language=None)
        tokens = m["tokens"]
        longest = f"{m['max_tokens']:,} tokens" if tokens["exact"] else f"at most {m['max_tokens']:,} tokens"
        st.text(f"Longest example: {longest}; cutoff length {m['cutoff_len']:,} (in TRAINING.md).")
        if not tokens["exact"]:
            st.caption(f"An upper bound: {tokens['note'] or tokens['method']}")
        if m["ungrouped"]:
            st.caption(f"{m['ungrouped']:,} examples have images without a near-duplicate cluster.")
        st.download_button(
            f"Download {result.out.name}.zip",
            zip_folder(result.out),
            file_name=f"{result.out.name}.zip",
            mime="application/zip",
            icon=":material/folder_zip:",
        )

st.subheader("Recent exports")
with desk.sessions() as session:
    rows = recent_exports(session, actor)
st.dataframe(
    pd.DataFrame(rows, columns=["id", "created", "by", "format", "examples", "folder"]),
    hide_index=True,
    column_config={"created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")},
)

"""Ingest and score (leads and admins): ingest uploaded files, start scoring workers, and on the
demo set, simulate its review history.

Uploads go through review.ingest.ingest_upload (the same checks as `python -m review
ingest`, and its reading and storing options: format, columns, image files, date format,
quoting, missing images, update); every rejected record is listed with why, in the uploaded
files' names, with a CSV of them, and the warnings one line per reason. Scoring starts a
`python -m review score` worker process with this desk's settings (review.worker.start_scoring;
one at a time from the app: "Start scoring" is disabled while it runs), followed here through
its log every 2 s while it runs; when it ends the page counts the posts still unscored again.
While the demo posts wait in the queue with no decision yet, an admin can simulate ten days of
moderation on them (review.demo.simulate_history, as `python -m review demo --history`);
otherwise a collapsed "Demo history" says why not (review.demo.history_refusal).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._common import current_actor, current_desk, show_error
from review import csvout
from review.auth import Permission
from review.demo import history_refusal, simulate_history
from review.errors import ReviewError
from review.ingest import ReadOptions, StorePolicy, ingest_upload, parse_mapping
from review.ingest.readers import FORMATS as FILE_FORMATS
from review.verdicts import unscored_count
from review.worker import running_job, start_scoring, started_jobs

BUSY = "ops_busy"  # a worker started here was running at the page's last full run
REPORT = "ingest_report"  # the last upload's IngestReport, shown until the next upload
# The first is the default (nothing named); the others are passed on as --encoding would be.
ENCODINGS = ["UTF-8 / UTF-16 with BOM", "gb18030", "big5", "shift_jis", "euc-kr", "cp1252", "latin-1"]
FORMATS = ["by the file's extension", *FILE_FORMATS]  # the first: nothing named
MISSING_CHOICES = {"reject the record": "reject", "store the post without it": "skip"}  # label → --missing-images

desk = current_desk()
actor = current_actor()
if not (actor.can(Permission.INGEST) or actor.can(Permission.SCORE)):
    st.error(f"Your role ({actor.role}) may not ingest or score posts.", icon="🚫")
    st.stop()


st.title("Ingest and score")

st.subheader("Ingest")
st.caption(
    "JSONL or CSV files (their image paths are relative to the file, so upload the images with them "
    "or as a .zip keeping the folders), or images alone (one post per image, text from a same-named .txt)."
)
with st.form("ingest", clear_on_submit=True):
    files = st.file_uploader(
        "Files",
        accept_multiple_files=True,
        type=["jsonl", "ndjson", "csv", "tsv", "zip", "txt", "jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"],
        key="ingest_files",
    )
    source = st.text_input("Source (for records that name none)", key="ingest_source")
    encoding = st.selectbox(
        "Text encoding of the data files", ENCODINGS, key="ingest_encoding",
        help="UTF-8 and UTF-16 with a byte-order mark are read by default; name any other encoding: "
        "it is never guessed (a wrong guess stores unreadable text).",
    )  # fmt: skip
    # the command line's reading and storing options (python -m review ingest --help), same names
    with st.expander("Exports from other tools: reading and storing options"):
        first, second = st.columns(2)
        file_format = first.selectbox(
            "Format (--format)", FORMATS, key="ingest_format",
            help="Read the data files as this whatever their extension (a tab-separated export named .txt).",
        )  # fmt: skip
        mapping = second.text_input(
            "Columns (--map)", key="ingest_map", placeholder="external_id=tweetId,text=tweetText,images=imageId(s)",
            help="The columns (CSV) or keys (JSONL) holding the record's fields, as FIELD=COLUMN pairs separated "
            "by commas. A mapped images column may list names separated by commas.",
        )  # fmt: skip
        image_path = first.text_input(
            "Image files (--image-path)", key="ingest_image_path", placeholder="images/{}.*",
            help="The file each image name stands for, {} being the name, relative to the data file; "
            "{}.* takes the one file of that name whatever its extension.",
        )  # fmt: skip
        date_format = second.text_input(
            "Date format (--date-format)", key="ingest_date_format", placeholder="%d.%m.%Y %H:%M",
            help="created_at's format (strptime). Without it: ISO 8601, RFC 2822 / Twitter, Unix seconds or "
            "milliseconds, YYYY/MM/DD HH:MM.",
        )  # fmt: skip
        missing = first.selectbox(
            "An image file that is not there (--missing-images)", list(MISSING_CHOICES), key="ingest_missing",
            help="Reject the record, or store the post with the images there are: its moderator is shown the "
            "names of those missing.",
        )  # fmt: skip
        no_quoting = second.checkbox(
            "Fields are never quoted (--no-quoting)", key="ingest_no_quoting",
            help="For CSV/TSV exports that do not quote: a '\"' is then an ordinary character.",
        )  # fmt: skip
        replace = second.checkbox(
            "Replace changed posts nobody has decided (--update)", key="ingest_update",
            help="A post stored before whose record now has other text, author, date or images takes the new "
            "content if nobody has decided it (an 'update' event in its history; it is scored again). A decided "
            "post keeps what its moderator saw. Without this, such differences are only reported.",
        )  # fmt: skip
    submitted = st.form_submit_button("Ingest", type="primary", disabled=not actor.can(Permission.INGEST))
if submitted:
    st.session_state.pop(REPORT, None)
    try:
        options = ReadOptions(
            format=None if file_format == FORMATS[0] else file_format,
            mapping=parse_mapping(mapping) if mapping.strip() else {},
            quoting=not no_quoting,
            image_path=image_path.strip() or None,
        )
        with st.spinner("Ingesting …"):
            st.session_state[REPORT] = ingest_upload(
                desk.sessions, desk.settings, actor, [(f.name, f.getvalue()) for f in files or []],
                source=source.strip() or None, encoding=None if encoding == ENCODINGS[0] else encoding,
                options=options, date_format=date_format.strip() or None,
                policy=StorePolicy(missing_images=MISSING_CHOICES[missing], update=replace),
            )  # fmt: skip
    except ReviewError as exc:
        show_error("Nothing was ingested.", str(exc))
if (report := st.session_state.get(REPORT)) is not None:  # kept over later clicks (a download, Start scoring)
    (st.success if report.ok and not report.warnings else st.warning)(f"Last upload: {report.summary()}.")
    if report.rejected:  # every one, in the uploaded files' names (review.ingest.uploads)
        rejected = pd.DataFrame(
            {"where": [r.location for r in report.rejected], "why": [r.reason for r in report.rejected]}
        )
        st.dataframe(
            rejected,
            hide_index=True,
            column_config={"where": st.column_config.TextColumn("Where", width="medium"),
                           "why": st.column_config.TextColumn("Why it was rejected", width="large")},
        )  # fmt: skip
        st.download_button(f"Download the {len(rejected):,} rejections (CSV)", csvout.to_csv_bytes(rejected),
                           file_name="rejections.csv", mime="text/csv", key="ingest_rejections",
                           icon=":material/download:")  # fmt: skip
    for warning in report.grouped_warnings():  # one line per reason, with its count and first lines
        st.text(str(warning))

st.subheader("Score")
with desk.sessions() as session:
    left = unscored_count(session)
waits = "1 post waits" if left == 1 else f"{left:,} posts wait"
st.caption(
    f"{waits} for a verdict. Model: {desk.settings.provider} · {desk.settings.model}. "
    "A worker computes the images' signals, then scores; several workers share the work safely."
)
cols = st.columns([2, 2, 3])
limit = cols[0].number_input("Posts (0 = all)", 0, 10_000_000, 0, key="score_limit")
provider = cols[1].selectbox("Provider", ["configured", "baseline"], key="score_provider",
                             help="baseline: the offline rules, when no model is available")  # fmt: skip
# One worker from the app at a time: each loads its own copy of the model (gigabytes).
busy = running_job(desk.settings) is not None
st.session_state[BUSY] = busy
start = cols[2].button(
    "Start scoring", key="score_start", disabled=left == 0 or busy or not actor.can(Permission.SCORE),
    help="A scoring worker started from the app is still running: one at a time." if busy else None,
)  # fmt: skip
if start:
    try:
        start_scoring(desk.settings, actor, limit=int(limit) or None, sessions=desk.sessions,
                      provider=None if provider == "configured" else provider)  # fmt: skip
    except ReviewError as exc:
        show_error("Scoring did not start.", str(exc))
    else:
        st.rerun()  # drawn again with the worker running: Start disabled, its log followed


@st.fragment(run_every=2 if busy else None)  # follows a running worker; nothing to follow otherwise
def workers() -> None:
    started = started_jobs(desk.settings)
    if not started:
        return
    me = current_actor()  # a fragment reruns alone: check the account again
    if st.session_state.get(BUSY) and running_job(desk.settings) is None:
        st.rerun()  # the worker finished: the whole page (counts, the Start button) is stale
    for i, job in enumerate(reversed(started[-5:])):
        state = "running" if job.running else f"finished (exit {job.returncode})"
        with st.container(border=True):
            st.text(f"{job.started_at:%Y-%m-%d %H:%M:%S} UTC · by {job.started_by} · {state}")
            st.code(job.log_tail() or "(no output yet)", language=None)
            stop = st.button("Stop after this batch", key=f"score_stop:{i}:{job.log_path.name}",
                             disabled=not (job.running and me.can(Permission.SCORE)))  # fmt: skip
            if stop:
                job.stop(me, desk.sessions)


workers()

refusal = history_refusal(desk.sessions)
if refusal is not None:
    with st.expander("Demo history"):
        st.caption(f"Simulating the demo's review history is not offered here: {refusal}. Its command line "
                   "equivalent, under the same rule: `python -m review demo --history`.")  # fmt: skip
else:
    st.subheader("Demo")
    st.write("Trying the desk on the demo posts? Simulate ten days of moderation on them: three demo moderators "
             "(who cannot sign in) decide about two thirds, some with a blind second review.")  # fmt: skip
    if not actor.can(Permission.MANAGE_USERS):
        st.caption("An admin can do this (it adds the demo moderators' accounts).")
    elif st.button("Simulate the demo's review history", icon=":material/history:", key="simulate_demo"):
        try:
            done = simulate_history(desk.sessions, actor, raters=min(desk.settings.qa_raters, 3))
        except ReviewError as exc:
            show_error("The history was not simulated.", str(exc))
        else:
            st.cache_data.clear()
            st.toast(f"{done.decisions} decisions, {done.second_reviews} second reviews, "
                     f"{done.escalations} escalations; {done.left_waiting} posts left in the queue.")  # fmt: skip
            st.rerun()

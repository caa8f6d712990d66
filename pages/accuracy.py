"""Accuracy (leads): the model's verdicts against the moderators' latest labels — violation as a
yes/no task, categories with a confusion matrix that drills down to posts (thumbnails, blurred as
on the Queue page; a post opens on Review; the cell lives in the URL, ``?human=…&model=…``, so a
link opens it), trends, slices by model, prompt, provider, model precision (float32, bfloat16,
int8; "not recorded" for the rules, a server's model and older verdicts) and source, calibration
and threshold advice. Numbers come from review/metrics/accuracy.py (through review/report.py's
tables); this page only draws them."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from pages._analytics import DECIMAL, EXACT, PERCENT, cached, filters, number, share, table
from pages._common import allowed_or_stop, current_actor, current_desk, show_history, show_ignored, thumbnail
from review import report
from review.auth import Permission
from review.browse import get_posts
from review.evaluate import comparisons
from review.metrics.accuracy import CELL_PARAMS, GROUPINGS, accuracy, breakdown, cell_from_params, cell_posts
from review.metrics.filters import NO_FILTER
from review.policy import load_policy
from review.visibility import Viewer

DEMO_POINTER = (
    "Trying the desk on the demo posts? An admin can simulate ten days of moderation on them on the "
    "Ingest and score page, or with `python -m review demo --history`."
)

desk = current_desk()
actor = current_actor()
allowed_or_stop(actor, Permission.METRICS, "see the accuracy metrics")

st.title("Accuracy")
flt = filters(desk, actor)
acc = cached(accuracy, desk, actor, flt)

if acc.n == 0:
    st.info(
        "No decided posts match these filters yet. Accuracy appears once moderators confirm or overturn "
        "verdicts on the Review page."
    )
    if acc.model_failures:
        st.caption(f"{acc.model_failures} decided posts had a failed model verdict.")
    if flt == NO_FILTER:
        st.caption(DEMO_POINTER)
    st.stop()

b = acc.binary
cols = st.columns(7)
cols[0].metric("Decided posts", f"{b.n:,}")
cols[1].metric(
    "Precision", share(b.precision), help="Of the posts the model called a violation, the share humans agreed were one."
)
cols[2].metric("Recall", share(b.recall), help="Of the posts humans called a violation, the share the model caught.")
cols[3].metric("F1", number(b.f1))
cols[4].metric("Accuracy", share(b.accuracy))
cols[5].metric(
    "ROC-AUC", number(b.auc), help="Of the model's confidence in 'violation' (one minus it when it said no)."
)
cols[6].metric(
    "Model failures",
    f"{acc.model_failures:,}",
    help="Decided posts whose verdict failed to parse or errored: not counted above.",
)
st.caption(
    f"Violation yes/no: {b.tp:,} caught, {b.fp:,} false alarms, {b.fn:,} missed, {b.tn:,} correctly passed. "
    f"Category: macro F1 {number(acc.macro_f1)}, micro F1 {number(acc.micro_f1)}."
)

CELL_URL = "acc_cell_url"  # the confusion cell this page last put in the URL
CELL_FROM = "acc_cell_from"  # the cell the drill-down's pickers start from, once a click or a link set it
CELL_CLICK = "acc_cell_click"  # the heatmap's last clicked cell


def cell_default(worst: dict[str, str], clicked: dict[str, str], linked: tuple[str, str] | None) -> dict[str, str]:
    """Where the drill-down's pickers start (they are keyed by it): the most confused cell, until
    a click on the heatmap or a link (a URL this page did not write) names another. Kept between
    runs, so that a pick in the pickers, which the URL then follows, does not reset them."""
    if clicked and clicked != st.session_state.get(CELL_CLICK):
        st.session_state[CELL_FROM] = clicked
    st.session_state[CELL_CLICK] = clicked
    if linked is not None and linked != st.session_state.get(CELL_URL):
        st.session_state[CELL_FROM] = dict(zip(CELL_PARAMS, linked, strict=True))
    start = st.session_state.get(CELL_FROM)
    return start if start is not None and {start["human"], start["model"]} <= set(names) else worst


cells = report.confusion_table(acc)
names = sorted(set(cells["human"]))
linked, ignored = cell_from_params(st.query_params.to_dict(), names)  # a link to a cell opens its drill-down
show_ignored(ignored)
categories, confusion, trends, calibration, comparison = st.tabs(
    ["Categories", "Confusion", "Trends and slices", "Calibration", "Model comparison"],
    default="Confusion" if linked else None,
)

with categories:
    st.subheader("Per category")
    st.caption(
        "“none” is the no-violation class. Support: posts the humans put in the category; predicted: posts "
        "the model put there."
    )
    table(
        report.categories_table(acc),
        "categories",
        column_config={"precision": PERCENT, "recall": PERCENT, "f1": DECIMAL},
    )
    chart = (
        alt.Chart(report.categories_table(acc))
        .transform_fold(["precision", "recall", "f1"], as_=["metric", "value"])
        .mark_bar()
        .encode(
            x=alt.X("value:Q", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("category:N", title=None),
            yOffset="metric:N",
            color="metric:N",
            tooltip=["category:N", "metric:N", alt.Tooltip("value:Q", format=".3f")],
        )
    )
    st.altair_chart(chart)

with confusion:
    st.subheader("Confusion matrix")
    st.caption("Rows: the humans' category; columns: the model's. Click a cell to list its posts.")
    pick = alt.selection_point(fields=["human", "model"], name="cell")
    heat = alt.Chart(cells).encode(x=alt.X("model:N", title="model said"), y=alt.Y("human:N", title="humans said"))
    chart = heat.mark_rect().encode(
        color=alt.Color("posts:Q", scale=alt.Scale(scheme="blues", type="symlog")),
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.5)),
        tooltip=["human:N", "model:N", "posts:Q"],
    ).add_params(pick) + heat.mark_text(fontSize=10).encode(
        text=alt.Text("posts:Q"),
        color=alt.condition(alt.datum.posts > cells["posts"].max() / 2, alt.value("white"), alt.value("black")),
    )
    event = st.altair_chart(chart, on_select="rerun", key="confusion_chart")
    clicked = (event.get("selection", {}).get("cell") or [{}])[0] if event else {}
    wrong = cells[(cells.human != cells.model) & (cells.posts > 0)].sort_values("posts", ascending=False)
    worst = {p: str(wrong.iloc[0][p]) if len(wrong) else names[0] for p in CELL_PARAMS}  # the most confused cell
    default = cell_default(worst, clicked, linked)
    left, right = st.columns(2)
    human = left.selectbox(
        "Humans said", names, index=names.index(default["human"]), key=f"cell_h:{default['human']}:{default['model']}"
    )
    model = right.selectbox(
        "Model said", names, index=names.index(default["model"]), key=f"cell_m:{default['human']}:{default['model']}"
    )
    if linked or (human, model) != (worst["human"], worst["model"]):  # the URL links to the cell shown
        st.query_params.from_dict(dict(zip(CELL_PARAMS, (human, model), strict=True)))
        st.session_state[CELL_URL] = (human, model)
    with desk.sessions() as session:
        posts = cell_posts(session, actor, flt, human, model)
        post_rows = get_posts(session, Viewer.of(actor, desk.settings), [p.post_id for p in posts], load_policy())
    st.caption(f"{acc.confusion.get((human, model), 0):,} posts; the latest {len(posts)} shown.")
    listing = pd.DataFrame(
        [p.__dict__ for p in posts],
        columns=["post_id", "source", "decided_at", "decided_by", "action", "confidence", "text"],
    )
    listing.insert(0, "thumbnail", [thumbnail(desk, post_rows.get(p.post_id)) for p in posts])
    picked = st.dataframe(
        listing,
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key=f"cell_posts:{human}:{model}",
        row_height=64,
        column_config={
            "thumbnail": st.column_config.ImageColumn("", width="small"),
            "decided_at": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        },
    )
    rows = picked.selection.rows if picked else []
    if rows:
        post_id = int(listing.iloc[rows[0]]["post_id"])
        if st.button(f"Open post {post_id} on Review", key="cell_open", icon=":material/open_in_new:"):
            st.switch_page("pages/review.py", query_params={"post": str(post_id)})
        st.markdown(f"**History of post {post_id}**")
        show_history(desk, actor, post_id)
    else:
        st.caption("Select a row to see that post's review history or open it on Review.")

with trends:
    period = st.segmented_control("Trend by", ["day", "week"], default="week", key="acc_period") or "week"
    over_time = report.slices_table(cached(breakdown, desk, actor, flt, period), period)
    st.subheader(f"Per {period}")
    long = over_time.melt(
        id_vars=[period, "posts"], value_vars=["precision", "recall", "f1", "category_accuracy"], var_name="metric"
    )
    line = (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=alt.X(f"utcyearmonthdate({period}):T", title=f"{period} (UTC)"),
            y=alt.Y("value:Q", scale=alt.Scale(zero=False)),
            color="metric:N",
            tooltip=[f"{period}:N", "metric:N", alt.Tooltip("value:Q", format=".3f"), "posts:Q"],
        )
    )
    st.altair_chart(line)
    table(
        over_time,
        f"trend_{period}",
        column_config={m: PERCENT for m in ["precision", "recall", "accuracy", "category_accuracy"]},
    )

    by = (
        st.segmented_control(
            "Compare by",
            list(GROUPINGS),
            default="model_id",
            key="acc_by",
            format_func=lambda g: g.replace("_", " "),
        )
        or "model_id"
    )
    sliced = report.slices_table(cached(breakdown, desk, actor, flt, by), by)
    st.subheader(f"Side by side, by {by.replace('_', ' ')}")
    bars = (
        alt.Chart(
            sliced.melt(
                id_vars=[by, "posts"], value_vars=["precision", "recall", "f1", "category_accuracy"], var_name="metric"
            )
        )
        .mark_bar()
        .encode(
            x=alt.X("metric:N", title=None),
            xOffset=f"{by}:N",
            y=alt.Y("value:Q", scale=alt.Scale(domain=[0, 1])),
            color=f"{by}:N",
            tooltip=[f"{by}:N", "metric:N", alt.Tooltip("value:Q", format=".3f"), "posts:Q"],
        )
    )
    st.altair_chart(bars)
    table(
        sliced, f"by_{by}", column_config={m: PERCENT for m in ["precision", "recall", "accuracy", "category_accuracy"]}
    )

with calibration:
    st.subheader("Reliability")
    st.caption(
        "Verdicts grouped by their confidence: when the model says 0.9, is it right nine times in ten? "
        "Right = the category (or no violation) the humans gave. On the diagonal is perfect calibration."
    )
    bins = report.calibration_table(acc)
    st.metric(
        "Expected calibration error",
        number(acc.ece),
        help="Posts-weighted mean gap between confidence and accuracy over the bins.",
    )
    diagonal = (
        alt.Chart(pd.DataFrame({"x": [0, 1], "y": [0, 1]}))
        .mark_line(strokeDash=[4, 4], color="gray")
        .encode(x="x:Q", y="y:Q")
    )
    points = (
        alt.Chart(bins)
        .mark_line(point=alt.OverlayMarkDef(filled=True, size=80))
        .encode(
            x=alt.X("mean_confidence:Q", scale=alt.Scale(domain=[0, 1]), title="mean confidence"),
            y=alt.Y("share_correct:Q", scale=alt.Scale(domain=[0, 1]), title="share correct"),
            tooltip=[
                "bin:N",
                "posts:Q",
                alt.Tooltip("mean_confidence:Q", format=".3f"),
                alt.Tooltip("share_correct:Q", format=".3f"),
            ],
        )
    )
    st.altair_chart(diagonal + points)
    table(bins, "calibration", column_config={"share_correct": PERCENT, "mean_confidence": DECIMAL})

    st.subheader("Threshold advice")
    target = st.number_input(
        "Precision the desk must keep when acting without a human",
        min_value=0.5,
        max_value=1.0,
        value=0.95,
        step=0.01,
        format="%.2f",
        key="acc_target",
    )
    advice = report.thresholds_table(acc, target)
    for row in advice.to_dict("records"):
        if row["min_confidence"] is None or pd.isna(row["min_confidence"]):
            st.write(f"**{row['action']}**: no confidence keeps precision at {target:.0%} on these posts.")
        else:
            st.write(
                f"**{row['action']}** verdicts with confidence ≥ {float(row['min_confidence'])!r}: precision "
                f"{row['precision']:.1%} on {row['posts']:,} posts — {row['share_of_decided']:.1%} of the decided "
                f"posts would not have needed a moderator."
            )
    st.caption("Measured on past decisions under the filters above; the model's later verdicts may differ.")
    table(
        advice,
        "thresholds",  # the confidence as stored: saturated values differ in the sixth decimal and beyond
        column_config={"precision": PERCENT, "share_of_decided": PERCENT, "min_confidence": EXACT},
    )

with comparison:
    st.subheader("Base model and fine-tuned adapters")
    st.caption(
        "Each fine-tuning run's evaluation on its export's held-out split (python -m review evaluate --adapter), base "
        "and adapter on the same examples. These examples are not narrowed by the filters above."
    )
    with desk.sessions() as session:
        compared = pd.DataFrame(comparisons(session, actor))
    if compared.empty:
        st.info(
            "No evaluated fine-tuning run yet. Export the disagreements (Export page or python -m review export), "
            "train an adapter (python -m review finetune EXPORT_DIR --base MODEL --out ADAPTER_DIR), then compare it "
            "with the base model: python -m review evaluate --model MODEL --adapter ADAPTER_DIR EXPORT_DIR."
        )
    else:
        compared.insert(1, "variant", compared["adapter"].notna().map({True: "adapter", False: "base"}))
        long = compared.melt(
            id_vars=["run", "variant", "examples"],
            value_vars=["precision", "recall", "f1", "category_macro_f1", "category_accuracy"],
            var_name="metric",
        )
        bars = (
            alt.Chart(long)
            .mark_bar()
            .encode(
                x=alt.X("metric:N", title=None),
                xOffset="variant:N",
                y=alt.Y("value:Q", scale=alt.Scale(domain=[0, 1])),
                color="variant:N",
                column=alt.Column("run:N", title="fine-tuning run"),
                tooltip=["run:N", "variant:N", "metric:N", alt.Tooltip("value:Q", format=".3f"), "examples:Q"],
            )
        )
        st.altair_chart(bars)
        table(compared, "model_comparison", column_config={m: PERCENT for m in ["precision", "recall", "accuracy"]})

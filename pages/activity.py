"""Activity (leads): is the queue under control — decisions and escalations per day and per
moderator, median handling time, the backlog and its oldest post over time, model failures,
and per model the duplicate-cache hit rate and latency. Numbers from review/metrics/activity.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import altair as alt
import streamlit as st

from pages._analytics import PERCENT, cached, filters, table
from pages._common import allowed_or_stop, current_actor, current_desk
from review import report
from review.auth import Permission
from review.metrics.activity import activity

DEFAULT_DAYS = 30

desk = current_desk()
actor = current_actor()
allowed_or_stop(actor, Permission.METRICS, "see the desk's activity")

st.title("Activity")
flt = filters(desk, actor)
if flt.since is None:  # the recent weeks are the question here, and the cost grows with the history
    start = datetime.combine(datetime.now(UTC).date() - timedelta(days=DEFAULT_DAYS - 1), time(), tzinfo=UTC)
    flt = replace(flt, since=start)
    st.caption(f"The last {DEFAULT_DAYS} days (from {start:%Y-%m-%d}); set “Decided from” for a longer view.")
st.caption(
    "The category, model and prompt filters narrow the decisions (the human label; the verdict on screen). "
    "Verdict counts, latency and the backlog follow the dates, the source, the model and the prompt only."
)
tables = report.activity_tables(cached(activity, desk, actor, flt))
days = tables["operations_days"]

if days.empty:
    st.info("Nothing has happened under these filters yet.")
    st.stop()

recent = days.iloc[-1]
cols = st.columns(5)
cols[0].metric("Decisions", f"{int(days.decisions.sum()):,}")
cols[1].metric("Escalations", f"{int(days.escalations.sum()):,}")
cols[2].metric(
    "Waiting now",
    f"{int(recent.waiting):,}",
    help="Posts ingested and not decided yet (at the end of the last day shown).",
)
oldest = recent.oldest_waiting_h
cols[3].metric("Oldest waiting", "–" if oldest != oldest or oldest is None else f"{oldest / 24:.1f} days")
cols[4].metric("Model failures", f"{int(days.model_failures.sum()):,}")

throughput, backlog, people, models = st.tabs(["Throughput", "Backlog", "Moderators", "Models"])
with throughput:
    st.subheader("Per day")
    flow = days.melt(
        id_vars=["day"], value_vars=["decisions", "escalations", "model_failures"], var_name="what", value_name="posts"
    )
    st.altair_chart(
        alt.Chart(flow)
        .mark_line(point=True)
        .encode(
            x=alt.X("utcyearmonthdate(day):T", title="day (UTC)"),
            y="posts:Q",
            color="what:N",
            tooltip=["day:N", "what:N", "posts:Q"],
        ),
    )
    st.subheader("Median handling time")
    st.altair_chart(
        alt.Chart(days.dropna(subset=["median_handling_s"]))
        .mark_line(point=True)
        .encode(
            x=alt.X("utcyearmonthdate(day):T", title="day (UTC)"),
            y=alt.Y("median_handling_s:Q", title="seconds"),
            tooltip=["day:N", "median_handling_s:Q", "decisions:Q"],
        ),
    )
    table(days, "operations_days")
with backlog:
    st.subheader("Posts waiting at the end of each day")
    base = alt.Chart(days).encode(x=alt.X("utcyearmonthdate(day):T", title="day (UTC)"))
    st.altair_chart(
        alt.layer(
            base.mark_area(opacity=0.4).encode(y=alt.Y("waiting:Q", title="posts waiting")),
            base.mark_line(color="firebrick").encode(y=alt.Y("oldest_waiting_h:Q", title="oldest waiting (hours)")),
        ).resolve_scale(y="independent"),
    )
    st.caption(
        "Waiting: ingested and not yet given a first decision (escalated and reopened posts still wait). "
        "Red: the age of the oldest of them."
    )
with people:
    st.subheader("Decisions and escalations per moderator per day")
    st.altair_chart(
        alt.Chart(tables["moderator_days"])
        .mark_rect()
        .encode(
            x=alt.X("utcyearmonthdate(day):T", title="day (UTC)"),
            y=alt.Y("username:N", title=None),
            color=alt.Color("actions:Q", scale=alt.Scale(scheme="greens")),
            tooltip=["day:N", "username:N", "actions:Q"],
        ),
    )
    table(tables["moderators"], "moderators")
    table(tables["moderator_days"], "moderator_days")
with models:
    st.subheader("Per model")
    st.caption("Latency of calls that reached the model (duplicate-cache hits excluded), in 10 ms steps.")
    table(tables["models"], "models", column_config={"cache_hit_rate": PERCENT})

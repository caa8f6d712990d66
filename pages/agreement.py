"""Agreement (leads): how far moderators agree with each other on posts more than one of them
labelled (blind second reviews) — Cohen's kappa per pair, Fleiss' kappa and Krippendorff's
alpha overall, each moderator against the others' consensus and against the model, and the
categories argued over most. Numbers from review/metrics/agreement.py; this page only draws them."""

from __future__ import annotations

import altair as alt
import streamlit as st

from pages._analytics import DECIMAL, PERCENT, cached, filters, number, table
from pages._common import allowed_or_stop, current_actor, current_desk
from review import report
from review.auth import Permission
from review.metrics.agreement import agreement

desk = current_desk()
actor = current_actor()
allowed_or_stop(actor, Permission.METRICS, "see the agreement metrics")

st.title("Agreement")
flt = filters(desk, actor)
agr = cached(agreement, desk, actor, flt)
tables = report.agreement_tables(agr)

cols = st.columns(4)
cols[0].metric("Posts with two or more labels", f"{agr.posts:,}")
cols[1].metric(
    "Fleiss' κ",
    number(agr.fleiss_kappa),
    help=f"Over the {agr.fleiss_posts:,} posts with {agr.fleiss_raters} labels (the most common number).",
)
cols[2].metric(
    "Krippendorff's α", number(agr.krippendorff_alpha), help="Nominal, over every post with two or more labels."
)
cols[3].metric("Moderator pairs", f"{len(agr.pairs):,}")
if agr.posts == 0:
    share, rater_count = desk.settings.second_review_share, desk.settings.qa_raters
    st.info(
        f"No post under these filters has labels from two people yet. Agreement is measured on blind second "
        f"reviews: {share:.0%} of one-by-one decisions are drawn for one (setting SECOND_REVIEW_SHARE), and each "
        f"is labelled by {rater_count} people (setting QA_RATERS)."
    )
    st.stop()
st.caption(
    "κ and α: 1 is perfect agreement, 0 what chance alone would give. Labels are categories, with “none” for "
    "no violation; each person's latest label on a post counts."
)

pairs, raters, disputed = st.tabs(["Pairs", "Moderators", "Disputed categories"])
with pairs:
    st.subheader("Cohen's κ per pair")
    heat = (
        alt.Chart(tables["agreement_pairs"])
        .mark_rect()
        .encode(
            x=alt.X("second:N", title=None),
            y=alt.Y("first:N", title=None),
            color=alt.Color("kappa:Q", scale=alt.Scale(domain=[-0.2, 1], scheme="redyellowgreen")),
            tooltip=[
                "first:N",
                "second:N",
                "posts:Q",
                alt.Tooltip("agreement:Q", format=".1%"),
                alt.Tooltip("kappa:Q", format=".3f"),
            ],
        )
    )
    st.altair_chart(heat)
    table(tables["agreement_pairs"], "agreement_pairs", column_config={"agreement": PERCENT, "kappa": DECIMAL})
with raters:
    st.subheader("Each moderator")
    st.caption(
        "Decisions: posts whose final label is theirs; overturn rate: share of those (with a usable verdict) "
        "where it differs from the model. Agrees with consensus: on posts others labelled too, the share "
        "where their label is the others' majority (with one other person: the same label)."
    )
    chart = (
        alt.Chart(tables["agreement_raters"])
        .transform_fold(["overturn_rate", "agrees_with_consensus"], as_=["measure", "share"])
        .mark_bar()
        .encode(
            x=alt.X("share:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
            y=alt.Y("username:N", title=None),
            yOffset="measure:N",
            color="measure:N",
            tooltip=["username:N", "measure:N", alt.Tooltip("share:Q", format=".1%")],
        )
    )
    st.altair_chart(chart)
    table(
        tables["agreement_raters"],
        "agreement_raters",
        column_config={"overturn_rate": PERCENT, "agrees_with_consensus": PERCENT},
    )
with disputed:
    st.subheader("Where humans disagree most")
    st.caption(
        "For each category: the posts where someone gave it, and the share of those where someone else "
        "gave a different label."
    )
    bars = (
        alt.Chart(tables["disputed_categories"])
        .mark_bar()
        .encode(
            x=alt.X("share_disputed:Q", axis=alt.Axis(format="%"), title="share disputed"),
            y=alt.Y("category:N", sort="-x", title=None),
            tooltip=["category:N", "multi_rated_posts:Q", alt.Tooltip("share_disputed:Q", format=".1%")],
        )
    )
    st.altair_chart(bars)
    table(tables["disputed_categories"], "disputed_categories", column_config={"share_disputed": PERCENT})
table(tables["agreement"], "agreement", column_config={"fleiss_kappa": DECIMAL, "krippendorff_alpha": DECIMAL})

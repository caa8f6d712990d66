"""What the lead pages (Accuracy, Agreement, Activity) share: the filters, which keep their
values from page to page, the reuse of computed numbers (:func:`cached`, handed the
review.metrics function itself, so a page's number leads to its definition, and recounted when
the desk's write mark moves), CSV downloads, and number formats. Not a screen."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

import pandas as pd
import streamlit as st

from review import csvout
from review.auth import Actor, Permission, require
from review.desk import Desk
from review.metrics.filters import MetricFilter, filter_options
from review.metrics.freshness import write_mark
from review.policy import load_policy

KEYS = ("mf_since", "mf_until", "mf_source", "mf_category", "mf_model", "mf_prompt")


@st.cache_data(ttl=60, show_spinner=False)
def _options(database: str, _desk: Desk, _actor: Actor) -> tuple[list[str], list[str], list[str]]:
    with _desk.sessions() as session:
        found = filter_options(session, _actor)
    return found.sources, found.model_ids, found.prompt_versions


def filters(desk: Desk, actor: Actor) -> MetricFilter:
    """The filter bar; its values are the same on every lead page until changed."""
    for key in KEYS:  # a widget's value is dropped on pages that do not draw it; keep them
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]
    sources, models, prompts = _options(str(desk.settings.database_url), desk, actor)
    with st.container(border=True):
        first, second, third, fourth, fifth, sixth = st.columns([1, 1, 1.2, 1.2, 2, 1.4])
        since = first.date_input("Decided from", value=None, key="mf_since", format="YYYY-MM-DD")
        until = second.date_input("through", value=None, key="mf_until", format="YYYY-MM-DD")
        source = third.selectbox("Source", sources, index=None, key="mf_source", placeholder="all")
        category = fourth.selectbox(
            "Human category", load_policy().ids, index=None, key="mf_category", placeholder="all"
        )
        model = fifth.selectbox("Model", models, index=None, key="mf_model", placeholder="all")
        prompt = sixth.selectbox("Prompt version", prompts, index=None, key="mf_prompt", placeholder="all")
        st.caption(
            "Days are UTC. Decisions are counted on the day they were made; each post once, with its latest "
            "human label against the model verdict that was on screen. Figures are recounted after each decision, "
            "verdict or ingest."
        )
    if since and until and until < since:
        st.warning("The end date is before the start date: nothing can match.")
    start, end = day_range(since, until)
    return MetricFilter(
        since=start,
        until=end,
        source=source,
        category=category,
        model_id=model,
        prompt_version=prompt,
    )


FRESH_SECONDS = 300  # the longest a computed table is reused (a write the mark missed; "the last 30 days")


Result = TypeVar("Result")


def cached(metric: Callable[..., Result], desk: Desk, actor: Actor, flt: MetricFilter, *args: str) -> Result:
    """``metric(session, actor, flt, *args)``, a review.metrics function such as
    ``accuracy.accuracy`` or ``accuracy.breakdown`` (with ``"week"``), reused while the desk's
    write mark (review.metrics.freshness) stays put: a click on the page (a confusion cell, a tab's
    control) does not recount, a decision, verdict or ingest does, so a page's numbers agree."""
    require(actor, Permission.METRICS)  # the cache must not hand a result to someone the core would refuse
    name = f"{metric.__module__}.{metric.__qualname__}"  # the cache key: the function object is not hashed
    with desk.sessions() as session:
        mark = write_mark(session, actor)
    return _cached(name, str(desk.settings.database_url), mark, flt, args, metric, desk, actor)


@st.cache_data(ttl=FRESH_SECONDS, show_spinner="Computing…", max_entries=64)
def _cached(
    name: str,
    database: str,
    mark: tuple[int, int, int, int],
    flt: MetricFilter,
    args: tuple[str, ...],
    _metric: Callable[..., Result],
    _desk: Desk,
    _actor: Actor,
) -> Result:
    with _desk.sessions() as session:
        return _metric(session, _actor, flt, *args)


def day_range(since: date | None, until: date | None) -> tuple[datetime | None, datetime | None]:
    """Date inputs "from" and "through" as UTC bounds: from the start of ``since`` to the start of
    the day after ``until`` (exclusive)."""
    start = datetime.combine(since, time(), tzinfo=UTC) if since else None
    end = datetime.combine(until + timedelta(days=1), time(), tzinfo=UTC) if until else None
    return start, end


def table(df: pd.DataFrame, name: str, column_config: dict[str, Any] | None = None) -> None:
    """A table with its CSV download (full precision, formulas neutralised: the CLI's writer)."""
    st.dataframe(df, hide_index=True, column_config=column_config)
    st.download_button(
        f"Download {name}.csv",
        download_csv(df),
        file_name=f"{name}.csv",
        mime="text/csv",
        key=f"download:{name}",
        icon=":material/download:",
    )


def download_csv(df: pd.DataFrame) -> bytes:
    """What a "Download ….csv" button hands out: ``review.csvout``'s CSV of ``df``."""
    return csvout.to_csv_bytes(df)


def share(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


PERCENT = st.column_config.NumberColumn(format="percent")
DECIMAL = st.column_config.NumberColumn(format="%.3f")
EXACT = st.column_config.NumberColumn(format="%.12f")  # confidences compared exactly (thresholds)

"""What every page shares: the desk handle, opened once per server process.

Not a screen: the leading underscore keeps it out of the navigation.
"""

from __future__ import annotations

import streamlit as st

from db.schema import require_current
from review.desk import Desk, open_desk
from review.errors import ReviewError


@st.cache_resource(show_spinner=False)
def _open() -> Desk:
    return open_desk(check_schema=False)


def show_error(headline: str, detail: str) -> None:
    """An error box; the detail (which may quote paths, URLs or input) is shown verbatim."""
    st.error(headline, icon="🚫")
    st.code(detail, language=None, wrap_lines=True)


def desk_or_stop() -> Desk:
    """For dashboard.py, once per run: the desk, or an error that says what to run, and a stop."""
    try:
        desk = _open()
        require_current(desk.engine)  # checked on every run: the schema may change under us
    except ReviewError as exc:
        show_error("The review desk cannot start.", str(exc))
        st.stop()
    return desk


def current_desk() -> Desk:
    """For pages: the desk that dashboard.py has already checked in this run."""
    return _open()

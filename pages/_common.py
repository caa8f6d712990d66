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


def desk_or_stop() -> Desk:
    """The desk, or an error box that says what to run, and a stopped script."""
    try:
        desk = _open()
        require_current(desk.engine)  # checked on every run: the schema may change under us
    except ReviewError as exc:
        st.error(f"The review desk cannot start: {exc}", icon="🚫")
        st.stop()
    return desk

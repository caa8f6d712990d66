"""Streamlit entry point: `streamlit run dashboard.py`.

Opens the desk (settings, database), refuses to run on an out-of-date schema, and hands over
to the pages in pages/ through st.navigation. Pages hold widgets and layout only; everything
else lives in review/.
"""

from __future__ import annotations

import streamlit as st

from db.session import safe_url
from pages._common import desk_or_stop

st.set_page_config(page_title="Review desk", page_icon="🛡️", layout="wide")

desk = desk_or_stop()

navigation = st.navigation([st.Page("pages/posts.py", title="Posts", icon="🗂️", default=True)])
with st.sidebar:
    st.caption("Review desk")
    st.text(f"Database: {safe_url(desk.settings.database_url)}")
navigation.run()

"""The review desk's domain core. Never imports streamlit; pages and the CLI are thin shells."""

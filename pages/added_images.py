"""Added images (planned)."""
import streamlit as st

from pages._ui import ensure_router

ensure_router()
st.title("Added images")
st.info("This page is not built yet. It will: See the images users added, move them between train, validation and test, edit them (crop, rotate) or delete them.")

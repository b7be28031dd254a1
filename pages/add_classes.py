"""Add new classes (planned)."""
import streamlit as st

from pages._ui import ensure_router

ensure_router()
st.title("Add new classes")
st.info("This page is not built yet. It will: Add a new class (id, name, reference picture) to a dataset's label set, so that its images can be added and a model expanded to it by incremental learning.")

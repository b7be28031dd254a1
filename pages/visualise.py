"""Visualise classes (planned)."""
import streamlit as st

from pages._ui import ensure_router

ensure_router()
st.title("Visualise classes")
st.info("This page is not built yet. It will: Generate t-SNE embeddings of a set of images with a chosen model, show them as an interactive cluster map coloured by the model's predictions, and flag clusters with high prediction entropy as likely new classes.")

"""Add new images (planned)."""
import streamlit as st

from pages._ui import ensure_router

ensure_router()
st.title("Add new images")
st.info("This page is not built yet. It will: Upload images to an existing class, optionally generate more with the seven augmentation groups (combined and permuted), and add them to the test set or split them into train and validation by smart segregation (clusters of model features).")

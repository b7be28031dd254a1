"""Evaluate models (planned)."""
import streamlit as st

from pages._ui import ensure_router

ensure_router()
st.title("Evaluate models")
st.info("This page is not built yet. It will: Pick a model and a dataset split and run evaluations as background jobs (up to 5 at once), then read per-class metrics, charts, the confusion matrix with the images behind each cell, misclassified images with Integrated Gradients and Anchors, and compare two reports.")

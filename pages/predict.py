"""Make prediction (planned)."""
import streamlit as st

from pages._ui import ensure_router

ensure_router()
st.title("Make prediction")
st.info("This page is not built yet. It will: Upload images and get the model's top-5 labels with confidence, class pictograms and an Integrated Gradients overlay.")

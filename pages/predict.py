"""Make prediction (planned)."""
import streamlit as st

st.title("Make prediction")
st.info("This page is not built yet. It will: Upload images and get the model's top-5 labels with confidence, class pictograms and an Integrated Gradients overlay.")

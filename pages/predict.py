"""Make prediction: upload images, get the top-5 labels with confidence, pictograms and Integrated Gradients."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.learning.tta import VIEWS, describe
from core.analysis import novelty, prediction
from core.data.export import plural
from ui.cache import class_heatmap, load_model, novelty_detector
from ui.widgets import ig_figure, pick_model, pick_novelty_method, show_model_stats, top_k_bars
from ui.nav import ensure_router

ensure_router()  # a first visit straight to this page's URL on a fresh server: let Home.py route it

UPLOAD_TYPES = ["png", "jpg", "jpeg", "ppm", "webp", "bmp"]


def percent(p: float) -> str:
    """0.921 -> '92.1 %'."""
    return f"{100 * p:.1f} %"

st.title("Make prediction")
info = pick_model(key="predict_model")
if info is None:
    st.stop()
show_model_stats(info)
files = st.file_uploader("Images (PNG, JPEG, PPM, WebP; any size; RGBA or greyscale are converted)",
                         type=UPLOAD_TYPES, accept_multiple_files=True, key="predict_files")
if not files:
    st.caption("Upload one or more photos of traffic signs, ideally cropped to the sign.")
    st.stop()

# An element, not a block, in the results' place: the browser drops the previous run's results (another model's
# numbers) at once, instead of showing them until this run has loaded the model and calibrated its novelty check.
slot = st.empty()
ckpt, model = load_model(str(info.path))
detector, why_not = novelty_detector(str(info.path))
with slot.container():
    st.subheader(f"Predictions by {info.name}")
    if why_not:
        st.caption(f"No novelty check for this model: {why_not}")
    method = pick_novelty_method(key="predict_novelty") if detector is not None else novelty.DEFAULT_METHOD
    tta = st.checkbox("Test-time augmentation", key="predict_tta", persist_state="session",
                      help=f"Average the probabilities over {describe()} (about {len(VIEWS)}x the time)")
    results = prediction.predict_images(ckpt, [(f.name, f.getvalue()) for f in files], model=model,
                                        detector=detector, method=method, tta=tta)
    n_bad = sum(r.error is not None for r in results)
    st.caption(f"{plural(len(results) - n_bad, 'image')} predicted" + (f", {n_bad:,} refused" if n_bad else ""))
    table = pd.DataFrame(prediction.summary_rows(results)).astype({"class_id": "Int64"})  # refused: empty, not 14.0
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"confidence": st.column_config.ProgressColumn("confidence", min_value=0,
                                                                              max_value=1, format="percent")})
    st.download_button("Download results (CSV)", prediction.predictions_csv(results), file_name="predictions.csv",
                       mime="text/csv", key="predict_csv")
    pictograms = prediction.class_pictograms(ckpt, {t["class_id"] for r in results for t in r.top})
    for k, r in enumerate(results):
        with st.container(border=True):
            if r.error:
                st.error(r.error)
                continue
            best = r.top[0]
            st.markdown(f"**{r.file}** \u2192 **{best['class_id']}: {best['name']}** ({percent(best['p'])})")
            if r.novelty and r.novelty["novel"]:
                st.warning(f"Probably not one of the model's classes: novelty score {r.novelty['score']:.2f} is "
                           f"above {r.novelty['threshold']:.2f}, which {novelty.THRESHOLD_ACCEPT:.0%} of the model's "
                           "validation images stay below. If it is a new sign, add it as a class (Add new classes).")
            c1, c2 = st.columns([3, 2])
            c1.plotly_chart(ig_figure(r.image, class_heatmap(str(info.path), r.image, best["class_id"]),
                                      title="Integrated Gradients (top-1)"), key=f"predict_ig_{info.name}_{k}")
            c1.caption(f"input {r.image.shape[1]}\u00d7{r.image.shape[0]} px; brighter = pixels that pushed the "
                       "model more towards its top-1 class")
            with c2:
                top_k_bars(r.top, pictograms)

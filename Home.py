"""Traffic-sign model workbench: router and landing page (``streamlit run Home.py``)."""
from __future__ import annotations

import streamlit as st

from ui.nav import keep_navigation_over_timers, start_session

st.set_page_config(page_title="Traffic-sign workbench", page_icon=":material/traffic:", layout="wide")
start_session()  # secrets (the Cloud's TSW_DEMO) and this browser session's demo identity, before anything reads them


def home() -> None:
    st.title("Traffic-sign model workbench")
    if demo.enabled():
        st.info(f"**This is a public demo**, shared with other visitors: {demo.caps_summary()}.",
                icon=":material/public:")
    st.markdown(
        "Explore a traffic-sign dataset, find out **why** the model fails, add classes and images, retrain cheaply "
        "(incremental and transfer learning with in-model augmentation), evaluate with per-class metrics and "
        "explanations, and predict on new photos.")
    st.subheader("Start here")
    c1, c2, c3 = st.columns(3)
    with c1.container(border=True):
        st.markdown("**1. Look at the data**  \nBrowse images per class and split; find likely mislabelled images, "
                    "leakage and outliers.")
        st.page_link("pages/explore.py", label="Explore dataset", icon=":material/folder_open:")
    with c2.container(border=True):
        st.markdown("**2. Find what the model misses**  \nPer-class metrics, the confusion matrix, the images "
                    "behind every mistake and why.")
        st.page_link("pages/evaluate.py", label="Evaluate models", icon=":material/analytics:")
    with c3.container(border=True):
        st.markdown("**3. Add it and retrain**  \nNew classes and images in a workspace, then incremental "
                    "learning from a shipped model.")
        st.page_link("pages/add_classes.py", label="Add new classes", icon=":material/add_circle:")
    infos = datasets.list_datasets()
    st.subheader("Datasets")
    if infos:
        st.dataframe(pd.DataFrame([{"dataset": d.name, "classes": d.num_classes, "train": d.split_size("train"),
                                    "val": d.split_size("val"), "test": d.split_size("test"),
                                    "source": d.source + (" (embedded sample)" if d.embedded else ""),
                                    "version": d.fingerprint}
                                   for d in infos]), hide_index=True, width="stretch")
    if all(d.embedded for d in infos if d.kind != "workspace"):
        st.info("You are running on the small embedded sample. Build the full GTSRB, GTSRB_48, Difficult and "
                "Testing datasets with `python -m core datasets build --source ../shared/data` "
                f"(data root: `{config.data_root()}`, movable with `{config.DATA_ROOT_ENV}`).")
    st.subheader("Models")
    models = registry.list_models()
    if models:
        st.dataframe(pd.DataFrame([model_row(m, models) for m in models]), hide_index=True, width="stretch",
                     column_config={"test accuracy": st.column_config.NumberColumn(
                                        format="percent", help="on the test set named in 'test set'"),
                                    "val accuracy": st.column_config.NumberColumn(
                                        format="percent", help="best validation accuracy while training"),
                                    "lineage": st.column_config.TextColumn(width="large",
                                                                           help="the model and its ancestors")})
        with st.expander("Download a model (TorchScript + card)", icon=":material/download:"):
            chosen = st.selectbox("Model", [m.name for m in models], key="home_export_model")
            model_download(chosen)
    else:
        st.caption("No models yet: train one on the Improve model page.")
    active = runs.list_runs(statuses=runs.ACTIVE)
    if active:
        st.subheader("Running")
        for run in active:
            run_status(run)


def model_row(m, models: list) -> dict:
    """A row of the models table. Test and validation accuracy in columns of their own: one column holding either
    ranked a model's validation figure against another's test figure."""
    test_n = m.metrics.get("test_n")
    return {"model": m.name, "test accuracy": m.metrics.get("test_acc"), "val accuracy": m.metrics.get("best_val_acc"),
            "test set": (f"{m.metrics['test_set']}" + (f" ({test_n:,} images)" if test_n else ""))
            if m.metrics.get("test_set") else "",
            "architecture": m.architecture, "classes": m.num_classes, "trained on": m.dataset, "mode": m.mode,
            "epochs": m.epochs, "lineage": " \u2190 ".join(x.name for x in registry.lineage(m.name, models)),
            "shipped": m.shipped}


#: The pages in three sections: routed by st.navigation, listed in the sidebar by :func:`sidebar_menu`.
PAGES = {
    "Data": [
        st.Page(home, title="Home", icon=":material/home:", default=True),
        st.Page("pages/explore.py", title="Explore dataset", icon=":material/folder_open:"),
        st.Page("pages/visualise.py", title="Visualise classes", icon=":material/scatter_plot:"),
        st.Page("pages/add_classes.py", title="Add new classes", icon=":material/add_circle:"),
        st.Page("pages/add_images.py", title="Add new images", icon=":material/add_photo_alternate:"),
        st.Page("pages/added_images.py", title="Added images", icon=":material/photo_library:"),
    ],
    "Models": [
        st.Page("pages/evaluate.py", title="Evaluate models", icon=":material/analytics:"),
        st.Page("pages/improve.py", title="Improve model", icon=":material/model_training:"),
        st.Page("pages/generate.py", title="Make more like these", icon=":material/auto_awesome:"),
        st.Page("pages/predict.py", title="Make prediction", icon=":material/image_search:"),
    ],
    "Detect": [
        st.Page("pages/detect.py", title="Detect signs", icon=":material/center_focus_strong:"),
    ],
}



def sidebar_menu(pages: dict[str, list]) -> None:
    """The page menu, drawn with the first run. Streamlit's own menu is off (``client.showSidebarNavigation``):
    while a ``pages/`` folder exists, each server process starts in Streamlit's legacy mode until st.navigation
    has run once, and its menu listed the raw page file names ("add classes", "evaluate") on a cold start."""
    with st.sidebar:
        for section, entries in pages.items():
            st.caption(section.upper())
            for entry in entries:
                st.page_link(entry)


# The router runs first, before the heavy imports below, so a first visit is routed at once.
current = st.navigation(PAGES, position="hidden")
sidebar_menu(PAGES)
keep_navigation_over_timers()  # after the router: notes the page this run shows

import pandas as pd  # noqa: E402

import core.kinds  # noqa: E402,F401  (registers every run kind: pages start them by name)
from core import runs  # noqa: E402
from core.base import config, demo  # noqa: E402
from core.data import datasets  # noqa: E402
from core.learning import registry  # noqa: E402
from ui.cache import recover_runs  # noqa: E402
from ui.export_views import model_download  # noqa: E402
from ui.widgets import run_status  # noqa: E402

recover_runs()  # a killed run shows as interrupted within seconds, whichever page is open
current.run()

"""Add new images: upload files or a zip, choose a class (or Extra), augmentation variants, a destination
(test, or train + val by smart segregation); preview exactly what will be written; add as a run."""
from __future__ import annotations

import dataclasses

import streamlit as st

from core.analysis.embedding import percent
from core.data import augment, uploads, workspaces
from core.learning import registry
from core.curation import importing as curation
from core import runs
from core.curation.import_run import ImportRun, stage_uploads
from core.curation.importing import describe_import, plural
from ui.widgets import pick_workspace, run_status, show_errors
from ui.nav import ensure_router

ensure_router()  # a first visit straight to this page's URL on a fresh server: let Home.py route it

UPLOAD_TYPES = ["png", "jpg", "jpeg", "ppm", "bmp", "webp", "gif", "tif", "tiff", "zip"]
PREVIEW_UPLOADS = 8
HELP = {f.name: f.metadata["help"] for f in dataclasses.fields(curation.ImportSettings)}


@st.cache_data(show_spinner="Reading the uploads...", max_entries=4)
def read_uploads(files: tuple[tuple[str, bytes], ...]) -> list[uploads.Upload]:
    return [u for name, data in files for u in uploads.read_bytes(name, data)]


st.title("Add new images")
info = pick_workspace(key="add_ws")
if info is None:
    st.info("Create a workspace above: images are added to a workspace, never to a built dataset.")
    st.stop()

c1, c2 = st.columns([2, 3])
options = [workspaces.EXTRA_CLASS] + sorted(info.classes)
class_id = c1.selectbox("Class", options, key="add_class", persist_state="session", index=len(options) - 1,
                        format_func=lambda c: "Extra (not labelled yet)" if c == workspaces.EXTRA_CLASS
                        else f"{c}: {info.classes[c]}")
defaults = curation.ImportSettings(dataset=info.name, class_id=class_id)  # the form starts on the settings' defaults
files = c2.file_uploader("Images or a zip of images", type=UPLOAD_TYPES, accept_multiple_files=True,
                         key="add_files", help="Any size; CMYK, 16-bit, alpha and greyscale are converted.")
c1, c2, c3 = st.columns([3, 1, 1])
groups = c1.multiselect("Augmentation groups (combined, in a random order per variant)", augment.list_groups(),
                        key="add_groups", persist_state="session", format_func=lambda g: augment.get_group(g).label,
                        help="; ".join(f"{augment.get_group(g).label}: {augment.get_group(g).description}"
                                       for g in augment.list_groups()))
n_variants = c2.number_input("Variants per image", 0, curation.MAX_VARIANTS, defaults.variants, key="add_variants",
                             persist_state="session",
                             help=HELP["variants"])
seed = c3.number_input("Seed", 0, 2**31 - 1, defaults.seed, key="add_seed", persist_state="session", help=HELP["seed"])
extra = class_id == workspaces.EXTRA_CLASS
c1, c2, c3 = st.columns([2, 2, 2])
destinations = ["trainval", "test"]
to = workspaces.EXTRA if extra else c1.radio(
    "Destination", destinations, key="add_to", persist_state="session", horizontal=True,
    index=destinations.index(defaults.to),
    format_func={"trainval": "Train + val (smart segregation)", "test": "Test"}.get)
val_ratio, model = defaults.val_ratio, None
if to == "trainval":
    val_ratio = c2.slider("Val share", 0.0, 0.5, defaults.val_ratio, 0.05, key="add_val_ratio",
                          persist_state="session", help=HELP["val_ratio"])
    names = [m.name for m in registry.list_models()]
    default_model = curation.default_segregation_model(names)
    model = c3.selectbox("Features from", names, key="add_model",
                         persist_state="session", index=names.index(default_model)
                         if default_model else 0, help="Model whose penultimate features group the uploads")
on_leak = st.radio("Near-duplicates of images already in other splits", curation.LEAK_ACTIONS, key="add_leak",
                   persist_state="session",
                   index=curation.LEAK_ACTIONS.index(defaults.on_leak), horizontal=True,
                   format_func={"report": "add and report them", "skip": "skip those uploads"}.get)
if not files:
    st.caption("Upload sign images (cropped to the sign works best) or one zip of them.")
    st.stop()

found = read_uploads(tuple((f.name, f.getvalue()) for f in files))
settings = curation.ImportSettings(dataset=info.name, class_id=class_id, groups=tuple(groups),
                                   variants=int(n_variants) if groups else 0, to=to, val_ratio=val_ratio,
                                   seed=int(seed), on_leak=on_leak)
good = [u for u in found if u.ok]
total = len(good) * (1 + settings.variants)
st.subheader(f"Preview: {plural(len(good), 'upload')} x {1 + settings.variants} = {plural(total, 'image')}"
             if settings.variants else f"Preview: {plural(len(good), 'upload')}")
show_errors([{"error": u.error} for u in found if not u.ok])
if n_variants and not groups:
    st.warning("Choose at least one augmentation group to make variants.")
for name, images in curation.preview(found, settings, limit=PREVIEW_UPLOADS):
    cols = st.columns(min(12, len(images)) + 1)
    cols[0].caption(name[-28:])
    for k, im in enumerate(images[:11]):
        cols[k + 1].image(im, width=56, caption="upload" if k == 0 else f"v{k}")
if len(good) > PREVIEW_UPLOADS:
    st.caption(f"Showing the first {PREVIEW_UPLOADS} uploads; the rest get the same treatment.")

if st.button(f"Add {plural(total, 'image')} to {info.name}", type="primary",
             key="add_go", disabled=not good):
    try:
        settings.check_target()  # a refused target costs no upload quota (demo mode)
        paths = stage_uploads([(f.name, f.getvalue()) for f in files])
        st.session_state.add_run = runs.start("import", ImportRun(settings, paths=tuple(paths), model=model,
                                                                  staged=True))
    except ValueError as e:
        st.error(str(e))


@st.fragment(run_every=1.0)
def import_status() -> None:
    run = runs.get(st.session_state.get("add_run", "")) if st.session_state.get("add_run") else None
    if run is None:
        return
    run_status(run)
    if run["status"] in runs.ACTIVE and st.button("Cancel", key="add_cancel"):
        runs.cancel(run["id"])
    if run["status"] == "done":
        r = run["result"]
        level, text = describe_import(r)
        (st.success if level == "success" else st.warning)(text + (" See them on Added images." if r["added"] else ""))
        show_errors(r["errors"])
        if r["leaks"]:
            st.warning(f"{plural(len(r['leaks']), 'upload')} look{'s' if len(r['leaks']) == 1 else ''} like images "
                       "already in another split (leakage):")
            st.dataframe([{"upload": k["file"], "added to": k["split"], "looks like": k["near"],
                           "similarity": percent(k["similarity"]), "what was done": k["action"]} for k in r["leaks"]],
                         hide_index=True)


import_status()

"""AppTests of the Visualise, Add new classes and Add new images fixes of issue 22: state keyed by the map shown,
group buttons after a class is made, groups given a new or existing class over train/val/test, the map's colours,
legend, hover and colourings, paged selections, a plain message for re-imported duplicates, plurals and names."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import streamlit
from streamlit.testing.v1 import AppTest

from conftest import star_sign
from core import runs
from core.analysis import embedding
from core.analysis.embed_run import EmbedRun
from core.curation import importing
from core.data import datasets, uploads, workspace_changes, workspaces
from core.data.images import encode_png
from test_embedding import jitter, ring_sign
from tests.run_support import finished
from waits import PAGE_S
from app_support import router_mode  # noqa: F401 (autouse: AppTests through Home.py's router)

HOME = str(Path(__file__).resolve().parent.parent / "Home.py")


@pytest.fixture
def charts(monkeypatch):
    """Every figure the pages draw (in order), and a selection to hand back as the browser would after a box or
    lasso: ``charts["select"] = [(kind, index), ...]`` (kind 0: a map point, 1: a new image)."""
    seen = {"figures": [], "select": None}
    real = streamlit.plotly_chart

    def plotly_chart(fig, *args, **kwargs):
        seen["figures"].append(fig)
        event = real(fig, *args, **kwargs)
        if seen["select"] is not None and kwargs.get("on_select") == "rerun":
            return {"selection": {"points": [{"customdata": [k, i]} for k, i in seen["select"]]}}
        return event

    monkeypatch.setattr(streamlit, "plotly_chart", plotly_chart)
    return seen


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=PAGE_S)
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def mapped(model: str, dataset: str, split: str = "val") -> None:
    run = finished(runs.start("embed", EmbedRun(model=model, dataset=dataset, split=split)))
    assert run["status"] == "done", run.get("error")


def uploads_of(images, prefix: str) -> list[tuple[str, bytes, str]]:
    return [(f"{prefix}{k}.png", encode_png(im), "image/png") for k, im in enumerate(images)]


def group_lines(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("**Group")]


def stop_signs(n: int = 3) -> list[np.ndarray]:
    split = datasets.load_split("Sample48", "test")
    return list(split.images[split.labels == 14][:n])


def test_changing_the_model_never_shows_the_previous_models_map_or_groups(charts):
    mapped("benchmark", "Sample48")
    at = open_page("pages/visualise.py")
    at.selectbox(key="vis_model").set_value("benchmark")
    at.selectbox(key="vis_dataset").set_value("Sample48")
    at.selectbox(key="vis_split").set_value("val").run()
    assert any("What benchmark sees" in s.value for s in at.subheader)
    at.radio(key="vis_source").set_value("upload").run()
    at.file_uploader(key="vis_files").set_value(uploads_of([star_sign(k) for k in range(3)], "star")).run()
    assert not at.exception, at.exception
    assert any("likely a new class" in g for g in group_lines(at))
    at.selectbox(key="vis_model").set_value("incremental48").run()
    assert not at.exception, at.exception
    assert any("No map yet for incremental48" in i.value for i in at.info)
    assert group_lines(at) == [] and not any("What benchmark sees" in s.value for s in at.subheader)
    at.button(key="vis_compute").click().run()
    run_key = next(k for k in at.session_state if k.startswith("vis_run_"))
    finished(at.session_state[run_key])
    at.run()
    assert not at.exception, at.exception
    assert any("What incremental48 sees" in s.value for s in at.subheader)
    keys = {k for k in at.session_state if k.startswith("vis_map_")}
    at.selectbox(key="vis_model").set_value("benchmark").run()
    assert any("What benchmark sees" in s.value for s in at.subheader)
    assert {k for k in at.session_state if k.startswith("vis_map_")} - keys  # its own chart state


def test_the_map_uses_a_distinct_colour_per_class_a_legend_below_and_hover_text(charts):
    mapped("incremental48", "Sample48", "test")
    at = open_page("pages/visualise.py")
    at.selectbox(key="vis_model").set_value("incremental48")
    at.selectbox(key="vis_dataset").set_value("Sample48")
    at.selectbox(key="vis_split").set_value("test").run()
    assert not at.exception, at.exception
    fig = charts["figures"][-1]
    looks = {(t.marker.color, t.marker.symbol) for t in fig.data}
    assert len(fig.data) == 48 and len(looks) == 48  # 48 classes, 48 looks
    assert len({t.marker.color for t in fig.data}) == 48
    assert fig.layout.legend.orientation == "h" and fig.layout.title.text is None
    hover = " ".join(t.text[0] for t in fig.data)
    assert "14: Stop (" in hover and " %)" in hover and ".png" in hover
    for colour_by in embedding.COLOUR_BY:
        at.radio(key="vis_colour").set_value(colour_by).run()
        assert not at.exception, (colour_by, at.exception)
    names = {t.name for t in charts["figures"][-1].data}
    assert names == {"from the dataset"}
    at.radio(key="vis_colour").set_value("correct or wrong").run()
    assert {t.name for t in charts["figures"][-1].data} <= {"correct", "wrong"}
    view = next(k for k in at.session_state if k.startswith("vis_map_"))[len("vis_map_"):]
    at.multiselect(key=f"vis_classes_{view}").set_value([14]).run()
    shown = sum(len(t.x) for t in charts["figures"][-1].data)
    assert 6 <= shown < 60  # the 6 stop signs of the test split, and what was taken for one


def test_new_images_get_their_own_outlined_marker_per_group(charts):
    mapped("benchmark", "Sample48")
    at = open_page("pages/visualise.py")
    at.selectbox(key="vis_dataset").set_value("Sample48")
    at.selectbox(key="vis_split").set_value("val").run()
    at.radio(key="vis_source").set_value("upload").run()
    stars, rings = [jitter(star_sign(k), k) for k in range(4)], [jitter(ring_sign(k), 50 + k) for k in range(4)]
    at.file_uploader(key="vis_files").set_value(uploads_of(stars, "star") + uploads_of(rings, "ring")).run()
    assert not at.exception, at.exception
    new = [t for t in charts["figures"][-1].data if t.name.startswith("new: group")]
    assert len(new) == 2 and len({t.marker.symbol for t in new}) == 2
    assert all(t.marker.line.width > 0 and len(t.x) == 4 for t in new)
    assert any("star0.png" in text for t in new for text in t.text)


def test_a_selection_of_64_points_is_shown_in_pages_saying_how_many(charts):
    mapped("benchmark", "Sample48")
    at = open_page("pages/visualise.py")
    at.selectbox(key="vis_dataset").set_value("Sample48")
    at.selectbox(key="vis_split").set_value("val").run()
    charts["select"] = [(0, i) for i in range(64)]
    at.run()
    assert not at.exception, at.exception
    assert any(s.value == "64 images selected" for s in at.subheader)
    assert any("Showing 1-40 of 64" in c.value for c in at.caption)
    assert len(at.get("image")) == 40
    view = next(k for k in at.session_state if k.startswith("vis_map_"))[len("vis_map_"):]
    at.number_input(key=f"vis_page_{view}").set_value(2).run()
    assert any("Showing 41-64 of 64" in c.value for c in at.caption)
    assert len(at.get("image")) == 24
    charts["select"] = [(0, 3)]
    at.run()
    assert any(s.value == "1 image selected" for s in at.subheader)


def test_groups_of_the_extra_bucket_become_a_new_class_then_join_an_existing_one(charts):
    workspaces.derive("Sample48", "Main")
    stars = [jitter(star_sign(k), k) for k in range(5)]
    ids = workspace_changes.add_images("Main", stars + stop_signs(4), split=workspaces.EXTRA,
                                       class_id=workspaces.EXTRA_CLASS, sources=[f"x{k}.png" for k in range(9)])
    mapped("benchmark", "Main")
    at = open_page("pages/visualise.py")
    at.selectbox(key="vis_dataset").set_value("Main")
    at.selectbox(key="vis_split").set_value("val").run()
    at.radio(key="vis_source").set_value("Extra bucket").run()
    assert not at.exception, at.exception
    lines = group_lines(at)
    new = next(k for k, g in enumerate(lines) if "likely a new class" in g and "(5 images)" in g)
    known = next(k for k, g in enumerate(lines) if "recognised as 14: Stop" in g and "(4 images)" in g)
    name = next(t for t in at.text_input if t.key and t.key.endswith(f"_{new}_name"))
    assert name.value.startswith("New sign")  # a suggestion: no empty name to fill in first
    name.set_value("Purple star")
    at.button(key=name.key.replace("_name", "_go")).click().run()
    assert not at.exception, at.exception
    ws = datasets.get_dataset("Main")
    cid = next(c for c, n in ws.classes.items() if n == "Purple star")
    assert any(s.value == f"Created class {cid}: Purple star: 5 images (3 to train, 1 to val, 1 to test)."
               for s in at.success), [s.value for s in at.success] + [e.value for e in at.error]
    assert [ws.counts[s].get(cid, 0) for s in datasets.SPLITS] == [3, 1, 1]
    # the workspace changed: the map is shown as it was, and the remaining group's buttons are the new ones
    assert any("has changed since this map was made" in w.value for w in at.warning)
    lines = group_lines(at)
    assert len(lines) == 1 and "recognised as 14: Stop" in lines[0]
    mode = next(r for r in at.radio if r.key and r.key.endswith("_0_mode"))
    assert mode.value == "an existing class"
    assert next(s for s in at.selectbox if s.key and s.key.endswith("_0_class")).value == 14
    at.button(key=mode.key.replace("_mode", "_go")).click().run()
    assert not at.exception, at.exception
    assert any(s.value.startswith("Added to class 14: Stop: 4 images (") for s in at.success)
    ws = datasets.get_dataset("Main")
    assert ws.split_size(workspaces.EXTRA) == 0
    assert {r["class_id"] for r in workspaces.current_added(ws) if r["id"] in ids[5:]} == {14}
    assert group_lines(at) == [] and at.radio(key="vis_source").value == "Extra bucket"


def test_uploaded_groups_become_a_class_of_the_chosen_workspace(charts):
    workspaces.derive("Sample48", "Main")
    mapped("benchmark", "Main")
    at = open_page("pages/visualise.py")
    at.selectbox(key="vis_dataset").set_value("Main")
    at.selectbox(key="vis_split").set_value("val").run()
    at.radio(key="vis_source").set_value("upload").run()
    at.file_uploader(key="vis_files").set_value(uploads_of([jitter(ring_sign(k), k) for k in range(4)], "ring")).run()
    go = next(b for b in at.button if b.key and b.key.endswith("_0_go"))
    assert go.label == "Give 4 images this class"
    go.click().run()
    assert not at.exception, at.exception
    ws = datasets.get_dataset("Main")
    cid = max(ws.classes)
    assert ws.classes[cid].startswith("New sign") and sum(ws.counts[s].get(cid, 0) for s in datasets.SPLITS) == 4
    recs = [r for r in workspaces.current_added(ws) if r["class_id"] == cid]
    assert sorted(r["source"] for r in recs) == [f"ring{k}.png" for k in range(4)]


def test_reimporting_duplicates_warns_in_class_and_upload_names(charts):
    workspaces.derive("Sample48", "Main")
    cid = workspace_changes.add_class("Main", "China 100")
    images = [jitter(star_sign(k), k) for k in range(3)]
    batch = [u for name, data, _ in uploads_of(images, "a") for u in uploads.read_bytes(name, data)]
    first = importing.import_images(batch, importing.ImportSettings(dataset="Main", class_id=cid, to="test"))
    assert first["added"] == 3
    at = open_page("pages/add_images.py")
    at.selectbox(key="add_class").set_value(cid)
    at.file_uploader(key="add_files").set_value(uploads_of(images, "again")).run()
    at.radio(key="add_to").set_value("test").run()
    assert any(s.value == "Preview: 3 uploads" for s in at.subheader)
    assert at.button(key="add_go").label == "Add 3 images to Main"
    at.button(key="add_go").click().run()
    run = finished(at.session_state["add_run"])
    assert run["status"] == "done" and run["result"]["added"] == 0
    at.run()
    assert not at.success
    assert any(w.value == "Nothing added: all 3 images are already in the workspace (duplicates of "
               f"{cid}: China 100)." for w in at.warning), [w.value for w in at.warning]
    refused = [e.value for e in at.error]
    assert any("again0.png: already in the workspace" in e and "uploaded as a0.png" in e for e in refused)
    assert not any("added/" in e for e in refused)  # no internal paths


def test_add_classes_speaks_in_class_names_and_plurals(charts):
    workspaces.derive("Sample48", "Main")
    cid = workspace_changes.add_class("Main", "China 100")
    workspace_changes.add_images("Main", [star_sign(0)], split=workspaces.EXTRA, class_id=workspaces.EXTRA_CLASS,
                                 sources=["x.png"])
    at = open_page("pages/add_classes.py")
    assert any("Extra bucket: 1 unlabelled image waiting" in c.value for c in at.caption)
    at.selectbox(key="classes_rename_id").set_value(cid)
    at.text_input(key="classes_rename_name").input("China 120")
    at.button[[b.label for b in at.button].index("Rename")].click().run()
    assert any(s.value == f"Class {cid}: China 100 is now called China 120." for s in at.success)
    at.selectbox(key="classes_remove_id").set_value(cid)
    at.button[[b.label for b in at.button].index("Remove")].click().run()
    assert any(s.value == f"Removed class {cid}: China 120." for s in at.success)

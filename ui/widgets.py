"""Widgets shared by the pages: dataset, workspace, model and novelty-method pickers, a clickable thumbnail grid, an
Integrated Gradients figure, model stats and run progress."""
from __future__ import annotations

import time

import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots
import streamlit as st

from core.base.text import plural
from core.analysis import explain, novelty
from core.data import datasets, workspaces
from core.learning import registry
from core.data.images import resize_to_input
from core.base import demo
from core.base.progress import describe_seconds
from core import runs
from ui.nav import rerun_page
from core.analysis.curves import history_frames


def pick_dataset(label: str = "Dataset", key: str = "dataset", prefer: list[int] | None = None,
                 default: str | None = None) -> datasets.DatasetInfo | None:
    """Choose a dataset; with ``prefer`` (a model's class ids) the datasets with exactly those classes come first;
    ``default``: the dataset preselected while the widget has no value yet (ignored if there is no such one)."""
    infos = datasets.list_datasets()
    if prefer is not None:
        infos = sorted(infos, key=lambda d: set(d.classes) != set(prefer))
    if not infos:
        st.warning("No datasets found. Build them with `python -m core datasets build --source ../shared/data`.")
        return None
    names = [d.name for d in infos]
    by_name = {d.name: d for d in infos}
    if default in by_name and st.session_state.get(key) not in by_name:
        st.session_state[key] = default

    def describe(n: str) -> str:
        d = by_name[n]
        return n + (" (embedded sample)" if d.embedded else f" (workspace of {d.base})" if d.kind == "workspace" else "")

    name = st.selectbox(label, names, key=key, persist_state="session", format_func=describe)
    return by_name[name]


def model_dataset(model: registry.ModelInfo | None) -> str | None:
    """The dataset a model was trained on if it is here, else the newest-listed workspace derived from it, else
    None."""
    if model is None or not model.dataset:
        return None
    infos = datasets.list_datasets()
    if any(d.name == model.dataset for d in infos):
        return model.dataset
    return next((d.name for d in infos if d.kind == "workspace" and d.base == model.dataset), None)


def _derive(base: str, name: str, *, mine: set[str]) -> datasets.DatasetInfo:
    """A new workspace ``name``; in demo mode, where other sessions' names are hidden, the next free name when
    another session took this one (before or while this one is made)."""
    for _ in range(5):
        if demo.enabled() and name not in mine:
            name = workspaces.free_name(name)
        try:
            return workspaces.derive(base, name)
        except workspaces.NameTaken:
            if not demo.enabled() or name in mine:
                raise
    return workspaces.derive(base, workspaces.free_name(name))


def pick_workspace(key: str) -> datasets.DatasetInfo | None:
    """Choose a workspace (what users change), or create one from a built dataset in one click."""
    spaces = workspaces.list_workspaces()
    built = [d for d in datasets.list_datasets() if d.kind == "built"]
    with st.expander("Create a workspace" if spaces else "Create a workspace to start", expanded=not spaces):
        st.caption("Built datasets never change: you add classes and images to a workspace derived from one "
                   "(nothing is copied; it records only your changes).")
        c1, c2, c3 = st.columns([2, 2, 1])
        names = [d.name for d in built]
        default = names.index("Testing") if "Testing" in names else 0
        base = c1.selectbox("Base dataset", names, index=default, key=f"{key}_base")
        suggested = workspaces.DEFAULT_NAME if workspaces.DEFAULT_NAME not in {w.name for w in spaces} else ""
        if demo.enabled():  # other sessions' workspaces are hidden, but their names are taken
            suggested = workspaces.free_name()
        name = c2.text_input("Workspace name", value=suggested, key=f"{key}_new")
        if c3.button("Create", key=f"{key}_create", type="primary" if not spaces else "secondary"):
            try:
                made = _derive(base, name.strip(), mine={w.name for w in spaces})
                st.session_state[key] = made.name
                st.rerun()
            except ValueError as e:
                st.error(str(e))
    if not spaces:
        return None
    names = [w.name for w in spaces]
    if st.session_state.get(key) not in names:
        st.session_state[key] = names[0]
    name = st.selectbox("Workspace", names, key=key, persist_state="session",
                        format_func=lambda n: f"{n} (workspace of {next(w for w in spaces if w.name == n).base})")
    return next(w for w in spaces if w.name == name)


def thumbnail_grid(images: list, captions: list[str], *, key: str, columns: int = 8, width: int = 72,
                   helps: list[str] | None = None) -> int | None:
    """Thumbnails with their caption as a link-style button under each: the index clicked in this run, or None.
    ``helps``: a tooltip per thumbnail (default "Open this image").

    ``st.image`` itself cannot be clicked, so the caption under it is the click target (FiftyOne opens a sample
    from its tile the same way).
    """
    clicked = None
    cols = st.columns(columns)
    for k, (image, caption) in enumerate(zip(images, captions)):
        with cols[k % columns]:
            st.image(image, width=width)
            if st.button(caption, key=f"{key}-{k}", type="tertiary",
                         help=f"{helps[k]}. Open this image" if helps else "Open this image"):
                clicked = k
    return clicked


def ig_figure(image, heatmap, *, title: str = "Integrated Gradients"):
    """The network's 48x48 input beside its attribution heat map, with a colour scale (0 = none, 1 = the most)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("input (48\u00d748)", title), horizontal_spacing=0.08)
    fig.add_trace(go.Image(z=resize_to_input(image)), row=1, col=1)
    fig.add_trace(go.Heatmap(z=heatmap, zmin=0.0, zmax=1.0, colorscale=[list(c) for c in explain.RED_YELLOW_SCALE],
                             colorbar=dict(title=dict(text="attribution<br>(share of max)", side="right"),
                                           thickness=12),
                             hovertemplate="x %{x}, y %{y}: %{z:.2f}<extra></extra>"), row=1, col=2)
    fig.update_yaxes(autorange="reversed", scaleanchor="x2", row=1, col=2)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(height=300, width=620, margin=dict(t=30, b=5, l=5, r=5))
    return fig


def top_k_bars(top: list[dict], pictograms: dict, *, k: int = 5) -> None:
    """A classifier's top-``k`` (``[{"class_id", "name", "p"}]``, best first) as bars, each with its class's
    pictogram (:func:`core.analysis.prediction.class_pictograms`) where there is one."""
    for t in top[:k]:
        cols = st.columns([1, 6])
        if pictograms.get(int(t["class_id"])):
            cols[0].image(str(pictograms[int(t["class_id"])]), width=32)
        cols[1].progress(float(t["p"]), text=f"{t['class_id']}: {t['name']} \u2014 {100 * t['p']:.1f} %")


def show_errors(errors: list[dict], *, limit: int = 20) -> None:
    """One line per refused file."""
    for e in errors[:limit]:
        st.error(e["error"])
    if len(errors) > limit:
        st.caption(f"... and {plural(len(errors) - limit, 'more refused file')}.")


def pick_model(label: str = "Model", key: str = "model") -> registry.ModelInfo | None:
    models = registry.list_models()
    if not models:
        st.warning("No models yet. Train one on the Improve model page.")
        return None
    names = [m.name for m in models]
    name = st.selectbox(label, names, key=key,
                        persist_state="session", format_func=lambda n: next(m for m in models if m.name == n).label())
    return next(m for m in models if m.name == name)


def pick_novelty_method(*, key: str) -> str:
    """Choose how the novelty check scores images (the registered methods, the default first chosen)."""
    names = novelty.list_methods()
    return st.selectbox("Novelty method", names, index=names.index(novelty.DEFAULT_METHOD), key=key,
                        persist_state="session",
                        help=f"How an image's novelty is scored; each threshold lets "
                             f"{novelty.THRESHOLD_ACCEPT:.0%} of the model's validation images through. "
                             + "; ".join(f"**{m}**: {novelty.get_method(m).description}" for m in names))


def show_model_stats(model: registry.ModelInfo) -> None:
    """Training stats and lineage of a model."""
    chain = registry.lineage(model.name)
    acc = model.metrics.get("test_acc") or model.metrics.get("best_val_acc")
    # Two tiles a row: four in a half-width column cut their values short ("97.0...", "scra...").
    for cols, tiles in zip((st.columns(2), st.columns(2)),
                           ((("Classes", model.num_classes), ("Epochs", model.epochs)),
                            (("Test acc" if "test_acc" in model.metrics else "Best val acc",
                              f"{acc:.2%}" if acc else "n/a"), ("Mode", model.mode)))):
        for col, (label, value) in zip(cols, tiles):
            col.metric(label, value)
    st.caption("Lineage: " + " \u2190 ".join(f"{m.name} ({m.mode}, {m.dataset})" for m in chain))
    if model.history:
        with st.expander("Training history"):
            loss, acc = history_frames(list(model.history))
            st.plotly_chart(px.line(acc, x="epoch", y="accuracy", color="curve", markers=True, height=240),
                            key=f"hist-{model.name}", config={"displayModeBar": False})


#: How a run's status reads, and its icon.
STATUS_WORDS = {"done": "Done", "failed": "Failed", "cancelled": "Cancelled", "interrupted": "Interrupted",
                "running": "Running", "queued": "Queued"}
STATUS_ICONS = {"done": ":material/check_circle:", "failed": ":material/error:", "cancelled": ":material/cancel:",
                "interrupted": ":material/warning:", "running": ":material/sync:", "queued": ":material/schedule:"}


def status_text(job: dict) -> str:
    """A run's status in words, said once: "Cancelled: no model or report was saved \u00b7 14:02, 3 Dec",
    "Failed: <reason>", "Running: epoch 3 \u00b7 45 % \u00b7 about 20 s left", "Queued \u00b7 2 of 3 in line"."""
    status = job["status"]
    rest = str(job.get("message") or "").strip()
    while rest.lower().startswith(status):  # the engine's and workers' messages repeat it ("failed: failed: ...")
        rest = rest[len(status):].lstrip(":;,. ")
    if status == "failed" and not rest:
        rest = str(job.get("error") or "").strip()
    ended = job.get("finished") or (job.get("updated") if status in ("cancelled", "interrupted") else None)
    text = STATUS_WORDS[status]
    if rest and rest.lower() not in ("started", "queued", "done"):
        text += (" " if rest.split()[0] in ("before", "after", "by") or rest[0] == "(" else ": ") + rest
    if ended and status in ("cancelled", "interrupted"):
        t = time.localtime(ended)
        text += f" \u00b7 {t.tm_hour:02d}:{t.tm_min:02d}, {t.tm_mday} {time.strftime('%b', t)}"
    if status == "queued" and job.get("queue_position"):
        place, of = job["queue_position"]
        text += f" \u00b7 {place} of {of} in line"
    if status == "running":
        text += f" \u00b7 {float(job.get('progress') or 0.0):.0%}".replace("%", " %") + (
            f" \u00b7 {describe_seconds(job['seconds_left'])} left" if job.get("seconds_left") is not None else "")
    return text


def run_status(job: dict) -> None:
    """One line of status for a run record: what it does and how it stands (:func:`status_text`), with a progress
    bar, or, for a failed run, one error box."""
    text = f"{STATUS_ICONS[job['status']]} {job['title']} \u2014 {status_text(job)}"
    if job["status"] == "failed":
        st.error(text)
        return
    st.progress(float(job.get("progress") or 0.0), text=text)


def follow_runs(kind: str, *, prefix: str, open_key: str) -> None:
    """The ``kind`` runs under way (progress, cancel) and this session's failed ones; when one ends done it opens
    (``st.session_state[open_key]`` = its id) and the page reruns. Call it inside ``st.fragment(run_every=...)``."""
    active = [j for j in runs.list_runs(kind, statuses=runs.ACTIVE) if demo.visible(j.get(demo.SESSION_FIELD))]
    for job in active:
        run_status(job)
        if runs.cancellable(job["id"]) and st.button("Cancel", key=f"{prefix}_cancel_{job['id']}"):
            runs.cancel(job["id"])
    watch = st.session_state.setdefault(f"_{prefix}_watch", set())
    watch |= {j["id"] for j in active}
    recs = {i: runs.get(i) for i in sorted(watch)}
    ended = {i for i, j in recs.items() if j is None or j["status"] not in runs.ACTIVE}
    watch -= ended
    st.session_state[f"_{prefix}_ended"] = (st.session_state.get(f"_{prefix}_ended", [])
                                            + [recs[i] for i in sorted(ended) if recs[i]])[-3:]
    for job in st.session_state[f"_{prefix}_ended"]:
        if job["status"] != "done":
            run_status(job)  # why it failed, with the fix
    done = [recs[i] for i in ended if recs[i] and recs[i]["status"] == "done"]
    if done:  # open the newest result at once
        st.session_state[open_key] = max(done, key=lambda j: j["created"])["id"]
        rerun_page()

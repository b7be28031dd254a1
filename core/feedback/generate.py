"""Make more like these: new labelled images near each mistake (:func:`generate`), kept as a preview file
(:func:`save_preview`, :func:`load_preview`), then added to a workspace with provenance (:func:`add_generated`).

A generated image's record (what Added images, Explore, Data issues and exports show):

- ``origin``: ``"generated"``; ``method``, ``method_label``; ``seed`` (the request's seed; image k of source i was
  made with :func:`image_seed`);
- ``source_dataset``, ``source_file``, ``source_report`` (or None), ``source_class_id``, ``predicted_class_id``
  (the model's verdict on the source);
- ``generator_version``: the method's version, plus the generator file's version for ``latent``;
- ``model``, ``model_version``: the classifier the method used; ``batch`` (one per add).

Generated images never go to a test split unless the caller forces it (the test would then measure the
generator, not the model), and then with a warning.
"""
from __future__ import annotations

import io
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from core.base.files import atomic_write_bytes
from core.base.progress import ProgressFn, StopFn, check
from core.base.text import plural
from core.data import built as ds
from core.data import datasets, workspace_changes, workspaces
from core.feedback import generator as gen
from core.feedback.methods import GenContext, get_method
from core.feedback.sources import Mistake
from core.learning import registry
from core.learning.models import load_checkpoint, model_from_checkpoint

ORIGIN = "generated"
#: Most images one request makes per source image, and in all.
MAX_PER_IMAGE = 50
MAX_IMAGES = 5000


@dataclass(frozen=True)
class Generated:
    """What :func:`generate` made."""
    #: (M, H, W, 3) uint8 when all sources share a size; else a list of (H_i, W_i, 3) arrays
    images: np.ndarray | list
    #: (M,) the true class of each image's source (its label)
    class_ids: np.ndarray
    #: (M,) index into ``mistakes``
    source: np.ndarray
    mistakes: list[Mistake]
    method: str
    seed: int
    model: str
    model_version: str
    generator_version: str
    message: str = ""
    #: seconds the method took for all sources, for the cost report
    seconds: float = field(default=0.0)


@dataclass(frozen=True)
class AddedGenerated:
    workspace: str
    ids: list[str]
    message: str


def image_seed(seed: int, source: int) -> int:
    """The seed the method got for source image ``source`` of a request with ``seed``."""
    return int(seed) * 100_003 + int(source)


def capped_per_image(n_sources: int, per_image: int) -> tuple[int, str]:
    """The images per source a request gets, and why it is fewer than asked (or "")."""
    if per_image < 1:
        raise ValueError(f"images per source must be at least 1, got {per_image}")
    n = min(int(per_image), MAX_PER_IMAGE, max(1, MAX_IMAGES // max(1, n_sources)))
    if n == per_image:
        return n, ""
    return n, (f"asked for {per_image:,} images per source image; made {n} each (at most {MAX_PER_IMAGE} per "
               f"image and {MAX_IMAGES:,} in all, {n_sources} source images)")


def generate(mistakes: Sequence[Mistake], *, method: str, per_image: int, seed: int = 0, model: str = "benchmark",
             generator_path: str | Path = gen.SHIPPED, progress: ProgressFn | None = None,
             should_stop: StopFn | None = None) -> Generated:
    """``per_image`` new images near each of ``mistakes`` with ``method`` (:func:`core.feedback.methods.list_methods`),
    each labelled with its source's true class. ``model``: the classifier the method consults (a registry name or
    a checkpoint path; a report's mistakes use the report's model). ValueError: an unknown method, a class the model
    does not know, a generator of another class set; a request above the caps is cut down, with a message."""
    m = get_method(method)
    mistakes = list(mistakes)
    if not mistakes:
        raise ValueError("no source images: pick at least one image to make more like")
    n, message = capped_per_image(len(mistakes), per_image)
    ckpt = load_checkpoint(registry.model_path(model))
    ctx = GenContext(model_from_checkpoint(ckpt), list(ckpt["class_ids"]), Path(generator_path))
    for mk in mistakes:
        ctx.row(mk.class_id)
    version = f"{m.name} v{m.version}" + (f", generator {ctx.generator.version}" if m.uses_generator else "")
    start, out = time.time(), []
    for i, mk in enumerate(mistakes):
        check(should_stop)
        confuser = mk.predicted_id if mk.wrong and mk.predicted_id in ctx.class_ids else None
        made = m.fn(mk.image, mk.class_id, confuser, ctx=ctx, n=n, seed=image_seed(seed, i))
        out.extend(made)
        if progress is not None:
            progress((i + 1) / len(mistakes), f"{m.label}: {i + 1}/{len(mistakes)} source images")
    same = len({im.shape for im in out}) == 1
    return Generated(np.stack(out) if same else out, np.repeat([mk.class_id for mk in mistakes], n),
                     np.repeat(np.arange(len(mistakes)), n), mistakes, m.name, int(seed), registry.model_label(model),
                     registry.file_version(registry.model_path(model)), version, message,
                     round(time.time() - start, 2))


def check_split(split: str, *, force_test: bool = False) -> str:
    """"" for a split generated images may go to; the warning for a forced test split; ValueError otherwise."""
    if split not in ds.SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(ds.SPLITS)}")
    if split != "test":
        return ""
    if not force_test:
        raise ValueError("generated images do not go to a test split: the test would then measure the generator, "
                         "not the model. Add them to train (or val); force it only if you mean it")
    return ("warning: generated images were added to a test split; its accuracy now partly measures the "
            "generator (switch generated images off to measure without them)")


def add_generated(workspace: str, gen_: Generated, *, split: str = "train", keep: Sequence[int] | None = None,
                  force_test: bool = False) -> AddedGenerated:
    """Add the generated images (all, or those at ``keep``) to ``workspace`` with their provenance, as one change
    (one undo step). ValueError: a built dataset (derive a workspace first), a class the workspace lacks, a test
    split without ``force_test``; nothing is written then."""
    warning = check_split(split, force_test=force_test)
    workspaces.require_writable(workspace)
    picked = list(range(len(gen_.class_ids))) if keep is None else sorted({int(k) for k in keep})
    if not picked:
        raise ValueError("no generated images chosen: keep at least one")
    if picked[0] < 0 or picked[-1] >= len(gen_.class_ids):
        raise ValueError(f"keep holds positions 0 to {len(gen_.class_ids) - 1}; got {picked[-1]}")
    info = workspaces.read_info(workspaces.workspace_dir(workspace))
    missing = sorted({int(gen_.class_ids[k]) for k in picked} - set(info.classes))
    if missing:
        raise ValueError(f"workspace {workspace!r} has no class {missing[0]}; add the images to a workspace of the "
                         f"source's dataset ({gen_.mistakes[0].dataset})")
    batch = "gen-" + time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]
    records, sources = [], []
    for k in picked:
        mk = gen_.mistakes[int(gen_.source[k])]
        records.append(_record(gen_, mk, batch))
        sources.append(f"generated by {gen_.method} from {mk.dataset} {mk.file}")
    ids = workspace_changes.add_images(workspace, [np.ascontiguousarray(gen_.images[k]) for k in picked],
                                       split=split, class_id=[int(gen_.class_ids[k]) for k in picked],
                                       sources=sources, records=records)
    message = f"added {plural(len(ids))} generated by {get_method(gen_.method).label} to {split} of {workspace}"
    if not workspaces.generated_in_use(datasets.get_dataset(workspace)):
        message += ("; generated images are switched off in this workspace, so they are kept but not used in "
                    "training or evaluation until you switch them on (Explore or Added images)")
    return AddedGenerated(workspace, ids, message + (f"; {warning}" if warning else ""))


def _record(g: Generated, mk: Mistake, batch: str) -> dict:
    return {"origin": ORIGIN, "method": g.method, "method_label": get_method(g.method).label, "seed": g.seed,
            "source_dataset": mk.dataset, "source_file": mk.file, "source_report": mk.report,
            "source_class_id": mk.class_id, "predicted_class_id": mk.predicted_id,
            "generator_version": g.generator_version, "model": g.model, "model_version": g.model_version,
            "batch": batch}


# -- preview files -------------------------------------------------------------------------------------------------

def save_preview(path: str | Path, g: Generated) -> Path:
    """Write a :class:`Generated` to one ``.npz`` (images, sources' images, and a JSON of the rest), atomically."""
    images = list(g.images)
    meta = {k: getattr(g, k) for k in ("method", "seed", "model", "model_version", "generator_version", "message",
                                        "seconds")}
    meta["mistakes"] = [{k: getattr(mk, k) for k in ("class_id", "predicted_id", "confidence", "dataset", "file",
                                                     "report")} for mk in g.mistakes]
    arrays = {f"g{i}": im for i, im in enumerate(images)} | {f"s{i}": mk.image for i, mk in enumerate(g.mistakes)}
    buf = io.BytesIO()
    np.savez_compressed(buf, class_ids=np.asarray(g.class_ids, np.int64), source=np.asarray(g.source, np.int64),
                        meta=np.asarray(json.dumps(meta)), **arrays)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def load_preview(path: str | Path) -> Generated:
    """Read what :func:`save_preview` wrote; ValueError for a missing or foreign file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            class_ids, source = z["class_ids"], z["source"]
            images = [z[f"g{i}"] for i in range(len(class_ids))]
            mistakes = [Mistake(z[f"s{i}"], **m) for i, m in enumerate(meta.pop("mistakes"))]
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"{path}: not a readable preview of generated images ({e})") from None
    same = len({im.shape for im in images}) == 1
    return Generated(np.stack(images) if same and images else images, class_ids, source, mistakes, **meta)

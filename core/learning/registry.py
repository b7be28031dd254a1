"""The model registry: shipped models in ``artifacts/`` plus trained ones under the data root, recorded in the store.

Shipped models are read-only: :func:`delete_model` refuses them. In demo mode (:mod:`core.base.demo`) a model
trained in a demo session records the session, and only that session may overwrite or delete it
(:func:`check_writable`); models made outside a session are shared and read-only there too.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from core.base import config, demo, store
from core.data import datasets
from core.learning.models import load_checkpoint, save_checkpoint


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: Path
    architecture: str
    num_classes: int
    dataset: str
    parent: str | None
    mode: str
    epochs: int
    metrics: dict
    created: str
    shipped: bool
    history: tuple = ()
    class_ids: tuple = ()  # the model's outputs, in order
    session: str | None = None  # the demo session that trained it (None: shared)

    def label(self) -> str:
        acc = self.metrics.get("test_acc") or self.metrics.get("best_val_acc")
        acc_txt = f", {'test' if 'test_acc' in self.metrics else 'val'} acc {acc:.2%}" if acc else ""
        return f"{self.name} ({self.architecture}, {self.num_classes} classes, {self.dataset}{acc_txt})"


def _record(name: str, path: Path, ckpt: dict, shipped: bool) -> dict:
    return {"name": name, "path": str(path), "architecture": ckpt["architecture"],
            "num_classes": len(ckpt["class_ids"]), "dataset": ckpt["dataset"], "parent": ckpt["parent"],
            "mode": ckpt["mode"], "epochs": ckpt["epochs"], "metrics": ckpt.get("metrics", {}),
            "created": ckpt["created"], "shipped": shipped, "history": ckpt.get("history", []),
            "class_ids": [int(c) for c in ckpt["class_ids"]]}


def _info(rec: dict) -> ModelInfo:
    fields = {k: rec[k] for k in ModelInfo.__dataclass_fields__
              if k not in ("path", "history", "class_ids", demo.SESSION_FIELD)}
    return ModelInfo(**fields, path=Path(rec["path"]), history=tuple(rec.get("history") or ()),
                     class_ids=tuple(rec.get("class_ids") or ()), session=rec.get(demo.SESSION_FIELD))


def file_version(path: str | os.PathLike) -> str:
    """The version of a model file: the first 16 hex digits of its SHA-256 (cached per path, size and mtime)."""
    st = os.stat(path)
    return _hash_file(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _hash_file(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name or ""):
        raise ValueError(f"model name {name!r}: use 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit")
    return name


def register(name: str, ckpt: dict, *, overwrite: bool = False) -> ModelInfo:
    """Save a trained checkpoint atomically under the data root and record it in the store (with the demo
    session that made it, in demo mode). ``overwrite`` replaces a model of that name, if it may be changed."""
    check_name(name)
    existing = next((m for m in list_models() if m.name == name), None)
    if existing is not None and not overwrite:
        raise ValueError(f"a model named {name!r} exists already; choose another name")
    if existing is not None:
        check_writable(existing)
    path = config.models_dir() / f"{name}.pt"
    save_checkpoint(ckpt, path)
    rec = {**_record(name, path, ckpt, shipped=False), **demo.owner_fields()}
    store.upsert("models", rec, key="name")
    return _info(rec)


def check_writable(model: ModelInfo) -> None:
    """DemoRefused (demo mode) unless this session may overwrite or delete ``model``: one it trained itself,
    never a shipped model, another session's or a shared one."""
    what = f"{'shipped ' if model.shipped else ''}model {model.name!r}"
    demo.check_writable(None if model.shipped else model.session, what=what,
                        fix="train a model of your own under a new name (Improve model)")


def check_file_writable(path: str | os.PathLike) -> None:
    """DemoRefused (demo mode) before rewriting a checkpoint file in place (``evaluate --record``, ``train
    --out``): a shipped model's file, or a registered model's this session may not change."""
    if not demo.enabled():
        return
    path = Path(path).resolve()
    for m in list_models():
        if m.path.resolve() == path:
            check_writable(m)
    if config.ARTIFACTS_DIR.resolve() in path.parents:
        demo.check_writable(None, what=f"{path.name} in the shipped models' folder",
                            fix="write the checkpoint elsewhere")


def delete_model(name: str) -> None:
    """Delete a trained model: its store record first (it leaves every picker at once), then its file. Shipped
    models are part of the project and never deleted; in demo mode a session deletes only models it trained."""
    model = get_model(name)
    if model.shipped:
        error = demo.DemoRefused if demo.enabled() else ValueError
        raise error(f"model {name!r} is shipped with the project (artifacts/) and read-only; it cannot be deleted")
    check_writable(model)
    store.remove("models", key="name", value=name)
    model.path.unlink(missing_ok=True)


def list_models() -> list[ModelInfo]:
    """Shipped models first (from ``artifacts/*.pt``), then trained ones whose file still exists."""
    out: dict[str, ModelInfo] = {}
    cached = {r["path"]: r for r in store.all_records("models")}
    for path in sorted(config.ARTIFACTS_DIR.glob("*.pt")):
        rec = cached.get(str(path))
        if rec is None or not rec.get("shipped") or rec.get("mtime") != path.stat().st_mtime or "class_ids" not in rec:
            try:
                rec = _record(path.stem, path, load_checkpoint(path), shipped=True)
                rec["mtime"] = path.stat().st_mtime
            except ValueError:
                continue
            store.upsert("models", rec, key="name")
        out[rec["name"]] = _info(rec)
    for rec in cached.values():
        if not rec.get("shipped") and Path(rec["path"]).is_file() and rec["name"] not in out:
            out[rec["name"]] = _info(rec)
    return list(out.values())


def get_model(name: str) -> ModelInfo:
    for m in list_models():
        if m.name == name:
            return m
    raise ValueError(f"no model named {name!r}; available: {', '.join(m.name for m in list_models()) or 'none'}")


def model_path(ref: str) -> Path:
    """The file of a model given as a registry name or a checkpoint path (a ``.pt`` name or an existing file)."""
    path = Path(ref)
    return path if path.suffix == ".pt" or path.is_file() else get_model(ref).path


def model_input(ref: str) -> dict:
    """How a run records a model it reads (a registry name or a checkpoint path): ``{name, sha256}``."""
    path = model_path(ref)
    if not path.is_file():
        raise ValueError(f"{ref}: no such model file")
    return {"name": ref, "sha256": file_version(path)}


def model_label(ref: str) -> str:
    """How a model given as a registry name or a checkpoint path is named in records: the name, or the file's stem."""
    path = Path(ref)
    return path.stem if path.suffix == ".pt" or path.is_file() else ref


def lineage(name: str, models: list[ModelInfo] | None = None) -> list[ModelInfo]:
    """The model and its ancestors, newest first (stops at an unknown parent or a loop). Pass ``models`` (from
    :func:`list_models`) when tracing many models, so the registry is read once."""
    chain, seen = [], set()
    models = {m.name: m for m in (models if models is not None else list_models())}
    while name and name in models and name not in seen:
        seen.add(name)
        chain.append(models[name])
        name = models[name].parent
    return chain


def default_dataset(base: ModelInfo | None) -> str | None:
    """The dataset to offer first for ``base``: a workspace derived from its own dataset (where classes get
    added), else that dataset itself."""
    if base is None:
        return None
    infos = datasets.list_datasets()
    derived = [d.name for d in infos if d.kind == "workspace" and d.base == base.dataset]
    return derived[0] if derived else next((d.name for d in infos if d.name == base.dataset), None)

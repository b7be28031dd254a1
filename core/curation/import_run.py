"""The ``import`` run kind: add uploads (files, folders, zips) to a workspace with the settings of
:class:`core.curation.importing.ImportSettings` (variants, duplicates, leakage, smart segregation).

The app stages its uploads under the data root first (:func:`stage_uploads`); such a run removes them when it
ends, done or not.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from core import runs
from core.base import config
from core.curation import importing
from core.data import augment, datasets, quotas, staging, uploads
from core.learning import registry
from core.learning.models import load_checkpoint, model_from_checkpoint


@dataclass(frozen=True)
class ImportRun:
    """Add the images behind ``paths`` to a workspace as ``settings`` say."""
    settings: importing.ImportSettings
    #: image files, folders (walked) or zip archives
    paths: tuple[str, ...]
    #: registry name or checkpoint path whose features drive smart segregation (needed for "trainval")
    model: str | None = None
    #: the paths are the app's staged uploads (:func:`stage_uploads`), removed when the run ends
    staged: bool = False

    def check(self) -> dict:
        info = self.settings.check_target()
        if not self.paths:
            raise ValueError("nothing to add: give image files, folders or zips")
        if self.settings.to == "trainval" and not self.model:
            raise ValueError("smart segregation into train and val needs a model for its features; choose one")
        return {"dataset": datasets.dataset_input(info),
                "model": registry.model_input(self.model) if self.model else None,
                "augment_version": augment.groups_version()}  # the groups that made the variants

    def title(self) -> str:
        return f"add {importing.plural(len(self.paths), 'upload')} to {self.settings.dataset}"

    @classmethod
    def from_json(cls, data: dict) -> "ImportRun":
        """From the record's JSON form: ``{settings: {dataset, class_id, groups, ...}, paths, model, staged}``."""
        if not isinstance(data.get("settings"), dict):
            raise ValueError("an import config needs its import settings under 'settings'")
        settings = runs.config_from_fields(importing.ImportSettings, data["settings"], kind="import settings")
        return runs.config_from_fields(cls, data, kind="import", settings=settings)


def stage_uploads(items: list[tuple[str, bytes]]) -> list[str]:
    """Keep the app's uploads under the data root for an import run (``ImportRun(staged=True)`` removes them).
    In demo mode they count against the session's upload quota first (a zip by its expanded size): a batch that
    would pass it, or full workspaces, are refused before anything is written (:func:`quotas.charge_uploads`)."""
    quotas.charge_uploads(items)
    return staging.stage(items, _staging())


def _staging() -> Path:
    return config.runs_dir() / "uploads"


def run_import(ctx: runs.RunContext, cfg: ImportRun) -> dict:
    try:
        found = uploads.read_paths(cfg.paths)
        model = model_from_checkpoint(load_checkpoint(registry.model_path(cfg.model))) if cfg.model else None
        return importing.import_images(found, cfg.settings, model=model, progress=ctx.progress,
                                       should_stop=ctx.should_stop)
    finally:
        if cfg.staged:
            for p in {Path(p).parent.parent for p in cfg.paths if _staging() in Path(p).parents}:
                shutil.rmtree(p, ignore_errors=True)


runs.register_kind("import", ImportRun, run_import, from_json=ImportRun.from_json)

"""The ``generate`` run kind: make more like these, from a report's rows or a dataset's files, into a preview file
in the run's folder (``preview.npz``); the page shows it with :func:`load_preview` and adds the kept images with
:func:`core.feedback.generate.add_generated`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core import runs
from core.analysis import reports
from core.analysis.explain import report_model_file
from core.base.text import plural
from core.data import datasets
from core.feedback import generate as generation
from core.feedback import generator as gen
from core.feedback import methods, sources
from core.learning import registry
from core.learning.models import load_checkpoint

PREVIEW_FILE = "preview.npz"


@dataclass(frozen=True)
class GenerateRun:
    """Generate ``per_image`` images near each source with ``method``: rows ``indices`` of report ``report`` (the
    report's model is used), or files ``refs`` of ``dataset`` classified by ``model``."""
    method: str
    per_image: int = 4
    seed: int = 0
    model: str = "benchmark"
    report: str | None = None
    indices: tuple[int, ...] = ()
    dataset: str | None = None
    refs: tuple[str, ...] = ()

    def check(self) -> dict:
        method = methods.get_method(self.method)
        generation.capped_per_image(max(1, len(self.indices) or len(self.refs)), int(self.per_image))
        if (self.report is None) == (self.dataset is None):
            raise ValueError("give either a report (and its rows) or a dataset (and its files) to start from")
        if self.report is not None:
            report = reports.load_report(self.report)
            if report.stale:
                raise ValueError(f"report {self.report}: {report.stale}")
            model = report_model_file(report)
            if not self.indices:
                raise ValueError("pick at least one image of the report")
            n = len(report.predictions.y_true)
            if bad := [i for i in self.indices if not 0 <= int(i) < n]:
                raise ValueError(f"report {self.report} has {n:,} images (rows 0 to {n - 1}); row {bad[0]} is not one")
            true_ids = report.predictions.y_true[np.asarray(self.indices, int)]
            inputs = {"report": self.report, "model": registry.model_input(model)}
        else:
            info = datasets.get_dataset(self.dataset)
            true_ids = [r["class_id"] for r in sources.index_rows(info, self.refs)]
            inputs = {"dataset": datasets.dataset_input(info), "model": registry.model_input(self.model)}
        classes = load_checkpoint(registry.model_path(inputs["model"]["name"]))["class_ids"]
        sources.check_classes(true_ids, classes, model=self.model_ref())
        if method.uses_generator:
            inputs["generator"] = gen.load_generator(class_ids=classes).version  # refuses another class set
        return inputs

    def title(self) -> str:
        n = len(self.indices) or len(self.refs)
        return f"make {self.per_image} more like each of {plural(n)} ({methods.get_method(self.method).label})"

    def model_ref(self) -> str:
        """The classifier the method consults: the report's model, else ``model``."""
        return reports.load_report(self.report).summary["model"] if self.report is not None else self.model


def run_generate(ctx: runs.RunContext, cfg: GenerateRun) -> dict:
    ctx.progress(0.02, "reading the source images")
    if cfg.report is not None:
        mistakes = sources.from_report(cfg.report, indices=cfg.indices)
    else:
        mistakes = sources.from_images(cfg.dataset, cfg.refs, model=cfg.model)
    ctx.check()
    made = generation.generate(mistakes, method=cfg.method, per_image=cfg.per_image, seed=cfg.seed,
                               model=cfg.model_ref(), progress=lambda f, m: ctx.progress(0.05 + 0.9 * f, m),
                               should_stop=ctx.should_stop)
    generation.save_preview(runs.run_dir(ctx.run_id) / PREVIEW_FILE, made)
    return {"preview": PREVIEW_FILE, "images": len(made.class_ids), "sources": len(mistakes),
            "message": made.message, "seconds": made.seconds}


def load_preview(run_id: str) -> generation.Generated:
    """The images a finished generate run made; ValueError if it has none (not done, failed, or removed)."""
    path = runs.run_dir(run_id) / PREVIEW_FILE
    if not path.is_file():
        raise ValueError(f"run {run_id} has no generated images (not finished, failed, or removed)")
    return generation.load_preview(path)


runs.register_kind("generate", GenerateRun, run_generate, limit=2)

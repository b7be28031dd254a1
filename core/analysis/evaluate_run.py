"""The ``evaluate`` run kind: evaluate a model on a dataset split and keep the result as a report (report id = run
id), the one way the Evaluate page and ``python -m core evaluate`` make reports."""
from __future__ import annotations

from dataclasses import dataclass

from core import runs
from core.analysis import reports
from core.analysis.evaluation import evaluate_checkpoint
from core.base import config
from core.base.progress import sub_range
from core.data import datasets
from core.learning import registry
from core.learning.models import load_checkpoint

#: Which images of the split an evaluation judges (see :attr:`EvaluateRun.classes`).
CLASS_CHOICES = ("model", "all")


@dataclass(frozen=True)
class EvaluateRun:
    """Evaluate a model on a dataset split and keep the result as a report (report id = run id)."""
    #: registry name or checkpoint path
    model: str
    dataset: str
    split: str = "test"
    #: "model": only the images of the model's classes (as a model should be judged); "all": every image, so
    #: images of classes the model lacks count as errors (the published table's row 20 did this)
    classes: str = "model"
    #: test-time augmentation: probabilities averaged over :data:`core.learning.tta.VIEWS` (about 6x the time)
    tta: bool = False

    def check(self) -> dict:
        if self.classes not in CLASS_CHOICES:
            raise ValueError(f"classes must be 'model' or 'all', got {self.classes!r}")
        return {"model": registry.model_input(self.model),
                "dataset": datasets.dataset_input(datasets.require_split(self.dataset, self.split))}

    def title(self) -> str:
        return f"evaluate {self.model} on {self.dataset}/{self.split}" + (" with TTA" if self.tta else "")


def run_evaluate(ctx: runs.RunContext, cfg: EvaluateRun) -> dict:
    info = datasets.get_dataset(cfg.dataset)
    path = registry.model_path(cfg.model)
    ckpt = load_checkpoint(path)
    ctx.progress(0.02, "loading images")
    split = datasets.load_split(info, cfg.split, classes=ckpt["class_ids"] if cfg.classes == "model" else None)
    if len(split) == 0:
        raise ValueError(f"{cfg.dataset}/{cfg.split} has no images of the model's classes")
    summary, preds = evaluate_checkpoint(ckpt, split.images, split.labels, files=split.files,
                                         progress=sub_range(ctx.progress, 0.05, 0.95), should_stop=ctx.should_stop,
                                         tta=bool(cfg.tta))
    ctx.check()
    summary["model_classes"] = [int(c) for c in ckpt["class_ids"]]  # model diffs compare on the shared classes
    rec = reports.save_report(ctx.run_id, summary, preds, model=cfg.model, model_version=registry.file_version(path),
                              dataset=info, split=cfg.split, classes=cfg.classes)
    return {"report": ctx.run_id, **{k: rec[k] for k in ("accuracy", "macro_f1", "n", "dataset_version")}}


runs.register_kind("evaluate", EvaluateRun, run_evaluate, limit=config.MAX_CONCURRENT_EVALUATIONS)

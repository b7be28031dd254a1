"""The ``anchor`` run kind: explain one image of a report with Anchors, kept beside the report."""
from __future__ import annotations

from dataclasses import dataclass

from core import runs
from core.analysis import explain, reports
from core.learning import registry
from core.learning.models import load_checkpoint, model_from_checkpoint


@dataclass(frozen=True)
class AnchorRun:
    """Explain one image of a report with Anchors."""
    report: str
    index: int
    threshold: float = 0.95
    seed: int = 0

    def check(self) -> dict:
        rep = reports.load_report(self.report)
        if rep.stale:
            raise ValueError(rep.stale)
        if not 0 <= self.index < len(rep.predictions.y_true):
            raise ValueError(f"image index {self.index} is outside the report's {len(rep.predictions.y_true)} images")
        if not 0 < self.threshold < 1:
            raise ValueError(f"precision threshold must lie in (0, 1), got {self.threshold}")
        explain.report_model_file(rep)  # the model that made the report, or a ValueError saying to evaluate again
        return {"report": self.report, "model": registry.model_input(rep.summary["model"])}

    def title(self) -> str:
        return f"anchor for image {self.index} of {self.report}"


def run_anchor(ctx: runs.RunContext, cfg: AnchorRun) -> dict:
    report = reports.load_report(cfg.report)
    (image,) = reports.report_images(report, [cfg.index])
    ckpt = load_checkpoint(explain.report_model_file(report))
    res = explain.anchor_explanation(model_from_checkpoint(ckpt), image, threshold=cfg.threshold, seed=cfg.seed,
                                     progress=ctx.progress, should_stop=ctx.should_stop)
    out = reports.save_anchor(cfg.report, ctx.run_id, mask=res.mask, segments=res.segments)
    return {"report": cfg.report, "index": cfg.index, "precision": float(res.precision),
            "coverage": float(res.coverage), "anchor": [int(a) for a in res.anchor],
            "prediction": int(ckpt["class_ids"][res.prediction]), "met_threshold": bool(res.met_threshold),
            "num_samples": int(res.num_samples), "file": str(out)}


runs.register_kind("anchor", AnchorRun, run_anchor, limit=2)

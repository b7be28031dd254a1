"""The ``build`` run kind: build the standard datasets from the shared npz files (each appears atomically)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core import runs
from core.base import demo
from core.data import builds


@dataclass(frozen=True)
class BuildRun:
    """Build the standard datasets from the shared npz files (each built dataset appears atomically)."""
    source: str
    names: tuple[str, ...] = builds.STANDARD_DATASETS
    seed: int = 0

    def check(self) -> dict:
        demo.refuse_shared_write("building the standard datasets")
        unknown = sorted(set(self.names) - set(builds.STANDARD_DATASETS))
        if unknown:
            raise ValueError(f"unknown datasets {unknown}; valid: {', '.join(builds.STANDARD_DATASETS)}")
        if not Path(self.source).is_dir():
            raise ValueError(f"source folder {self.source!r} does not exist")
        return {"source": str(Path(self.source).resolve())}

    def title(self) -> str:
        return f"build {', '.join(self.names)}"


def run_build(ctx: runs.RunContext, cfg: BuildRun) -> dict:
    return builds.build_standard(Path(cfg.source), seed=cfg.seed, names=cfg.names, progress=ctx.progress,
                                 should_stop=ctx.should_stop)


runs.register_kind("build", BuildRun, run_build)

"""Run kinds for tests/test_workers.py, in a module a worker process can import (runs of a registered kind
execute in a worker process that imports the module registering it)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

from core import runs
from core.base import config


@dataclass(frozen=True)
class Probe:
    """What the worker should do: ``work`` is "report" (say where it ran), "wait" (loop until cancelled or a file
    appears), "exit" (die without recording an end) or "fail"."""

    work: str = "report"
    #: a file the worker writes its pid to, once started
    pid_file: str = ""

    def check(self) -> dict:
        if self.work not in ("report", "wait", "exit", "fail"):
            raise ValueError(f"unknown work {self.work!r}")
        return {}

    def title(self) -> str:
        return f"probe {self.work}"


def run_probe(ctx, cfg: Probe) -> dict:
    if cfg.pid_file:
        with open(cfg.pid_file, "w") as f:
            f.write(str(os.getpid()))
    if cfg.work == "exit":
        os._exit(7)
    if cfg.work == "fail":
        raise RuntimeError("probe failed on purpose")
    if cfg.work == "wait":
        while True:
            ctx.check()
            ctx.progress(0.5, "waiting")
            time.sleep(0.05)
    ctx.progress(0.5, "half way", {"step": 1})
    return {"pid": os.getpid(), "nice": os.nice(0), "threads": torch.get_num_threads(),
            "data_root": str(config.data_root())}


runs.register_kind("probe", Probe, run_probe, limit=2)

"""Where a training step's time goes, layer by layer: our trainer's path against the bare loop's.

Usage::

    python bench/profile_step.py [--arch bn_stn] [--precision fp32|bf16] [--steps 12] [--rounds 3]

One step = forward, cross-entropy, backward, optimizer step on a batch of 128 (synthetic images from a seeded
generator: the time of a step does not depend on what the pixels show). Ours is the network as the trainer runs it:
channels-last, the training shortcuts of ``TrafficSignNet._features`` (the published network's one stem; batch norm
and max-pool as one step; the narrow first convolution), the fused AdamW, bf16 autocast if asked. The bare loop is
``bench_train.py``'s: the layers one after another in the default layout, fp32, the for-loop AdamW.

Each stage's forward time is the wall time between its output and the previous stage's; its backward time is the
wall time between the gradient of its output and the gradient of its input (tensor hooks; the CPU runs the backward
in order, on the calling thread). Medians over the steps of every round, rounds alternating ours and bare, so a drift
in the machine's speed hits both alike. The header names the CPU's kernel set (e.g. AVX2, AVX512): the shortcuts
were measured on one of them and their gains differ between them.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import plain_forward  # noqa: E402
from core.learning import memory  # noqa: E402
from core.learning.models import build_model, describe_layer  # noqa: E402

BATCH = 128
CLASSES = 43


class Stamps:
    """Times of each stage's output in the forward pass and of each stage's gradient in the backward pass."""

    def __init__(self) -> None:
        self.forward: list[tuple[str, float]] = []
        self.backward: list[tuple[str, float]] = []

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor:
        self.forward.append((name, time.perf_counter()))
        if x.requires_grad:
            x.register_hook(lambda g: self.backward.append((name, time.perf_counter())))
        return x


def _step_stages(model, x: torch.Tensor, ours: bool, stamps: Stamps) -> torch.Tensor:
    """The logits of one training forward pass, every stage reported to ``stamps``."""
    stamps("input", x)
    h = stamps("lcn", model.lcn(x)) if not isinstance(model.lcn, torch.nn.Identity) else x
    h = stamps("spatial transformer", model.stn(h)) if not isinstance(model.stn, torch.nn.Identity) else h
    if ours:
        h = model._features(h, stage=stamps)
    else:
        for i, layer in enumerate(model.features):
            h = stamps(f"{i} {describe_layer(layer)}", layer(h))
    return stamps("head + classifier", model.classifier(model.head(h)))


def profile(arch: str, ours: bool, precision: str, steps: int, warmup: int = 3, seed: int = 0) -> dict:
    """Per-stage forward and backward milliseconds (medians over ``steps``) and whole-step parts."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = torch.randn(BATCH, 3, 48, 48, generator=gen)
    y = torch.randint(0, CLASSES, (BATCH,), generator=gen)
    model = build_model(arch, CLASSES).train()
    if ours:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4, fused=True)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    bf16 = ours and precision == "bf16"
    fwd, bwd, parts = defaultdict(list), defaultdict(list), defaultdict(list)
    for i in range(warmup + steps):
        stamps = Stamps()
        t0 = time.perf_counter()
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            loss = F.cross_entropy(_step_stages(model, x, ours, stamps).float(), y)
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        t3 = time.perf_counter()
        if i < warmup:
            continue
        prev = None
        for name, t in stamps.forward:
            if prev is not None:
                fwd[name].append(1000 * (t - prev))
            prev = t
        # the gradient of a stage's output arrives, then, after the stage's backward, that of its input
        order = stamps.backward
        for (name, t), (_, t_next) in zip(order, order[1:] + [("end", t2)]):
            bwd[name].append(1000 * (t_next - t))
        parts["forward"].append(1000 * (t1 - t0))
        parts["backward"].append(1000 * (t2 - t1))
        parts["optimizer"].append(1000 * (t3 - t2))
        parts["step"].append(1000 * (t3 - t0))
    return {"forward": fwd, "backward": bwd, "parts": parts, "order": [n for n, _ in stamps.forward[1:]]}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="bn_stn")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="ours only; bare is fp32")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    kept = memory.keep_freed_maps()  # as the trainer does for CPU runs; the bare loop runs under it too
    print(f"arch {args.arch}, batch {BATCH}, ours in {args.precision}, torch {torch.__version__}, "
          f"kernel set {torch.backends.cpu.get_cpu_capability()}, threads {torch.get_num_threads()}, "
          f"allocator thresholds {kept}")
    runs: dict[str, list[dict]] = {"ours": [], "bare": []}
    for r in range(args.rounds):
        for who in (("ours", "bare") if r % 2 == 0 else ("bare", "ours")):
            runs[who].append(profile(args.arch, who == "ours", args.precision, args.steps, seed=r))
    for who, results in runs.items():
        print(f"\n{who}: {'stage':50s} forward ms  backward ms")
        for name in results[0]["order"]:
            f = _median([v for res in results for v in res["forward"].get(name, [])])
            b = _median([v for res in results for v in res["backward"].get(name, [])])
            print(f"  {name:54s} {f:9.2f}  {b:10.2f}")
        for part in ("forward", "backward", "optimizer", "step"):
            print(f"  {part:54s} {_median([v for res in results for v in res['parts'][part]]):9.2f}")
    ratio = (_median([v for res in runs['bare'] for v in res['parts']['step']])
             / _median([v for res in runs['ours'] for v in res['parts']['step']]))
    print(f"\nstep: bare / ours = {ratio:.2f}x")


if __name__ == "__main__":
    main()

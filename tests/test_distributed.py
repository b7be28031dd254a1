"""Distributed training: the same trainer under torchrun (DistributedDataParallel, gloo on CPU, 2 processes)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.learning import distributed, epoch, registry, training
from core import runs
from core.learning.distributed import Place

PROJECT = Path(__file__).resolve().parent.parent
SHAPES = 4


def _shape(c: int, rng: np.random.Generator) -> np.ndarray:
    """Class ``c`` as a bright shape (horizontal bar, vertical bar, disc, cross) on a noisy dark background."""
    img = rng.normal(60, 25, (32, 32, 3))
    yy, xx = np.mgrid[0:32, 0:32]
    mask = [abs(yy - 16) < 4, abs(xx - 16) < 4, (yy - 16) ** 2 + (xx - 16) ** 2 < 81,
            (abs(yy - xx) < 3) | (abs(yy + xx - 31) < 3)][c]
    img[mask] += 150
    return np.clip(img, 0, 255).astype(np.uint8)


def test_shards_cover_the_epoch_with_equal_step_counts():
    order = np.arange(10)
    shards = [distributed.shard(order, Place(r, 3)) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]                      # padded by wrapping: 12 = 10 + 2
    assert set(np.concatenate(shards)) == set(order)
    assert distributed.shard(order, Place()) is order
    tiny = [distributed.shard(np.arange(3), Place(r, 8)) for r in range(8)]  # fewer images than ranks
    assert all(len(s) == 1 for s in tiny)
    assert epoch.steps_per_epoch(10, 4, Place(0, 2)) == 3        # 5 images a rank, 2 a batch: 2 + 2 + 1
    assert epoch.steps_per_epoch(10, 4, Place()) == 3


def test_the_place_comes_from_torchruns_environment(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.from_env() == Place()
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.from_env() == Place(3, 4, 1) and not distributed.from_env().main


def test_devices_are_checked():
    assert distributed.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="valid devices: auto, cpu, cuda"):
        distributed.resolve_device("tpu")
    if not torch.cuda.is_available():
        assert distributed.resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="no GPU"):
            distributed.resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        training.TrainConfig(device="gpu").validate()


def _colour_dataset(n_train: int = 60, n_val: int = 20) -> None:
    """Four classes told apart by shape under noise: a model learns them in a few epochs."""
    from core.data.built import SplitToWrite, write_dataset
    rng = np.random.default_rng(0)

    def split(n: int, offset: int) -> SplitToWrite:
        labels = np.arange(n) % SHAPES
        imgs = [_shape(c, rng) for c in labels]
        return SplitToWrite(imgs, labels, [f"{offset + i:05d}.png" for i in range(n)], ["synthetic"] * n,
                            [""] * n, np.full((n, 2), 32))

    write_dataset("Shapes", {"train": split(n_train * 4, 0), "val": split(n_val * 4, 100000)},
                  classes={i: f"shape {i}" for i in range(SHAPES)}, source="synthetic", recipe="ddp test")


def _train(root: Path, name: str, *, torchrun: bool) -> dict:
    env = dict(os.environ, TSW_DATA_ROOT=str(root), NO_ALBUMENTATIONS_UPDATE="1", OMP_NUM_THREADS="1")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"] if torchrun \
        else [sys.executable]
    out = subprocess.run(launcher + ["-m", "core", "train", "--dataset", "Shapes", "--mode", "scratch", "--epochs",
                                     "8", "--batch-size", "32", "--no-augment", "--seed", "0", "--name", name,
                                     "--quiet"], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, out.stdout  # rank 0 alone reports (and registers)
    return lines[0]


def test_torchrun_with_two_cpu_processes_trains_like_one_process(data_root):
    _colour_dataset()
    alone = _train(data_root, "alone", torchrun=False)
    ddp = _train(data_root, "ddp", torchrun=True)
    assert alone["best_val_acc"] >= 0.9 and ddp["best_val_acc"] >= 0.9, (alone, ddp)
    assert abs(alone["best_val_acc"] - ddp["best_val_acc"]) <= 0.05
    names = [m.name for m in registry.list_models()]
    assert names.count("ddp") == 1 and names.count("alone") == 1
    trains = runs.list_runs("train")
    assert len(trains) == 2 and all(r["status"] == "done" for r in trains)  # one record per job, not per rank
    ddp_run = next(r for r in trains if r["config"]["name"] == "ddp")
    assert len(ddp_run["history"]) == 8

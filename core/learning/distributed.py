"""Training on several processes or machines: PyTorch DistributedDataParallel, configured the torchrun way.

The trainer reads its place in a job from the environment that ``torchrun`` sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``), as the torchvision reference scripts do, so the same command runs
alone or distributed::

    python -m core train --dataset GTSRB --epochs 10 --name m
    torchrun --standalone --nproc-per-node 2 -m core train --dataset GTSRB --epochs 10 --name m
    # two machines (run on each, --node-rank 0 on the one named by --rdzv-endpoint):
    torchrun --nnodes 2 --nproc-per-node 1 --node-rank 0 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \
        -m core train --dataset GTSRB --epochs 10 --name m

Each process trains on its shard of every epoch (the shared, seeded permutation dealt out by rank) with
``batch_size / world`` images a batch, so the global batch and the number of optimizer steps match a single
process. Gloo carries the gradients on CPUs, NCCL on GPUs. Rank 0 alone writes the run record, checkpoints and
the model.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

#: Devices a training can ask for; "auto" takes a GPU when one is present.
DEVICES = ("auto", "cpu", "cuda")
#: Arithmetic of training: ``bf16`` = mixed precision (convolutions and matrix products in bfloat16 under autocast,
#: weights, optimizer and losses in float32); ``auto`` = bf16 where the hardware does it natively, else fp32.
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class Place:
    """This process's place in a job: rank among ``world`` processes (world 1 = not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """The one process that writes records, checkpoints and models."""
        return self.rank == 0


def from_env() -> Place:
    """The place torchrun's environment describes (a single process without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Place()
    return Place(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, place: Place | None = None) -> torch.device:
    """``auto`` -> this process's GPU when one is present, else the CPU; ``cuda`` without a GPU is an error."""
    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r}; valid devices: {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but no GPU is available; use --device auto or cpu")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    local = (place or current()).local_rank
    if local >= torch.cuda.device_count():
        raise ValueError(f"process {local} on this machine has no GPU of its own ({torch.cuda.device_count()} "
                         "GPUs): start at most one process per GPU (--nproc-per-node), or use --device cpu")
    return torch.device("cuda", local)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CPU with AMX or AVX-512 BF16, or a GPU that supports it.

    Elsewhere bf16 is emulated and slower than fp32, so ``auto`` keeps fp32 there.
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    cpu = getattr(torch, "cpu", None)
    return any(bool(getattr(cpu, probe, lambda: False)()) for probe in ("_is_amx_tile_supported",
                                                                       "_is_avx512_bf16_supported"))


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` where :func:`native_bf16`, else ``fp32``; ``fp32`` and ``bf16`` stay as asked."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; valid: {', '.join(PRECISIONS)}")
    if name != "auto":
        return name
    return "bf16" if native_bf16(device) else "fp32"


def arithmetic_record(precision: str, device: torch.device) -> dict:
    """What decides a training's numbers besides its seed, for the checkpoint: the arithmetic actually used
    (``fp32``/``bf16``, never ``auto``), the torch version, the device, and the CPU features ``auto`` reads
    (:func:`native_bf16`) plus the kernel set torch dispatches to (e.g. ``AVX512``). Re-running a card's command on
    another machine pins the arithmetic with ``--precision``; a different kernel set can still move the last bits.
    ``fused_bn_pool``: the trainer runs batch norm and max-pool as one step where a network has them
    (:mod:`core.learning.bn_pool`; fp32 on CPU, from 2026-12-05): the same function with other rounding, so an fp32
    CPU run of a batch-norm network from before then differs in its last bits. ``narrow_conv_grad``: likewise for
    the input gradient of a convolution with few input channels (:mod:`core.learning.narrow_conv`; fp32 on CPU,
    from 2026-12-05 evening). Both say the path was enabled; it runs where a network has such layers."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"record the resolved arithmetic (fp32 or bf16), not {precision!r}")
    cpu = getattr(torch, "cpu", None)
    return {"precision": precision, "torch": str(torch.__version__), "device": device.type,
            "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
            "amx": bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)()),
            "avx512_bf16": bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()),
            "fused_bn_pool": precision == "fp32" and device.type == "cpu",
            "narrow_conv_grad": precision == "fp32" and device.type == "cpu"}


def init(device_name: str = "auto") -> Place:
    """Join the job torchrun started (once per process); a plain process stays alone. Returns its place."""
    place = from_env()
    if place.active and not dist.is_initialized():
        device = resolve_device(device_name, place)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return place


def current() -> Place:
    """This process's place: distributed once :func:`init` has joined a job, else alone."""
    if dist.is_available() and dist.is_initialized():
        return Place(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return Place()


def shard(order: np.ndarray, place: Place) -> np.ndarray:
    """This rank's share of an epoch's order; padded by wrapping so every rank gets as many (equal step counts
    keep the processes in step, as torch's DistributedSampler does)."""
    if not place.active:
        return order
    full = np.resize(order, -(-len(order) // place.world) * place.world)  # wraps round as often as needed
    return full[place.rank::place.world]


def sum_over_ranks(values: list[float], place: Place) -> list[float]:
    """Element-wise sum of ``values`` over every rank (the values themselves when alone)."""
    if not place.active:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":  # NCCL reduces GPU tensors only
        t = t.cuda()
    dist.all_reduce(t)
    return t.cpu().tolist()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

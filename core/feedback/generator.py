"""The class-conditional generator: a small convolutional VAE at 32x32 px, trained here on CPU
(:mod:`core.feedback.generator_training`), shipped as ``artifacts/generator.pt``.

What it is for: projecting an image the classifier gets wrong into the latent space (the encoder's mean, given the
image and its true class) and sampling latent vectors near it. A VAE's decodes are blurry (the published system
saw the same: high FID), so :func:`sample_near` does not hand out decodes: it adds the *change* the decoder makes
between the projection and each neighbour to the real image, ``x + up(D(z') - D(mu))``, keeping the real image's
detail and moving what the generator moves between nearby signs of that class (pose, light, wear, background).
:func:`decode_near` gives the raw decodes (the experiment measures both).

The checkpoint is a plain dict (:data:`CHECKPOINT_KEYS`), saved atomically, loaded with ``weights_only=True``; it
names the class set it was trained on and :func:`load_generator` refuses another.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from core.base import config
from core.learning import registry
from core.learning.models import save_checkpoint

#: Side of the generator's images, in pixels (GTSRB's native size).
SIZE = 32
#: Dimensions of the latent space.
Z_DIM = 32
FORMAT = 1
CHECKPOINT_KEYS = ("format", "kind", "weights", "size", "z_dim", "width", "class_ids", "class_names", "dataset",
                   "dataset_fingerprint", "epochs", "history", "config", "command", "created")
#: Where the shipped generator lives.
SHIPPED = config.PROJECT_ROOT / "artifacts" / "generator.pt"


class ConditionalVAE(nn.Module):
    """Encoder q(z | x, y) and decoder p(x | z, y) for (N, 3, 32, 32) images in [-1, 1] and class indices (N,).

    ``width`` is the first convolution's channels (then 2x and 4x); the class enters both halves as a learned
    embedding.
    """

    def __init__(self, num_classes: int, *, width: int = 32, z_dim: int = Z_DIM):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        w = width
        self.num_classes, self.z_dim, self.width = num_classes, z_dim, width
        self.embed_enc = nn.Embedding(num_classes, 16)
        self.embed_dec = nn.Embedding(num_classes, 16)

        def down(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True)]

        def up(cin: int, cout: int) -> list[nn.Module]:
            return [nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True)]

        self.encoder = nn.Sequential(*down(3, w), *down(w, 2 * w), *down(2 * w, 4 * w), nn.Flatten())
        self.to_stats = nn.Linear(4 * w * 16 + 16, 2 * z_dim)
        self.from_z = nn.Sequential(nn.Linear(z_dim + 16, 4 * w * 16), nn.LeakyReLU(0.2, inplace=True))
        self.decoder = nn.Sequential(*up(4 * w, 2 * w), *up(2 * w, w), nn.ConvTranspose2d(w, 3, 4, 2, 1), nn.Tanh())

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance (N, z_dim) of q(z | x, y)."""
        h = torch.cat([self.encoder(x), self.embed_enc(y)], dim=1)
        mu, logvar = self.to_stats(h).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 6)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(N, 3, 32, 32) images in [-1, 1]."""
        h = self.from_z(torch.cat([z, self.embed_dec(y)], dim=1)).view(len(z), 4 * self.width, 4, 4)
        return self.decoder(h)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x, y)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decode(z, y), mu, logvar


# -- images <-> tensors --------------------------------------------------------------------------------------------

def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 of any square-ish size -> (N, 3, 32, 32) float in [-1, 1]."""
    small = np.stack([im if im.shape[:2] == (SIZE, SIZE) else
                      cv2.resize(im, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for im in images])
    return torch.from_numpy(small).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_images(x: torch.Tensor) -> np.ndarray:
    """(N, 3, S, S) in [-1, 1] -> (N, S, S, 3) uint8."""
    return x.detach().add(1.0).mul(127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()


# -- checkpoint ----------------------------------------------------------------------------------------------------

def make_checkpoint(model: ConditionalVAE, *, class_ids: list[int], class_names: list[str], dataset: str,
                    dataset_fingerprint: str, epochs: int, history: list[dict], config: dict, command: str) -> dict:
    if len(class_ids) != model.num_classes or len(class_names) != len(class_ids):
        raise ValueError(f"{len(class_ids)} class ids and {len(class_names)} names for a generator of "
                         f"{model.num_classes} classes")
    return {"format": FORMAT, "kind": "cvae", "weights": {k: v.detach().cpu().clone() for k, v in
                                                         model.state_dict().items()},
            "size": SIZE, "z_dim": model.z_dim, "width": model.width, "class_ids": [int(c) for c in class_ids],
            "class_names": list(class_names), "dataset": dataset, "dataset_fingerprint": dataset_fingerprint,
            "epochs": int(epochs), "history": history, "config": config, "command": command,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def save_generator(ckpt: dict, path: str | os.PathLike) -> Path:
    """Write atomically (temp file + rename), as models are written."""
    return save_checkpoint(ckpt, Path(path), keys=CHECKPOINT_KEYS, what="generator checkpoint")


class LoadedGenerator:
    """A generator ready to use: its network (eval mode), class ids (dataset ids, in output order) and version."""

    def __init__(self, net: ConditionalVAE, ckpt: dict, version: str):
        self.net, self.ckpt, self.version = net, ckpt, version
        self.class_ids: list[int] = list(ckpt["class_ids"])
        self._row = {c: i for i, c in enumerate(self.class_ids)}

    def rows(self, class_ids) -> torch.Tensor:
        """The generator's class indices of dataset class ids; ValueError for a class it never learned."""
        missing = sorted({int(c) for c in class_ids} - set(self._row))
        if missing:
            raise ValueError(f"the generator was trained on {len(self.class_ids)} classes of "
                             f"{self.ckpt['dataset']} and does not know class {missing[0]}; train one on this "
                             f"class set: python -m core generator train --dataset <dataset>")
        return torch.as_tensor([self._row[int(c)] for c in class_ids], dtype=torch.long)


def load_generator(path: str | os.PathLike = SHIPPED, *, class_ids: list[int] | None = None) -> LoadedGenerator:
    """Load and check a generator checkpoint (``weights_only=True``).

    ``class_ids``: the class set it must serve (a model's classes); a generator trained on another class set is
    refused with the fix (train one on that dataset).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such generator file; train one: python -m core generator train "
                         "--dataset GTSRB --out artifacts/generator.pt")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or foreign files
        raise ValueError(f"{path}: not a readable generator checkpoint ({type(e).__name__}: {str(e)[:200]})") \
            from None
    if not isinstance(ckpt, dict) or ckpt.get("kind") != "cvae" or any(k not in ckpt for k in CHECKPOINT_KEYS):
        raise ValueError(f"{path}: not a generator checkpoint (a model checkpoint? expected kind 'cvae' and keys "
                         f"{', '.join(CHECKPOINT_KEYS)})")
    if class_ids is not None and sorted(int(c) for c in class_ids) != sorted(ckpt["class_ids"]):
        raise ValueError(f"{path}: the generator was trained on {len(ckpt['class_ids'])} classes of "
                         f"{ckpt['dataset']}, the model has {len(class_ids)} other classes; train a generator on "
                         "the model's dataset: python -m core generator train --dataset <dataset> --out FILE")
    net = ConditionalVAE(len(ckpt["class_ids"]), width=int(ckpt["width"]), z_dim=int(ckpt["z_dim"]))
    try:
        net.load_state_dict(ckpt["weights"])
    except RuntimeError as e:
        raise ValueError(f"{path}: generator weights do not fit its recorded shape: {str(e).splitlines()[0][:200]}") \
            from None
    net.eval()
    return LoadedGenerator(net, ckpt, file_version(path))


def file_version(path: str | os.PathLike) -> str:
    """First 12 hex digits of the file's SHA-256 (the registry's cached model-file hash, shortened)."""
    return registry.file_version(path)[:12]


# -- sampling ------------------------------------------------------------------------------------------------------

def _neighbours(gen: LoadedGenerator, images: np.ndarray, class_ids, per_image: int, *, spread: float,
                seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decodes of each image's projection (M, 3, 32, 32) and of ``per_image`` neighbours each
    (M * per_image, 3, 32, 32), and the rows' classes; neighbours are ``mu + spread * eps``, eps ~ N(0, I)."""
    y = gen.rows(class_ids)
    g = torch.Generator().manual_seed(int(seed))
    with torch.inference_mode():
        mu, _ = gen.net.encode(to_tensor(images), y)
        z = mu.repeat_interleave(per_image, 0)
        z = z + float(spread) * torch.randn(z.shape, generator=g)
        yy = y.repeat_interleave(per_image)
        return gen.net.decode(mu, y), gen.net.decode(z, yy), yy


def sample_near(gen: LoadedGenerator, images: np.ndarray, class_ids, per_image: int, *, spread: float = 0.8,
                seed: int = 0) -> np.ndarray:
    """``per_image`` new images near each of ``images`` (N, H, W, 3) uint8 of true classes ``class_ids`` (N,):
    each is the real image plus the decoder's change from the image's projection to a latent neighbour, at the
    image's own size. Returns (N * per_image, H, W, 3) uint8, the neighbours of image 0 first."""
    if len(images) == 0:
        return np.zeros((0, SIZE, SIZE, 3), np.uint8)
    centre, near, _ = _neighbours(gen, images, class_ids, per_image, spread=spread, seed=seed)
    delta = (near - centre.repeat_interleave(per_image, 0)).mul(127.5)  # (M*n, 3, 32, 32) in pixel units
    h, w = images.shape[1:3]
    if (h, w) != (SIZE, SIZE):
        delta = nn.functional.interpolate(delta, size=(h, w), mode="bilinear", align_corners=False)
    base = torch.from_numpy(np.repeat(images, per_image, axis=0)).permute(0, 3, 1, 2).float()
    return base.add(delta).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def decode_near(gen: LoadedGenerator, images: np.ndarray, class_ids, per_image: int, *, spread: float = 0.8,
                seed: int = 0) -> np.ndarray:
    """The raw decodes of the same neighbours as :func:`sample_near`, (N * per_image, 32, 32, 3) uint8: what the
    generator alone makes (the experiment's quality measure of the generator itself)."""
    if len(images) == 0:
        return np.zeros((0, SIZE, SIZE, 3), np.uint8)
    return to_images(_neighbours(gen, images, class_ids, per_image, spread=spread, seed=seed)[1])


def sample_class(gen: LoadedGenerator, class_ids, *, seed: int = 0) -> np.ndarray:
    """One decode from the prior per entry of ``class_ids``: (N, 32, 32, 3) uint8."""
    y = gen.rows(class_ids)
    g = torch.Generator().manual_seed(int(seed))
    with torch.inference_mode():
        return to_images(gen.net.decode(torch.randn((len(y), gen.net.z_dim), generator=g), y))

"""The ``embed`` run kind: an openTSNE map of a model's features for a stratified sample of a dataset split, cached
by the versions of the model file and the dataset it saw."""
from __future__ import annotations

from dataclasses import dataclass

from core import runs
from core.analysis import embedding
from core.data import datasets
from core.learning import registry
from core.learning.models import load_checkpoint, model_from_checkpoint


@dataclass(frozen=True)
class EmbedRun:
    """An openTSNE map of a model's features for a stratified sample of a dataset split (cached)."""
    model: str
    dataset: str
    split: str = "train"
    size: int = embedding.MAP_SIZE
    seed: int = 0

    def check(self) -> dict:
        info = datasets.require_split(self.dataset, self.split, minimum=10)
        if not 10 <= self.size <= 50_000:
            raise ValueError(f"map size must lie in [10, 50000], got {self.size}")
        return {"model": registry.model_input(self.model), "dataset": datasets.dataset_input(info)}

    def key(self) -> dict:
        """What the cached map depends on (its file name; :func:`core.analysis.embedding.map_key`)."""
        info = datasets.get_dataset(self.dataset)
        return embedding.map_key(model_version=registry.file_version(registry.model_path(self.model)),
                                 dataset=self.dataset, dataset_version=info.fingerprint, split=self.split,
                                 size=self.size, seed=self.seed)

    def title(self) -> str:
        return f"map {self.model} on {self.dataset}/{self.split}"


def run_embed(ctx: runs.RunContext, cfg: EmbedRun) -> dict:
    key = cfg.key()
    path = embedding.map_path(key)
    if not path.is_file():
        ckpt = load_checkpoint(registry.model_path(cfg.model))
        split = datasets.load_split(datasets.get_dataset(cfg.dataset), cfg.split)
        keep = embedding.stratified_sample(split.labels, cfg.size, seed=cfg.seed)
        result = embedding.compute_map(model_from_checkpoint(ckpt), ckpt["class_ids"], split.images[keep],
                                       split.labels[keep], [split.files[i] for i in keep], key=key, seed=cfg.seed,
                                       progress=ctx.progress, should_stop=ctx.should_stop)
        ctx.check()
        result.save(path)
    return {"file": str(path), **key}


runs.register_kind("embed", EmbedRun, run_embed, limit=2)

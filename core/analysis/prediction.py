"""Predict on user images: one clear error per bad file, the rest of the batch still processed."""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.base import config
from core.analysis.evaluation import TOP_K
from core.data import datasets, workspaces
from core.data.built import pictogram_path
from core.data.images import ImageError, load_image
from core.learning.inference import predict_proba
from core.learning.models import model_from_checkpoint
from core.analysis.novelty import DEFAULT_METHOD, Detector, get_method

#: Columns of the predictions table and CSV (:func:`summary_rows`).
CSV_COLUMNS = ("file", "class_id", "class", "confidence", "novelty_score", "novelty_threshold", "novelty_method",
               "probably_novel", "error")


@dataclass
class ImagePrediction:
    file: str
    image: np.ndarray | None = None
    top: list[dict] = field(default_factory=list)  # [{"class_id", "name", "p"}], best first
    error: str | None = None
    #: {"method", "score", "threshold", "novel"}: is the image one of the model's classes at all (None: no detector)
    novelty: dict | None = None

    def to_json(self) -> dict:
        if self.error:
            return {"file": self.file, "error": self.error}
        return {"file": self.file, "top": self.top, **({"novelty": self.novelty} if self.novelty else {})}


def load_inputs(items: list[tuple[str, bytes | str | os.PathLike]]) -> list[ImagePrediction]:
    """Decode every (name, bytes-or-path); a bad one gets its error message and is skipped later."""
    out = []
    for name, src in items:
        if isinstance(src, bytes) and len(src) > config.MAX_UPLOAD_BYTES:
            out.append(ImagePrediction(name, error=f"{name}: file is {len(src) / 2**20:.1f} MiB, above the "
                                                   f"{config.MAX_UPLOAD_BYTES // 2**20} MiB limit"))
            continue
        try:
            out.append(ImagePrediction(name, image=load_image(src, name=name)))
        except ImageError as e:
            out.append(ImagePrediction(name, error=str(e)))
    return out


def predict_images(ckpt: dict, items: list[tuple[str, bytes | str | os.PathLike]], *, model=None,
                   top_k: int = TOP_K, detector: Detector | None = None,
                   method: str = DEFAULT_METHOD, tta: bool = False) -> list[ImagePrediction]:
    """Top-k labels with confidence for each input, in input order (``tta``: averaged over the test-time views);
    with a novelty ``detector``, each result also says whether the image is probably not one of the model's
    classes (by novelty ``method``, on the plain image)."""
    get_method(method)  # an unknown method: ValueError listing the valid ones, before any work
    results = load_inputs(items)
    good = [r for r in results if r.error is None]
    if good:
        model = model or model_from_checkpoint(ckpt)
        proba = predict_proba(model, [r.image for r in good], tta=tta)
        k = min(top_k, proba.shape[1])
        for r, p in zip(good, proba):
            order = np.argsort(-p)[:k]
            r.top = [{"class_id": int(ckpt["class_ids"][i]), "name": ckpt["class_names"][i], "p": round(float(p[i]), 6)}
                     for i in order]
        if detector is not None:
            scores = detector.scores(model, [r.image for r in good], (method,))[method]
            threshold = detector.thresholds[method]
            for r, score in zip(good, scores):
                r.novelty = {"method": method, "score": round(float(score), 4),
                             "threshold": round(threshold, 4), "novel": bool(score > threshold)}
    return results


def predict_paths(ckpt: dict, paths: list[str], *, model=None, detector: Detector | None = None,
                  method: str = DEFAULT_METHOD, tta: bool = False) -> list[ImagePrediction]:
    return predict_images(ckpt, [(str(p), Path(p)) for p in paths], model=model, detector=detector, method=method,
                          tta=tta)


def summary_rows(results: list[ImagePrediction]) -> list[dict]:
    """One row per input for a results table or CSV: file, top-1 class id and name, confidence, the novelty check
    (method, score, threshold, probably novel; empty without a detector), error."""
    rows = []
    for r in results:
        best = r.top[0] if r.top else {}
        nov = r.novelty or {}
        rows.append({"file": r.file, "class_id": best.get("class_id"), "class": best.get("name", ""),
                     "confidence": best.get("p"), "novelty_score": nov.get("score"),
                     "novelty_threshold": nov.get("threshold"), "novelty_method": nov.get("method", ""),
                     "probably_novel": nov.get("novel"), "error": r.error or ""})
    return rows


def predictions_csv(results: list[ImagePrediction]) -> str:
    """:func:`summary_rows` as CSV text (the Predict page's download): empty cells where a value does not apply."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in summary_rows(results))
    return buf.getvalue()


def class_pictograms(ckpt: dict, class_ids) -> dict[int, Path | None]:
    """The reference pictogram of each of ``class_ids`` (a model's classes): the GTSRB pictogram of a GTSRB class,
    else the one a user gave the class in the workspace the model was trained on (None if neither)."""
    names = dict(zip((int(c) for c in ckpt["class_ids"]), ckpt["class_names"]))
    try:
        info = datasets.get_dataset(ckpt["dataset"])
    except ValueError:  # the model's dataset is gone: only the shipped pictograms are left
        info = None
    out = {}
    for cid in map(int, class_ids):
        found = pictogram_path(cid, names.get(cid, ""))
        if found is None and info is not None and info.kind == "workspace":
            found = workspaces.pictogram(info, cid)
        out[cid] = found if found is not None and found.is_file() else None
    return out

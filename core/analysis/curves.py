"""Training-history tables for plotting (loss and accuracy per epoch)."""
from __future__ import annotations

import pandas as pd

ACC_COLUMNS = {"train_acc": "train", "val_acc": "val", "val_aug_acc": "val (augmented)"}


def history_frames(history: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(loss table: epoch, loss, phase), (accuracy table in long form: epoch, accuracy, curve)."""
    if not history:
        return pd.DataFrame(columns=["epoch", "loss", "phase"]), pd.DataFrame(columns=["epoch", "accuracy", "curve"])
    df = pd.DataFrame(history)
    loss = df[["epoch", "loss", "phase"]].copy()
    cols = [c for c in ACC_COLUMNS if c in df]
    acc = df.melt(id_vars=["epoch"], value_vars=cols, var_name="curve", value_name="accuracy").dropna()
    acc["curve"] = acc["curve"].map(ACC_COLUMNS)
    return loss, acc


def live_frames(history: list[dict], points: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Like :func:`history_frames` plus a run's live batch points, in long form with a ``curve`` column.

    loss: epoch (fractional for batch points), loss, curve ("batches" or "epoch"); accuracy: epoch, accuracy,
    curve ("train (batches)", "train", "val", ...). A one-epoch run so draws a line, not a single dot.
    """
    loss, acc = history_frames(history)
    loss = loss[["epoch", "loss"]].assign(curve="epoch")
    if points:
        p = pd.DataFrame(points)
        loss = pd.concat([p[["epoch", "loss"]].assign(curve="batches"), loss], ignore_index=True)
        acc = pd.concat([p[["epoch", "train_acc"]].rename(columns={"train_acc": "accuracy"})
                         .assign(curve="train (batches)"), acc], ignore_index=True)
    return loss, acc

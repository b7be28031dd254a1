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

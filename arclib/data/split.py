"""Task splits. The seed's split (ids sorted, first 14 train, last 4 validation) is the default.

Strategies:
  seed        sorted ids, first 14 train, last 4 validation (the original study)
  random      a seeded random 14/4 split of the tasks
  by_example  every task in both: the first 80% of each task's examples train, the rest validate
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from arclib.data.tasks import TASK_IDS
from arclib.fileio import atomic_write_text

SPLIT_STRATEGIES = ("seed", "random", "by_example")
N_VAL_TASKS = 4
BY_EXAMPLE_TRAIN_FRACTION = 0.8


def task_split(strategy: str = "seed", seed: int = 307) -> dict:
    """{"strategy", "seed", "train": [ids], "val": [ids]}; for by_example both lists hold all 18 tasks."""
    ids = sorted(TASK_IDS)
    if strategy == "seed":
        train, val = ids[:-N_VAL_TASKS], ids[-N_VAL_TASKS:]
    elif strategy == "random":
        order = np.random.default_rng(seed).permutation(len(ids))
        train = sorted(ids[i] for i in order[:-N_VAL_TASKS])
        val = sorted(ids[i] for i in order[-N_VAL_TASKS:])
    elif strategy == "by_example":
        train, val = ids, ids
    else:
        raise ValueError(f"unknown split strategy {strategy!r}; choose one of {SPLIT_STRATEGIES}")
    return {"strategy": strategy, "seed": seed, "train": list(train), "val": list(val)}


def write_split(split: dict, splits_dir: str | Path) -> Path:
    path = Path(splits_dir) / f"{split['strategy']}.json"
    atomic_write_text(path, json.dumps(split, indent=1) + "\n")
    return path


# The held-out examples of each training task come in two halves whose canonical keys differ from each other's
# and from training's: checkpoints are selected (and early stopping decided) on "select", results are reported
# on "report", so the reported figure is not biased by the choice of checkpoint.
HELDOUT_SLICES = ("select", "report")


def heldout_slice(examples: list, which: str) -> list:
    """The `which` ("select": first half, "report": second half) of a task's held-out examples."""
    if which not in HELDOUT_SLICES:
        raise ValueError(f"unknown held-out slice {which!r}; choose one of {HELDOUT_SLICES}")
    half = len(examples) // 2
    return examples[:half] if which == "select" else examples[half:]

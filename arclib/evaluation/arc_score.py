"""ARC Prize scoring: up to two attempts per test output, whole-grid exact match, per-task fractions.

An attempt counts only if the whole grid, shape included, equals the target. A test output is solved if
either of its (at most two) attempts counts. A task scores the fraction of its test outputs solved, and a
set of tasks scores the mean of its task scores (ARC Prize's task-level average). Alongside pass@2 we report
the first attempt's exact match, shape accuracy and cell accuracy from `metrics.grid_metrics`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from arclib.evaluation.metrics import grid_metrics

MAX_ATTEMPTS = 2


def attempt_correct(attempt: np.ndarray | None, target: np.ndarray) -> bool:
    """Whole-grid match, shape included; a missing attempt (None) never counts."""
    return attempt is not None and attempt.shape == target.shape and bool(np.array_equal(attempt, target))


def pass_at_2(attempts: Sequence[np.ndarray | None], target: np.ndarray) -> bool:
    """Solved if one of the first two attempts matches. More than two attempts is a caller bug."""
    if len(attempts) > MAX_ATTEMPTS:
        raise ValueError(f"ARC scoring allows at most {MAX_ATTEMPTS} attempts, got {len(attempts)}")
    return any(attempt_correct(a, target) for a in attempts)


@dataclass
class OutputScore:
    """The score of one test output: pass@2 plus the first attempt's grid metrics."""

    task_id: str
    pass2: bool
    top1: dict[str, float | None]  # grid_metrics of attempt 1 (all zeros if there is none)


def score_output(
    task_id: str, attempts: Sequence[np.ndarray | None], target: np.ndarray, query_input: np.ndarray
) -> OutputScore:
    first = attempts[0] if attempts else None
    return OutputScore(task_id, pass_at_2(attempts, target), grid_metrics(first, target, query_input))


def task_scores(scores: Sequence[OutputScore]) -> dict[str, dict[str, float]]:
    """Per task: n test outputs, pass@2 (fraction solved), top-1 exact, shape and cell accuracy (means)."""
    by_task: dict[str, list[OutputScore]] = defaultdict(list)
    for s in scores:
        by_task[s.task_id].append(s)
    return {
        task_id: {
            "n": len(rows),
            "pass2": float(np.mean([r.pass2 for r in rows])),
            "top1": float(np.mean([r.top1["exact"] for r in rows])),
            "shape": float(np.mean([r.top1["shape"] for r in rows])),
            "cell": float(np.mean([r.top1["cell"] for r in rows])),
        }
        for task_id, rows in sorted(by_task.items())
    }


def overall_score(per_task: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean over tasks (each task weighs the same, however many test outputs it has), as ARC Prize scores."""
    keys = ("pass2", "top1", "shape", "cell")
    if not per_task:
        return {k: 0.0 for k in keys} | {"n_tasks": 0, "n_outputs": 0}
    out = {k: float(np.mean([t[k] for t in per_task.values()])) for k in keys}
    return out | {"n_tasks": len(per_task), "n_outputs": int(sum(t["n"] for t in per_task.values()))}

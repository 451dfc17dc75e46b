"""Scores of a generated grid against its target, by free generation (the model wrote the size too).

exact        the whole grid, shape included, matches
shape        the predicted shape matches
cell         fraction of matching cells (0 when the shape is wrong)
change_recall     of the cells the rule changes (target != input), the fraction predicted right
change_precision  of the cells the prediction changes (prediction != input), the fraction that are right
copy         the prediction is the query input unchanged
Change metrics exist only where input and target share a shape; they are None otherwise.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

METRICS = ("exact", "shape", "cell", "change_recall", "change_precision", "copy")


def grid_metrics(
    pred: np.ndarray | None, target: np.ndarray, query_input: np.ndarray
) -> dict[str, float | None]:
    same_in_out = query_input.shape == target.shape
    if pred is None:  # the model wrote no valid rectangle
        zero = 0.0 if same_in_out else None
        return {
            "exact": 0.0,
            "shape": 0.0,
            "cell": 0.0,
            "change_recall": zero,
            "change_precision": zero,
            "copy": 0.0,
        }
    shape_ok = pred.shape == target.shape
    correct = (pred == target) if shape_ok else None
    m = {
        "exact": float(shape_ok and bool(correct.all())),
        "shape": float(shape_ok),
        "cell": float(correct.mean()) if shape_ok else 0.0,
        "copy": float(pred.shape == query_input.shape and np.array_equal(pred, query_input)),
        "change_recall": None,
        "change_precision": None,
    }
    if same_in_out:
        changed = target != query_input
        if shape_ok:
            predicted_change = pred != query_input
            m["change_recall"] = float(correct[changed].mean()) if changed.any() else None
            m["change_precision"] = float(correct[predicted_change].mean()) if predicted_change.any() else 0.0
        else:
            m["change_recall"], m["change_precision"] = 0.0, 0.0
    return m


def aggregate(rows: list[tuple[str, dict]]) -> dict[str, dict[str, float]]:
    """Mean of each metric over episodes, pooled ("all") and per task; None values are left out."""
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for task_id, m in rows:
        for key in ("all", task_id):
            for name, value in m.items():
                if value is not None:
                    groups[key][name].append(value)
    return {key: {name: float(np.mean(v)) for name, v in metrics.items()} for key, metrics in groups.items()}

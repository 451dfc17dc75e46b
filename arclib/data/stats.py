"""Per-task size and colour statistics of a pool of examples, for the data notebook."""

from __future__ import annotations

import numpy as np


def task_statistics(examples: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> list[dict]:
    """One row per task: input/output size ranges, share of shape-changing examples, colours used."""
    rows = []
    for task_id, pairs in sorted(examples.items()):
        xs = np.array([x.shape for x, _ in pairs])
        ys = np.array([y.shape for _, y in pairs])
        colour_counts = np.zeros(10, dtype=np.int64)
        for x, y in pairs:
            colour_counts += np.bincount(x.ravel(), minlength=10) + np.bincount(y.ravel(), minlength=10)
        rows.append(
            {
                "task": task_id,
                "examples": len(pairs),
                "input_h": (int(xs[:, 0].min()), int(xs[:, 0].max())),
                "input_w": (int(xs[:, 1].min()), int(xs[:, 1].max())),
                "output_h": (int(ys[:, 0].min()), int(ys[:, 0].max())),
                "output_w": (int(ys[:, 1].min()), int(ys[:, 1].max())),
                "shape_changes": float(np.mean([x.shape != y.shape for x, y in pairs])),
                "mean_cells": float(np.mean([x.size + y.size for x, y in pairs])),
                "colour_share": colour_counts / colour_counts.sum(),
            }
        )
    return rows


def format_statistics(rows: list[dict]) -> str:
    lines = [
        f"{'task':9} {'n':>4} {'input h':>8} {'input w':>8} {'output h':>9} {'output w':>9} {'shape chg':>9} {'cells':>6}"
    ]
    for r in rows:
        rng = {k: f"{r[k][0]}-{r[k][1]}" for k in ("input_h", "input_w", "output_h", "output_w")}
        lines.append(
            f"{r['task']:9} {r['examples']:>4} {rng['input_h']:>8} {rng['input_w']:>8} {rng['output_h']:>9} "
            f"{rng['output_w']:>9} {r['shape_changes']:>9.0%} {r['mean_cells']:>6.0f}"
        )
    return "\n".join(lines)

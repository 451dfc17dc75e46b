"""Figures of the ablation report: experiments x tasks heatmap and per-set bars."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from arclib.evaluation.report import EVAL_SETS, exact_heatmap_data


def _require_experiments(report: dict) -> list[str]:
    names = list(report["experiments"])
    if not names:
        raise ValueError(f"the report has no experiments (missing: {', '.join(report.get('missing', []))})")
    return names


def _note_if_all_zero(ax, values) -> None:
    """An all-zero chart is not an empty one: say so on the chart."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size and not finite.any():
        ax.text(0.5, 0.5, "all 0.000", transform=ax.transAxes, ha="center", va="center", fontsize=16,
                color="#D00000", bbox=dict(facecolor="white", alpha=0.85, edgecolor="#D00000"))  # fmt: skip


def plot_exact_heatmap(report: dict, set_name: str = "heldout"):
    """Tasks down, experiments across: 18 tasks stay readable as rows (a number per cell, "-" when absent)."""
    _require_experiments(report)
    names, tasks, matrix = exact_heatmap_data(report, set_name)
    table = matrix.T  # (tasks, experiments)
    fig, ax = plt.subplots(figsize=(1.5 * len(names) + 3.2, 0.34 * len(tasks) + 1.6), layout="constrained")
    im = ax.imshow(table, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for (i, j), v in np.ndenumerate(table):
        if np.isfinite(v):
            ax.text(
                j, i, f"{v:.2f}", ha="center", va="center", fontsize=9, color="white" if v < 0.5 else "black"
            )
        else:  # the experiment was not evaluated on this task
            ax.text(j, i, "-", ha="center", va="center", fontsize=9, color="grey")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_yticks(range(len(tasks)), tasks, fontsize=9)
    ax.set_title(f"exact grid accuracy: {set_name}", fontsize=11)
    fig.colorbar(im, ax=ax, fraction=0.05, label="exact")
    _note_if_all_zero(ax, table)
    plt.close(fig)
    return fig


def plot_ablation_bars(report: dict, metric: str = "exact"):
    """One group of bars per experiment, one bar per evaluation set, each bar labelled with its value."""
    names = _require_experiments(report)
    fig, ax = plt.subplots(figsize=(10, 3.8), layout="constrained")
    width = 0.8 / len(EVAL_SETS)
    values_all = []
    for k, set_name in enumerate(EVAL_SETS):
        values = [report["experiments"][n]["sets"][set_name]["all"].get(metric) or 0.0 for n in names]
        bars = ax.bar(np.arange(len(names)) + k * width, values, width, label=set_name)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=1)
        values_all += values
    ax.set_xticks(np.arange(len(names)) + width * (len(EVAL_SETS) - 1) / 2, names, rotation=15)
    ax.set(ylabel=metric, ylim=(0, 1.05), title=f"{metric} by experiment and evaluation set")
    fig.legend(title="evaluation set", loc="outside right upper", fontsize=8)
    _note_if_all_zero(ax, values_all)
    plt.close(fig)
    return fig


def latest_metrics_csv(runs_dir: Path, experiment: str, seed: int = 307) -> Path | None:
    """metrics.csv of the newest version of an experiment's run directory, if any."""
    versions = sorted(
        (runs_dir / experiment / f"seed_{seed}").glob("version_*/metrics.csv"),
        key=lambda p: p.stat().st_mtime,
    )
    return versions[-1] if versions else None

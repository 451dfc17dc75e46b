"""Figures of the ablation report: experiments x tasks heatmap and per-set bars."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from arclib.evaluation.report import EVAL_SETS, exact_heatmap_data


def plot_exact_heatmap(report: dict, set_name: str = "heldout"):
    names, tasks, matrix = exact_heatmap_data(report, set_name)
    fig, ax = plt.subplots(figsize=(0.6 * len(tasks) + 3, 0.5 * len(names) + 1.8))
    im = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for (i, j), v in np.ndenumerate(matrix):
        if np.isfinite(v):
            ax.text(
                j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.5 else "black"
            )
    ax.set(
        xticks=range(len(tasks)),
        yticks=range(len(names)),
        yticklabels=names,
        title=f"exact grid accuracy: {set_name}",
    )
    ax.set_xticklabels(tasks, rotation=60, ha="right")
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_ablation_bars(report: dict, metric: str = "exact"):
    names = list(report["experiments"])
    fig, ax = plt.subplots(figsize=(10, 3.5))
    width = 0.8 / len(EVAL_SETS)
    for k, set_name in enumerate(EVAL_SETS):
        values = [report["experiments"][n]["sets"][set_name]["all"].get(metric) or 0.0 for n in names]
        ax.bar(np.arange(len(names)) + k * width, values, width, label=set_name)
    ax.set_xticks(np.arange(len(names)) + width * (len(EVAL_SETS) - 1) / 2, names, rotation=15)
    ax.set(ylabel=metric, ylim=(0, 1), title=f"{metric} by experiment and evaluation set")
    ax.legend()
    fig.tight_layout()
    plt.close(fig)
    return fig


def latest_metrics_csv(runs_dir: Path, experiment: str, seed: int = 307) -> Path | None:
    """metrics.csv of the newest version of an experiment's run directory, if any."""
    versions = sorted(
        (runs_dir / experiment / f"seed_{seed}").glob("version_*/metrics.csv"),
        key=lambda p: p.stat().st_mtime,
    )
    return versions[-1] if versions else None

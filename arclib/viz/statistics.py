"""Figures of the multi-seed report: forest plot of paired differences, arm x task heatmaps with the seeds'
spread, and learning curves with a band over seeds."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from arclib.evaluation.report import CONCLUSION_METRICS, EVAL_SETS, latest_csv, task_table
from arclib.viz.live import read_metrics_csv, whole_epoch_axis


def plot_forest(report: dict, set_name: str = "heldout", metric: str = "loss"):
    """One row per comparison: the paired difference (later arm minus earlier) and its interval; filled where
    the Holm-adjusted p-value is below 0.05."""
    rows = report["statistics"]["comparisons"][set_name][metric]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.4))
    for i, r in enumerate(rows):
        significant = r["p_holm"] < 0.05 and not (r["low"] <= 0 <= r["high"])
        ax.plot([r["low"], r["high"]], [i, i], color="C0", lw=2)
        ax.plot(r["estimate"], i, "o", color="C0", mfc="C0" if significant else "white", ms=7)
    ax.axvline(0, color="grey", lw=1, ls="--")
    ax.set_yticks(range(len(rows)), [f"{r['b']} - {r['a']}" for r in rows])
    ax.invert_yaxis()
    better = "left is better" if metric == "loss" else "right is better"
    ax.set(
        xlabel=f"difference in {metric} ({better}); filled: Holm p < 0.05",
        title=f"paired differences: {set_name} {metric}",
    )
    fig.tight_layout()
    plt.close(fig)
    return fig


def _note_if_all_zero(ax, values) -> None:
    """An all-zero chart is not an empty one: say so on the chart."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size and not finite.any():
        ax.text(0.5, 0.5, "all 0.000", transform=ax.transAxes, ha="center", va="center", fontsize=16,
                color="#D00000", bbox=dict(facecolor="white", alpha=0.85, edgecolor="#D00000"))  # fmt: skip


def plot_task_heatmap(report: dict, set_name: str = "heldout", metric: str = "exact"):
    """Tasks down, arms across (18 tasks stay readable as rows): the mean over seeds as colour, the mean and
    (sd over seeds) as text."""
    arms, tasks, mean, sd = task_table(report, set_name, metric)
    mean, sd = mean.T, sd.T  # (tasks, arms)
    fig, ax = plt.subplots(figsize=(1.6 * len(arms) + 3.2, 0.42 * len(tasks) + 1.6), layout="constrained")
    limits = dict(vmin=0, vmax=1) if metric != "loss" else {}
    im = ax.imshow(mean, cmap="viridis" if metric != "loss" else "viridis_r", aspect="auto", **limits)
    for (i, j), m in np.ndenumerate(mean):
        text = f"{m:.2f}" + ("" if np.isnan(sd[i, j]) else f" ({sd[i, j]:.2f})")
        r, g, b, _ = im.cmap(im.norm(m))
        dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
        ax.text(j, i, text, ha="center", va="center", fontsize=9, color="white" if dark else "black")
    ax.set_xticks(range(len(arms)), arms, rotation=20, ha="right")
    ax.set_yticks(range(len(tasks)), tasks, fontsize=9)
    ax.set_title(f"{set_name} {metric} per task: mean over seeds (sd)", fontsize=11)
    fig.colorbar(im, ax=ax, fraction=0.05)
    if metric != "loss":
        _note_if_all_zero(ax, mean)
    plt.close(fig)
    return fig


def seed_curves(runs_dir: Path, seeds: dict[str, list[int]], metric: str) -> dict[str, list[tuple]]:
    """{arm: [(epochs, values) per seed with a log]}."""
    out = {}
    for arm, arm_seeds in seeds.items():
        curves = [
            read_metrics_csv(p, [metric]).get(metric)
            for s in arm_seeds
            if (p := latest_csv(runs_dir, arm, s))
        ]
        if curves := [c for c in curves if c is not None]:
            out[arm] = curves
    return out


def plot_seed_band_curves(curves: dict[str, list[tuple]], metric: str = "heldout_loss"):
    """Per arm: the mean over seeds by epoch, with a band from the lowest to the highest seed."""
    fig, ax = plt.subplots(figsize=(9, 4))
    for k, (arm, runs) in enumerate(curves.items()):
        epochs = sorted(set.intersection(*(set(x.tolist()) for x, _ in runs)))  # epochs every seed reached
        values = np.array([[dict(zip(x.tolist(), y))[e] for e in epochs] for x, y in runs])
        ax.plot(epochs, values.mean(axis=0), color=f"C{k}", label=f"{arm} ({len(runs)} seeds)", marker=".")
        if len(runs) > 1:
            ax.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=f"C{k}", alpha=0.2)
    whole_epoch_axis(ax, max((max(x.tolist()) for runs in curves.values() for x, _ in runs), default=0))
    ax.set(xlabel="epoch", ylabel=metric, title=f"{metric}: mean over seeds, band = lowest to highest seed")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)  # never over the curves
    fig.tight_layout()
    plt.close(fig)
    return fig


def save_report_figures(
    report: dict, runs_dir: Path, out_dir: Path, curve_metric: str = "heldout_loss"
) -> dict[str, Path]:
    """Write every figure of the report as PNG; {name: path}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {}
    for set_name in EVAL_SETS:
        for metric in CONCLUSION_METRICS:
            if report["statistics"]["comparisons"][set_name][metric]:
                figures[f"forest_{set_name}_{metric}"] = plot_forest(report, set_name, metric)
            figures[f"tasks_{set_name}_{metric}"] = plot_task_heatmap(report, set_name, metric)
    if curves := seed_curves(runs_dir, report["seeds"], curve_metric):
        figures[f"curves_{curve_metric}"] = plot_seed_band_curves(curves, curve_metric)
    paths = {}
    for name, fig in figures.items():
        paths[name] = out_dir / f"{name}.png"
        fig.savefig(paths[name], dpi=110)
    return paths

"""Learning curves: redrawn in place in the running notebook cell during training, or read back from CSV logs."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from arclib.viz.grids import new_figure

LOSS_METRICS = ("train_loss", "val_loss", "heldout_loss")
GEN_METRICS = ("val_gen_exact", "heldout_gen_exact")
DEFAULT_METRICS = LOSS_METRICS + GEN_METRICS
# Line style tells the metric apart; colour is the metric's for a single run, or the run's when runs are overlaid.
STYLES = {
    "train_loss": ":",
    "val_loss": "-",
    "heldout_loss": "--",
    "val_gen_exact": "-",
    "heldout_gen_exact": "--",
}
METRIC_COLOURS = {
    "train_loss": "C0",
    "val_loss": "C1",
    "heldout_loss": "C2",
    "val_gen_exact": "C1",
    "heldout_gen_exact": "C2",
}

Curves = dict[str, tuple[np.ndarray, np.ndarray]]  # metric -> (epochs, values)


def in_notebook() -> bool:
    """True inside a Jupyter kernel (not a plain IPython terminal, not pytest or a script)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def curves_figure(runs: Mapping[str, Curves], title: str | None = None) -> Figure:
    """Losses on the left, exact-match generation accuracy on the right; one line per (run, metric)."""
    fig, axes = new_figure(1, 2, panel_inches=4.0)
    ax_loss, ax_gen = axes[0]
    overlay = len(runs) > 1
    for k, (run, curves) in enumerate(runs.items()):
        for metric, (x, y) in curves.items():
            ax = ax_gen if metric.endswith("_gen_exact") else ax_loss
            colour = f"C{k}" if overlay else METRIC_COLOURS.get(metric)
            label = f"{run}: {metric}" if overlay else metric
            ax.plot(
                x, y, STYLES.get(metric, "-"), color=colour, label=label, marker="." if len(x) < 30 else None
            )
    _finish_axes(ax_loss, "loss (teacher-forced, per token)")
    _finish_axes(ax_gen, "exact-match grids (free generation)")
    ax_gen.set_ylim(-0.02, 1.02)
    if title:
        fig.suptitle(title)
    return fig


def _finish_axes(ax: Axes, ylabel: str) -> None:
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "not logged yet", ha="center", va="center", transform=ax.transAxes, color="grey")


class LivePlotCallback(L.Callback):
    """Records metrics at each validation end and, in a notebook, redraws the curves in place in the cell
    (in an ipywidgets Output, so the same picture is replaced rather than a new one appended).

    `.history` is a list of {"epoch", "step", metric: value} dicts (metrics only when logged). Outside a Jupyter
    kernel it records but draws nothing, so scripts and the CLI can keep it in their callback list.
    """

    def __init__(self, metrics: Sequence[str] = DEFAULT_METRICS, title: str | None = None):
        self.metrics = tuple(metrics)
        self.title = title
        self.history: list[dict] = []
        self._output = None  # the Output widget holding the figure, displayed at the first redraw

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The sanity check runs a couple of batches before training: not a point on the curve.
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        entry = {"epoch": int(trainer.current_epoch), "step": int(trainer.global_step)}
        for name in self.metrics:
            value = trainer.callback_metrics.get(name)
            if value is not None:
                entry[name] = float(value)
        self.history.append(entry)
        if in_notebook():
            self._redraw()

    def curves(self) -> Curves:
        out = {}
        for name in self.metrics:
            points = [(h["epoch"], h[name]) for h in self.history if name in h]
            if points:
                x, y = zip(*points)
                out[name] = (np.array(x), np.array(y))
        return out

    def figure(self) -> Figure:
        return curves_figure({"run": self.curves()}, self.title)

    def _redraw(self) -> None:
        import ipywidgets as widgets
        from IPython.display import display

        fig = self.figure()
        if self._output is None:
            self._output = widgets.Output()
            self._output.add_class("arclib-live-plot")  # a handle for browser tests
            display(self._output)
        self._output.clear_output(
            wait=True
        )  # wait: the old picture stays until the new one arrives, no flicker
        with self._output:
            display(fig)


def read_metrics_csv(path: str | Path, metrics: Sequence[str] = DEFAULT_METRICS) -> Curves:
    """Per-epoch curves from a Lightning CSVLogger metrics.csv.

    Rows are sparse (each logging call writes its own row, other columns empty). Values logged several times in
    an epoch (train_loss is logged per step) are averaged over that epoch.
    """
    sums: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if not row.get("epoch"):
                continue
            epoch = int(float(row["epoch"]))
            for name in metrics:
                if row.get(name):
                    sums[name][epoch].append(float(row[name]))
    return {
        name: (np.array(sorted(by_epoch)), np.array([np.mean(by_epoch[e]) for e in sorted(by_epoch)]))
        for name, by_epoch in sums.items()
    }


def plot_learning_curves(
    csv_paths: Mapping[str, str | Path], metrics: Sequence[str] = DEFAULT_METRICS, title: str | None = None
) -> Figure:
    """Overlay runs (name -> metrics.csv path): one colour per run, one line style per metric."""
    return curves_figure({name: read_metrics_csv(path, metrics) for name, path in csv_paths.items()}, title)

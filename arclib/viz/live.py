"""Learning curves: redrawn in place in the running notebook cell during training, or read back from CSV logs."""

from __future__ import annotations

import csv
import logging
import time
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path

import lightning as L
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

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


def curves_figure(
    runs: Mapping[str, Curves], title: str | None = None, max_epochs: int | None = None
) -> Figure:
    """Losses on the left, exact-match generation accuracy on the right; one line per (run, metric).

    The legend sits outside the axes, so it never covers a curve: with several runs, colour names the run and
    line style the metric (two short legends instead of runs x metrics entries). `max_epochs` fixes the x range
    in advance, so a live plot grows into its axes instead of rescaling at every redraw.
    """
    fig, axes = new_figure(1, 2, panel_inches=4.0)
    ax_loss, ax_gen = axes[0]
    overlay = len(runs) > 1
    metrics_seen: list[str] = []
    for k, (run, curves) in enumerate(runs.items()):
        for metric, (x, y) in curves.items():
            ax = ax_gen if metric.endswith("_gen_exact") else ax_loss
            colour = f"C{k}" if overlay else METRIC_COLOURS.get(metric)
            label = f"{run}: {metric}" if overlay else metric
            ax.plot(
                x, y, STYLES.get(metric, "-"), color=colour, label=label, marker="." if len(x) < 30 else None
            )
            metrics_seen += [metric] if metric not in metrics_seen else []
    for ax, ylabel in (
        (ax_loss, "loss (teacher-forced, per token)"),
        (ax_gen, "exact-match grids (free generation)"),
    ):
        _finish_axes(ax, ylabel, max_epochs)
    ax_gen.set_ylim(-0.02, 1.02)
    if overlay:
        run_handles = [Line2D([], [], color=f"C{k}", lw=2, label=run) for k, run in enumerate(runs)]
        fig.legend(handles=run_handles, title="run (colour)", loc="outside right upper", fontsize=8)
        metric_handles = [Line2D([], [], color="0.3", ls=STYLES.get(m, "-"), label=m) for m in metrics_seen]
        fig.legend(handles=metric_handles, title="metric (line style)", loc="outside right lower", fontsize=8)
    elif metrics_seen:
        handles = [h for ax in (ax_loss, ax_gen) for h in ax.lines]
        fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def whole_epoch_axis(ax: Axes, last_epoch: float) -> None:
    """Integer epoch ticks from 0 to `last_epoch`; at least two epochs in view, so one point gets no fractional ticks."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(-0.3, max(last_epoch, 1) + 0.3)


def _finish_axes(ax: Axes, ylabel: str, max_epochs: int | None = None) -> None:
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if max_epochs:
        whole_epoch_axis(ax, max_epochs - 1)
    elif ax.lines:
        whole_epoch_axis(ax, max(float(np.max(line.get_xdata())) for line in ax.lines))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if not ax.lines:
        ax.text(0.5, 0.5, "not logged yet", ha="center", va="center", transform=ax.transAxes, color="grey")


class LivePlotCallback(L.Callback):
    """Records metrics at each validation end and, in a notebook, redraws the curves in place in the cell
    (in an ipywidgets Output, so the same picture is replaced rather than a new one appended). Above the
    curves, one line of text follows training (epoch, step, train loss): use it instead of a progress bar.

    `.history` is a list of {"epoch", "step", metric: value} dicts (metrics only when logged). Outside a Jupyter
    kernel it records but draws nothing, so scripts and the CLI can keep it in their callback list. The title
    defaults to the experiment's name (the module's `model_name` hyperparameter).
    """

    def __init__(self, metrics: Sequence[str] = DEFAULT_METRICS, title: str | None = None):
        self.metrics = tuple(metrics)
        self.title = title
        self.max_epochs: int | None = None
        self.history: list[dict] = []
        self._output = None  # the Output widget holding the figure, displayed at the first redraw
        self._line = None  # the one-line progress text
        self._last_line_time = 0.0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        if self.title is None:
            self.title = getattr(pl_module, "hparams", {}).get("model_name")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        now = time.monotonic()
        if not trainer.is_global_zero or not in_notebook() or now - self._last_line_time < 0.5:
            return
        self._last_line_time = now
        self._show_line(progress_line(trainer))

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
            self._show_line(progress_line(trainer, "validated"))
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
        return curves_figure({"run": self.curves()}, self.title, self.max_epochs)

    def _widgets(self):
        import ipywidgets as widgets
        from IPython.display import display

        if self._output is None:
            self._line = widgets.HTML()
            self._line.add_class("arclib-progress")
            self._output = widgets.Output()
            self._output.add_class("arclib-live-plot")  # a handle for browser tests
            display(widgets.VBox([self._line, self._output]))
        return self._line, self._output

    def _show_line(self, text: str) -> None:
        line, _ = self._widgets()
        line.value = f"<code>{escape(text)}</code>"

    def _redraw(self) -> None:
        from IPython.display import display

        _, output = self._widgets()
        output.clear_output(wait=True)  # wait: the old picture stays until the new one arrives, no flicker
        with output:
            display(self.figure())


def progress_line(trainer: L.Trainer, event: str = "training") -> str:
    """ "exp_1_grid2d · training · epoch 1/2 · step 9 · train_loss 2.314" (the epoch counted from 1)."""
    total = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
    parts = [event, f"epoch {trainer.current_epoch + 1}{total}", f"step {trainer.global_step}"]
    for name in ("train_loss", "val_loss", "heldout_loss"):
        value = trainer.callback_metrics.get(name)
        if value is not None and (event != "training" or name == "train_loss"):
            parts.append(f"{name} {float(value):.3f}")
    return " · ".join(parts)


# Lightning's info lines that say nothing about this run (seed, accelerators, an advert, "fit stopped"), and
# warnings known to be harmless here: a notebook shows its own results and only real problems in red.
KNOWN_WARNINGS = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning 2.6 with torch 2.13, in Lightning's code
    r".*does not have many workers",  # smoke runs load data in the main process on purpose
    r".*The number of training batches .* is smaller than the logging interval",
)


# Info lines of Lightning's that the `fit` command drops: they say nothing about the run (an advert, absent
# accelerators, a checkpoint-loading detail repeated at every validation).
CLI_BANNERS = ("GPU available:", "TPU available:", "HPU available:", "💡 Tip:", "`weights_only` was not set")


class _DropBanners(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(CLI_BANNERS)


def quiet_lightning(keep_info: bool = False) -> None:
    """Silence Lightning's info banners and the known warnings above; warnings and errors still show.

    With `keep_info` (the `fit` command), only the banners in CLI_BANNERS go: the seed, a resume and why
    training stopped are still said.
    """
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric"):
        logger = logging.getLogger(name)
        if not keep_info:
            logger.setLevel(logging.WARNING)
        # On handlers, since a logger's own filters miss its children's records; Lightning adds a handler of
        # its own only when the root logger has none, and logs through the root's otherwise.
        for handler in logger.handlers or logging.getLogger().handlers:
            if not any(isinstance(f, _DropBanners) for f in handler.filters):
                handler.addFilter(_DropBanners())
    for pattern in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def fit_summary(trainer: L.Trainer) -> str:
    """Markdown: the run's last val/heldout metrics, and where its best checkpoint and its logs went.

    Copes with a run that stopped before any validation or wrote no checkpoint (it says so).
    """
    metrics = trainer.callback_metrics
    rows = ["| metric | val (unseen tasks) | heldout (training tasks, select half) |", "|---|---:|---:|"]
    for metric, label in (("loss", "loss (teacher-forced)"), ("token_acc", "token accuracy"),
                          ("gen_exact", "exact grids (generated)"), ("gen_shape", "right shape (generated)")):  # fmt: skip
        cells = [metrics.get(f"{s}_{metric}") for s in ("val", "heldout")]
        if any(c is not None for c in cells):
            rows.append(
                f"| {label} | " + " | ".join("n/a" if c is None else f"{float(c):.3f}" for c in cells) + " |"
            )
    if len(rows) == 2:
        rows = ["No validation finished, so there are no metrics yet."]
    best = trainer.checkpoint_callback
    best_path = getattr(best, "best_model_path", "") if best is not None else ""
    score = getattr(best, "best_model_score", None)
    monitor = getattr(best, "monitor", None)
    lines = [f"Epochs run: {trainer.current_epoch}, steps: {trainer.global_step}.", "", *rows, ""]
    if best_path:
        lines.append(f"- best checkpoint ({monitor} {float(score):.4f}): `{best_path}`" if score is not None
                     else f"- best checkpoint: `{best_path}`")  # fmt: skip
    else:
        lines.append("- no checkpoint written")
    log_dirs = sorted({lg.log_dir for lg in trainer.loggers if getattr(lg, "log_dir", None)})
    lines.append(f"- logs: {', '.join(f'`{d}`' for d in log_dirs)}" if log_dirs else "- no logs written")
    return "\n".join(lines)


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
    """Overlay runs (name -> metrics.csv path): one colour per run, one line style per metric, legends outside."""
    return curves_figure({name: read_metrics_csv(path, metrics) for name, path in csv_paths.items()}, title)

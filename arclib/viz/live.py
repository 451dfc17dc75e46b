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
# Line style tells the metric apart; colour is the metric's for one run, or the run's when runs are overlaid.
STYLES = {"train_loss": ":", "val_loss": "-", "heldout_loss": "--", "val_gen_exact": "-", "heldout_gen_exact": "--"}
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


def _curves_figure(runs: Mapping[str, Curves], title: str | None = None) -> Figure:
    """Losses on the left, exact-match generation accuracy on the right, one line per (run, metric)."""
    fig, (ax_loss, ax_gen) = new_figure(1, 2, panel_inches=4.0)[1][0][0].figure, new_figure_axes_placeholder()
    return fig


def new_figure_axes_placeholder():  # replaced below
    raise NotImplementedError

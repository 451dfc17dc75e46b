"""Pictures of grids, tasks and predictions, live learning curves and a widget browser for notebooks."""

from arclib.viz.browser import TaskBrowser
from arclib.viz.grids import (
    ARC_CMAP,
    ARC_COLOURS,
    ARC_NORM,
    draw_grid,
    plot_episode,
    plot_gallery,
    plot_prediction,
    plot_task,
    prediction_status,
    wrong_cells,
)
from arclib.viz.live import LivePlotCallback, plot_learning_curves, read_metrics_csv

__all__ = [
    "ARC_CMAP",
    "ARC_COLOURS",
    "ARC_NORM",
    "LivePlotCallback",
    "TaskBrowser",
    "draw_grid",
    "plot_episode",
    "plot_gallery",
    "plot_learning_curves",
    "plot_prediction",
    "plot_task",
    "prediction_status",
    "read_metrics_csv",
    "wrong_cells",
]

"""Drawing ARC grids, tasks, episodes and predictions with matplotlib.

Every function returns its Figure and shows nothing itself: a notebook displays a returned figure once (each
figure is closed in pyplot right away, so the inline backend does not show it a second time at cell end).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

from arclib.data.grids import Task
from arclib.data.tokens import (
    BOS,
    EOS,
    MAX_SIDE,
    N_COLOURS,
    PAD,
    ROW,
    SEP_IN,
    SEP_OUT,
    Episode,
    tokens_to_grid,
)

ARC_COLOURS = (
    "#000000",  # 0 black
    "#0074D9",  # 1 blue
    "#FF4136",  # 2 red
    "#2ECC40",  # 3 green
    "#FFDC00",  # 4 yellow
    "#AAAAAA",  # 5 grey
    "#F012BE",  # 6 magenta
    "#FF851B",  # 7 orange
    "#7FDBFF",  # 8 azure
    "#870C25",  # 9 maroon
)
ARC_CMAP = ListedColormap(ARC_COLOURS, name="arc")
# Bin edges at k +- 0.5 pin colour k to palette entry k; a plain colormap would rescale to the grid's min..max.
ARC_NORM = BoundaryNorm(np.arange(-0.5, len(ARC_COLOURS)), ARC_CMAP.N)

# The wrong-cell mask: right cells pale, wrong cells a pure red that no ARC colour uses.
MASK_CMAP = ListedColormap(["#E8E8E8", "#FF0000"], name="arc_mask")
MASK_NORM = BoundaryNorm([-0.5, 0.5, 1.5], 2)
BORDER_COLOUR = "#555555"
ALERT_COLOUR = "#D00000"
PANEL_INCHES = 2.2

PredictionRow = tuple  # (input, target, prediction or None[, title[, generated tokens]])
TOKEN_NAMES = {PAD: "PAD", BOS: "BOS", EOS: "EOS", ROW: "ROW", SEP_IN: "SEP_IN", SEP_OUT: "SEP_OUT"}
TOKEN_SYMBOLS = {PAD: "·", BOS: "B", EOS: "E", ROW: "↵", SEP_IN: "I", SEP_OUT: "O"}
STRIP_WIDTH = 16  # tokens per line of the raw-token strip
STRIP_MAX = 96  # tokens shown: the last ones, where generation went wrong


def new_figure(nrows: int, ncols: int, panel_inches: float = PANEL_INCHES) -> tuple[Figure, np.ndarray]:
    """A figure of nrows x ncols panels (axes always 2-D), closed in pyplot so nothing displays it implicitly."""
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(panel_inches * ncols, panel_inches * nrows + 0.4),
        squeeze=False,
        layout="constrained",
    )
    plt.close(fig)
    return fig, axes


def size_label(grid: np.ndarray) -> str:
    h, w = np.shape(grid)
    return f"{h}x{w}"


def _frame(ax: Axes, colour: str = BORDER_COLOUR, width: float = 1.0) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color(colour)
        spine.set_linewidth(width)


def draw_grid(ax: Axes, grid, title: str | None = None) -> None:
    """One grid in the ARC palette, row 0 at the top, thin grey cell borders, its size "h x w" in the title."""
    grid = np.asarray(grid)
    h, w = grid.shape
    ax.imshow(grid, cmap=ARC_CMAP, norm=ARC_NORM, interpolation="nearest", origin="upper")
    _cell_borders(ax, h, w)
    _frame(ax)
    ax.set_title(f"{title}  {size_label(grid)}" if title else size_label(grid), fontsize=9)


def _cell_borders(ax: Axes, h: int, w: int) -> None:
    ax.hlines(np.arange(-0.5, h + 0.5), -0.5, w - 0.5, colors=BORDER_COLOUR, linewidth=0.5)
    ax.vlines(np.arange(-0.5, w + 0.5), -0.5, h - 0.5, colors=BORDER_COLOUR, linewidth=0.5)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)  # keeps row 0 at the top after the lines have been added
    ax.set_aspect("equal")


def draw_message(ax: Axes, message: str, title: str | None = None, alert: bool = True) -> None:
    """An empty panel that says `message` (a missing grid, a shape mismatch)."""
    colour = ALERT_COLOUR if alert else "black"
    ax.text(
        0.5,
        0.5,
        message,
        ha="center",
        va="center",
        transform=ax.transAxes,
        color=colour,
        fontsize=10,
        wrap=True,
    )
    _frame(ax, colour if alert else BORDER_COLOUR, 2.5 if alert else 1.0)
    if title:
        ax.set_title(title, fontsize=9, color=colour)


def plot_task(
    task_or_pairs: Task | Sequence[tuple[np.ndarray, np.ndarray]], title: str | None = None
) -> Figure:
    """All pairs of a task (a Task shows its demos then its tests) in two rows: inputs over outputs."""
    if isinstance(task_or_pairs, Task):
        labelled = [(f"demo {k}", p) for k, p in enumerate(task_or_pairs.train)]
        labelled += [(f"test {k}", p) for k, p in enumerate(task_or_pairs.test)]
        title = title or f"task {task_or_pairs.task_id}"
    else:
        labelled = [(f"example {k}", p) for k, p in enumerate(task_or_pairs)]
    fig, axes = new_figure(2, len(labelled))
    for col, (label, (x, y)) in enumerate(labelled):
        draw_grid(axes[0, col], x, f"{label} in")
        draw_grid(axes[1, col], y, f"{label} out")
    if title:
        fig.suptitle(title)
    return fig


def plot_episode(episode: Episode, title: str | None = None) -> Figure:
    """Context pairs then the query, inputs over outputs; an unknown query output is shown as "?"."""
    fig, axes = new_figure(2, len(episode.context) + 1)
    for col, (x, y) in enumerate(episode.context):
        draw_grid(axes[0, col], x, f"context {col} in")
        draw_grid(axes[1, col], y, f"context {col} out")
    q = len(episode.context)
    draw_grid(axes[0, q], episode.query_input, "query in")
    if episode.query_output is None:
        draw_message(axes[1, q], "?", "query out", alert=False)
    else:
        draw_grid(axes[1, q], episode.query_output, "query out")
    fig.suptitle(title or f"episode of task {episode.task_id}")
    return fig


def wrong_cells(prediction: np.ndarray | None, target: np.ndarray) -> np.ndarray | None:
    """Boolean mask of cells where prediction != target; None when there is no grid or the shapes differ."""
    if prediction is None or np.shape(prediction) != np.shape(target):
        return None
    return np.asarray(prediction) != np.asarray(target)


def prediction_status(prediction: np.ndarray | None, target: np.ndarray) -> str:
    """ "exact match", "wrong: k cells", "shape mismatch 3x4 vs target 3x3" or "no valid grid"."""
    if prediction is None:
        return "no valid grid"
    mask = wrong_cells(prediction, target)
    if mask is None:
        return f"shape mismatch {size_label(prediction)} vs target {size_label(target)}"
    k = int(mask.sum())
    return "exact match" if k == 0 else f"wrong: {k} cell{'s' if k > 1 else ''}"


def invalid_reason(tokens: Sequence[int]) -> str | None:
    """Why generated tokens (after BOS) decode to no grid, or None when they decode to one.

    Mirrors `tokens_to_grid`: decoding stops at EOS (or PAD, which only follows a stop); a row ends with ROW.
    """
    width, rows, cells = None, 0, 0
    for i, t in enumerate(int(t) for t in tokens):
        if t in (EOS, PAD):
            if cells:
                return f"EOS mid-row: row {rows} has {cells} cells and no ROW"
            break
        if t == ROW:
            if not cells:
                return f"empty row {rows}: ROW at token {i} with no cell before it"
            if width is not None and cells != width:
                return f"ragged rows: row {rows} has {cells} cells, row 0 has {width}"
            width, rows, cells = width or cells, rows + 1, 0
        elif t < N_COLOURS:
            cells += 1
        else:
            return f"special token {TOKEN_NAMES.get(t, t)} mid-grid (token {i})"
    else:
        if cells:
            return f"no EOS within the budget: stopped mid-row after {len(tokens)} tokens"
    if not rows:
        return "no rows: EOS before any ROW"
    if rows > MAX_SIDE or width > MAX_SIDE:
        return f"{rows}x{width} is larger than {MAX_SIDE}x{MAX_SIDE}"
    return None


def draw_token_strip(ax: Axes, tokens: Sequence[int], title: str = "raw tokens") -> None:
    """The generated tokens as a strip of cells, STRIP_WIDTH a line: colours in the ARC palette, special tokens
    white with a symbol (B BOS, E EOS, ↵ ROW, I/O separators, · PAD). Only the last STRIP_MAX are shown."""
    shown = [int(t) for t in tokens][-STRIP_MAX:]
    skipped = len(tokens) - len(shown)
    n_lines = max(1, -(-len(shown) // STRIP_WIDTH))
    grid = np.full((n_lines, STRIP_WIDTH), np.nan)  # special tokens and the unused tail stay blank
    for k, t in enumerate(shown):
        if t < N_COLOURS:
            grid[k // STRIP_WIDTH, k % STRIP_WIDTH] = t
    ax.imshow(np.ma.masked_invalid(grid), cmap=ARC_CMAP, norm=ARC_NORM, interpolation="nearest")
    for k, t in enumerate(shown):
        if t >= N_COLOURS:
            ax.text(k % STRIP_WIDTH, k // STRIP_WIDTH, TOKEN_SYMBOLS.get(t, "?"), ha="center", va="center",
                    fontsize=6, color=ALERT_COLOUR if t not in (ROW, EOS) else "black")  # fmt: skip
    _frame(ax)
    more = f" (last {len(shown)} of {len(tokens)})" if skipped else f" ({len(tokens)})"
    ax.set_title(title + more, fontsize=8)


def draw_prediction_row(
    axes: Sequence[Axes], query_input, target, prediction, label: str | None = None, tokens=None
) -> None:
    """Four panels: input, target, prediction and the wrong-cell mask (or a message saying why there is none).

    With the generated `tokens`, a missing grid says why (no EOS within the budget, ragged rows, a special
    token mid-grid) and the last panel shows the raw tokens.
    """
    target = np.asarray(target)
    draw_grid(axes[0], query_input, f"{label}\ninput" if label else "input")
    draw_grid(axes[1], target, "target")
    if prediction is None:
        reason = invalid_reason(tokens) if tokens is not None else None
        draw_message(axes[2], "no valid grid" + (f":\n{_wrap(reason)}" if reason else ""), "prediction")
        if tokens is not None:
            draw_token_strip(axes[3], tokens)
        else:
            draw_message(axes[3], "no valid grid:\nnothing to compare", "wrong cells")
        return
    prediction = np.asarray(prediction)
    mask = wrong_cells(prediction, target)
    if mask is None:
        draw_grid(axes[2], prediction)
        mismatch = f"SHAPE MISMATCH {size_label(prediction)} vs target {size_label(target)}"
        axes[2].set_title(mismatch, fontsize=9, color=ALERT_COLOUR, fontweight="bold")
        _frame(axes[2], ALERT_COLOUR, 3.0)
        draw_message(
            axes[3], f"shape mismatch\n{size_label(prediction)} vs {size_label(target)}", "wrong cells"
        )
        return
    draw_grid(axes[2], prediction, "prediction")
    h, w = mask.shape
    axes[3].imshow(
        mask.astype(np.int8), cmap=MASK_CMAP, norm=MASK_NORM, interpolation="nearest", origin="upper"
    )
    _cell_borders(axes[3], h, w)
    status = prediction_status(prediction, target)
    _frame(axes[3], ALERT_COLOUR if mask.any() else BORDER_COLOUR, 2.0 if mask.any() else 1.0)
    axes[3].set_title(status, fontsize=9, color=ALERT_COLOUR if mask.any() else "green")


def _wrap(text: str, width: int = 22) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def plot_prediction(query_input, target, prediction, title: str | None = None, tokens=None) -> Figure:
    """Input, target, prediction and the mask of wrong cells (red) for one query."""
    return plot_gallery([(query_input, target, prediction, None, tokens)], title=title)


def plot_gallery(rows: Sequence[PredictionRow], title: str | None = None) -> Figure:
    """One prediction per row: tuples (input, target, prediction or None) with optional fourth and fifth items,
    a title and the generated tokens (which explain a missing grid)."""
    fig, axes = new_figure(len(rows), 4)
    for r, row in enumerate(rows):
        query_input, target, prediction, *extra = row
        label, tokens = (list(extra) + [None, None])[:2]
        draw_prediction_row(axes[r], query_input, target, prediction, label, tokens)
    if title:
        fig.suptitle(title)
    return fig


def gallery_rows(model, episodes: Sequence[Episode], label: str = "") -> list[PredictionRow]:
    """Generate each episode's query output and return gallery rows carrying the raw tokens."""
    from arclib.evaluation.predict import generate_tokens

    return [
        (ep.query_input, ep.query_output, tokens_to_grid(tokens), f"{label} {ep.task_id}".strip(), tokens)
        for ep, (tokens, _) in zip(episodes, generate_tokens(model, list(episodes)))
    ]

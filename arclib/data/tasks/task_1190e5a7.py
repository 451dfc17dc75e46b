"""1190e5a7: full-length lines of one colour cut a background into cells; the output is a background-coloured
grid with one cell per cell of the input, i.e. (horizontal lines + 1) x (vertical lines + 1)."""

from __future__ import annotations

import numpy as np

CHANGES_SHAPE = True


def solve(grid: np.ndarray) -> np.ndarray:
    colours, counts = np.unique(grid, return_counts=True)
    background = colours[np.argmax(counts)]
    # A line row (column) is the only kind with no background cell in it: crossing lines pierce the others.
    rows = _runs(np.any(grid == background, axis=1))
    cols = _runs(np.any(grid == background, axis=0))
    return np.full((rows, cols), background, dtype=grid.dtype)


def _runs(is_open: np.ndarray) -> int:
    """How many maximal runs of True the sequence holds."""
    starts = is_open & ~np.concatenate(([False], is_open[:-1]))
    return int(starts.sum())


def sample_input(rng: np.random.Generator, widen: float) -> np.ndarray:
    # Real grids are square, 11 to 27 a side, with 1-5 lines each way; widening admits smaller, larger and
    # non-square grids.
    lo, hi = 11 - round(6 * widen), 27 + round(3 * widen)
    h = int(rng.integers(lo, hi + 1))
    w = h if rng.random() >= widen else int(rng.integers(lo, hi + 1))
    background, line = rng.choice(10, size=2, replace=False)
    grid = np.full((h, w), background, dtype=np.int8)
    grid[_line_positions(rng, h, widen), :] = line
    grid[:, _line_positions(rng, w, widen)] = line
    return grid


def _line_positions(rng: np.random.Generator, side: int, widen: float) -> np.ndarray:
    """Line indices off the border and never adjacent, like the real ones. At most a quarter of the side is
    lines, so the background stays the majority colour (solve relies on it)."""
    k = int(rng.integers(1, max(1, min(5 + round(3 * widen), side // 4)) + 1))
    interior = side - 2
    # Choosing k sorted slots among interior-k+1 and spreading them by their rank leaves a gap between lines.
    slots = np.sort(rng.choice(interior - k + 1, size=k, replace=False))
    return 1 + slots + np.arange(k)

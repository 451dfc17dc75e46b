"""5daaa586: two full rows and two full columns of four colours frame a rectangle; crop to the frame (lines
included) and extend every dot inside it, coloured like one of the lines, as a ray up to that line."""

from __future__ import annotations

import numpy as np

CHANGES_SHAPE = True

# np.rot90 turns the left side to the bottom once, the top twice, the right three times.
_TURNS_TO_BOTTOM = {"bottom": 0, "left": 1, "top": 2, "right": 3}


def solve(grid: np.ndarray) -> np.ndarray:
    # Only the four lines are fully coloured; the dots are too sparse to fill a row or column.
    r0, r1 = np.flatnonzero((grid != 0).all(axis=1))
    c0, c1 = np.flatnonzero((grid != 0).all(axis=0))
    off_lines = np.ones(grid.shape, dtype=bool)
    off_lines[[r0, r1], :] = False
    off_lines[:, [c0, c1]] = False
    dot_colour = _majority(grid[off_lines & (grid != 0)])
    # Crossings may take either line's colour, so a line's colour is its majority colour.
    sides = {"top": grid[r0], "bottom": grid[r1], "left": grid[:, c0], "right": grid[:, c1]}
    side = next(s for s, line in sides.items() if _majority(line) == dot_colour)

    k = _TURNS_TO_BOTTOM[side]
    crop = np.rot90(grid[r0 : r1 + 1, c0 : c1 + 1], k).copy()
    inside = crop[1:-1, 1:-1]
    # With the target line at the bottom, a cell is on a ray when some dot lies above it in its column.
    on_ray = np.maximum.accumulate(inside == dot_colour, axis=0)
    inside[on_ray] = dot_colour
    return np.rot90(crop, -k).copy()


def _majority(values: np.ndarray) -> int:
    return int(np.bincount(values.ravel(), minlength=10).argmax())


def sample_input(rng: np.random.Generator, widen: float) -> np.ndarray:
    # Real grids are 12x12 to 22x22 with frames of 6x9 to 15x12 cells; widening admits smaller and larger ones.
    lo, hi = max(7, 12 - round(5 * widen)), 22 + round(8 * widen)
    h, w = (int(v) for v in rng.integers(lo, hi + 1, size=2))
    r0, r1 = _line_pair(rng, h)
    c0, c1 = _line_pair(rng, w)
    top, bottom, left, right = (int(c) for c in rng.choice(np.arange(1, 10), size=4, replace=False))
    dot_colour = (top, bottom, left, right)[int(rng.integers(4))]

    # Real dots cover 4-10% of the cells, inside and outside the frame, never on a line.
    density = rng.uniform(0.04, 0.11 + 0.05 * widen)
    while True:
        grid = np.where(rng.random((h, w)) < density, dot_colour, 0).astype(np.int8)
        # Verticals usually cover the crossings (3 of 4 real tasks); sometimes a horizontal line does.
        over = rng.random() < 0.25
        if over:
            grid[:, [c0, c1]] = left, right
        grid[r0, :], grid[r1, :] = top, bottom
        if not over:
            grid[:, [c0, c1]] = left, right
        if _informative(grid, (r0, r1), (c0, c1)):
            return grid


def _line_pair(rng: np.random.Generator, n: int) -> tuple[int, int]:
    """Two line positions at least 5 apart (a real frame's interior is at least 4 cells), rarely on the border."""
    while True:
        a, b = sorted(int(v) for v in rng.integers(0, n, size=2))
        if b - a >= 5 and (a > 0 or rng.random() < 0.2) and (b < n - 1 or rng.random() < 0.2):
            return a, b


def _informative(grid: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]) -> bool:
    """Only the lines are full, and the rays add at least three cells, as in every real pair."""
    full_rows = np.flatnonzero((grid != 0).all(axis=1))
    full_cols = np.flatnonzero((grid != 0).all(axis=0))
    if tuple(full_rows) != rows or tuple(full_cols) != cols:
        return False
    inside = grid[rows[0] + 1 : rows[1], cols[0] + 1 : cols[1]]
    if not inside.any():
        return False
    crop = grid[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1]
    return int((solve(grid) != crop).sum()) >= 3

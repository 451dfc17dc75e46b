"""a65b410d: a red (2) bar starts at the left edge; each row above gets a green (3) bar one cell longer per
step up, each row below a blue (1) bar one cell shorter per step down, until the length reaches zero."""

from __future__ import annotations

import numpy as np

RED, GREEN, BLUE = 2, 3, 1


def solve(grid: np.ndarray) -> np.ndarray:
    (bar_row,) = np.flatnonzero((grid == RED).any(axis=1))
    length = int((grid[bar_row] == RED).sum())
    out = grid.copy()
    for r in range(grid.shape[0]):
        steps_up = bar_row - r
        if steps_up != 0:
            out[r, : max(0, length + steps_up)] = GREEN if steps_up > 0 else BLUE
    return out


def sample_input(rng: np.random.Generator, widen: float) -> np.ndarray:
    # Real grids are 7x7 to 9x9 (bars of 2-5 cells in row 2 or 3): only 173 distinct inputs. The rule is the
    # same on any size, so sides range 6..12; widening admits smaller and larger grids.
    lo, hi = max(3, 6 - round(3 * widen)), 12 + round(18 * widen)
    while True:
        h, w = (int(v) for v in rng.integers(lo, hi + 1, size=2))
        row = int(rng.integers(1, h - 1))
        length = int(rng.integers(1, w))
        # Any placement where, as in every real pair, the top green bar stops short of the right edge and
        # the blue bars fit above the bottom edge; a bar on row 1 of length 1 would be barely informative.
        if row + length < w and row + length <= h and row + length >= 3:
            grid = np.zeros((h, w), dtype=np.int8)
            grid[row, :length] = RED
            return grid

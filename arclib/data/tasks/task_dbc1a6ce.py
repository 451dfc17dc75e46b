"""dbc1a6ce: blue (1) dots lie on black; join every two blue dots that are neighbours along a row or a
column with an azure (8) segment over the black cells between them."""

from __future__ import annotations

import numpy as np

BLUE, AZURE = 1, 8


def solve(grid: np.ndarray) -> np.ndarray:
    out = grid.copy()
    for lines_in, lines_out in ((grid, out), (grid.T, out.T)):  # rows, then columns (views write through)
        for line, line_out in zip(lines_in, lines_out):
            dots = np.flatnonzero(line == BLUE)
            for a, b in zip(dots[:-1], dots[1:]):
                gap = line_out[a + 1 : b]
                gap[gap == 0] = AZURE
    return out


def sample_input(rng: np.random.Generator, widen: float) -> np.ndarray:
    # Real grids are 8x9 to 19x21 with 4-14% of the cells blue; widening admits smaller/larger grids and
    # sparser/denser dots.
    lo, hi = max(3, 8 - round(5 * widen)), 21 + round(9 * widen)
    while True:
        h, w = (int(v) for v in rng.integers(lo, hi + 1, size=2))
        density = rng.uniform(max(0.02, 0.04 - 0.02 * widen), 0.14 + 0.06 * widen)
        grid = np.zeros((h, w), dtype=np.int8)
        # Real dots never share an edge; draw candidates in random order and keep those with free neighbours.
        for k in rng.permutation(h * w)[: max(2, round(density * h * w))]:
            r, c = divmod(int(k), w)
            if not grid[max(0, r - 1) : r + 2, c].any() and not grid[r, max(0, c - 1) : c + 2].any():
                grid[r, c] = BLUE
        if not np.array_equal(solve(grid), grid):
            return grid

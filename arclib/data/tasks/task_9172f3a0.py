"""9172f3a0: scale the grid up by 3, every cell becoming a 3x3 block of its colour."""

from __future__ import annotations

import numpy as np

CHANGES_SHAPE = True
SCALE = 3


def solve(grid: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(grid, SCALE, axis=0), SCALE, axis=1)


def sample_input(rng: np.random.Generator, widen: float) -> np.ndarray:
    # Real grids are 3x3, about half black, with two or three other colours; widening varies the size (the
    # output triples each side, so at most 10) and the colour count.
    h = int(rng.integers(3 - round(2 * widen), 3 + round(7 * widen) + 1))
    w = int(rng.integers(3 - round(2 * widen), 3 + round(7 * widen) + 1))
    colours = rng.choice(np.arange(1, 10), size=int(rng.integers(2, 3 + round(3 * widen) + 1)), replace=False)
    cells = rng.choice(colours, size=(h, w))
    black = rng.random((h, w)) < rng.uniform(0.3, 0.6)
    grid = np.where(black, 0, cells).astype(np.int8)
    if not grid.any():
        grid[rng.integers(h), rng.integers(w)] = colours[0]
    return grid

"""623ea044: a grid holds one coloured pixel; draw both diagonals through it, in its colour, to the grid edges."""

from __future__ import annotations

import numpy as np


def solve(grid: np.ndarray) -> np.ndarray:
    out = grid.copy()
    h, w = grid.shape
    (r0,), (c0,) = np.nonzero(grid)
    rows, cols = np.indices((h, w))
    on_diagonal = (rows - r0 == cols - c0) | (rows - r0 == c0 - cols)
    out[on_diagonal] = grid[r0, c0]
    return out


def sample_input(rng: np.random.Generator, widen: float) -> np.ndarray:
    # Real grids are squares of side 7, 15 and 17: 264 examples up to colour and rotation. The rule is the same
    # on any rectangle, so half the grids are not square; widening admits smaller and larger grids.
    lo, hi = max(3, 7 - round(4 * widen)), 17 + round(13 * widen)
    h = int(rng.integers(lo, hi + 1))
    w = int(rng.integers(lo, hi + 1)) if rng.random() < max(0.5, widen) else h
    grid = np.zeros((h, w), dtype=np.int8)
    grid[rng.integers(h), rng.integers(w)] = rng.integers(1, 10)
    return grid

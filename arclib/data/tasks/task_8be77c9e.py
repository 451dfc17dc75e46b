"""8be77c9e: append the grid's top-bottom mirror image below it."""

from __future__ import annotations

import numpy as np

CHANGES_SHAPE = True


def solve(grid: np.ndarray) -> np.ndarray:
    return np.vstack([grid, grid[::-1]])


def sample_input(rng: np.random.Generator, widen: float) -> np.ndarray:
    # Real grids are 3x3 in black and blue; widening varies the size (the output doubles the height, so at
    # most 15) and admits a few more colours.
    h = int(rng.integers(3 - round(2 * widen), 3 + round(12 * widen) + 1))
    w = int(rng.integers(3 - round(2 * widen), 3 + round(12 * widen) + 1))
    # Black and blue alone allow 287 examples up to rotation and flips; the rule is the same in any colours, so
    # half the grids add a second colour.
    n_extra = int(rng.random() < 0.5) + int(rng.integers(0, round(3 * widen) + 1))
    extra = rng.choice(np.arange(2, 10), size=n_extra, replace=False)
    colours = np.concatenate(([0, 1], extra))
    grid = rng.choice(colours, size=(h, w)).astype(np.int8)
    if not grid.any():
        # Every real grid holds some blue; an all-black grid shows nothing.
        grid[rng.integers(h), rng.integers(w)] = 1
    return grid

"""a9f96cdd: the red (2) cell disappears and its four diagonal neighbours are painted green (3) up-left,
magenta (6) up-right, azure (8) down-left and orange (7) down-right; neighbours off the grid are dropped."""

from __future__ import annotations

import numpy as np

RED = 2
CORNER_COLOURS = {(-1, -1): 3, (-1, 1): 6, (1, -1): 8, (1, 1): 7}


def solve(grid: np.ndarray) -> np.ndarray:
    out = np.zeros_like(grid)
    h, w = grid.shape
    for r, c in zip(*np.nonzero(grid == RED)):
        for (dr, dc), colour in CORNER_COLOURS.items():
            if 0 <= r + dr < h and 0 <= c + dc < w:
                out[r + dr, c + dc] = colour
    return out


def sample_input(rng: np.random.Generator, widen: float) -> np.ndarray:
    # Every real grid is 3x5, which holds only 6 examples up to rotation and flips (4 of them real pairs);
    # the rule is the same on any grid of sides 2 and up, so sides range 2..6 by 3..7 (widening: up to 15).
    h = int(rng.integers(2, 6 + round(9 * widen) + 1))
    w = int(rng.integers(3, 7 + round(8 * widen) + 1))
    grid = np.zeros((h, w), dtype=np.int8)
    grid[rng.integers(h), rng.integers(w)] = RED
    return grid

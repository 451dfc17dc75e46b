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
    # Every real grid is 3x5; widening grows both sides (never below 2, so some neighbour can exist).
    h = int(rng.integers(max(2, 3 - round(widen)), 3 + round(12 * widen) + 1))
    w = int(rng.integers(max(2, 5 - round(3 * widen)), 5 + round(12 * widen) + 1))
    grid = np.zeros((h, w), dtype=np.int8)
    grid[rng.integers(h), rng.integers(w)] = RED
    return grid

"""6d0aefbc: append the grid's left-right mirror image on its right."""

from __future__ import annotations

import numpy as np

CHANGES_SHAPE = True


def solve(grid: np.ndarray) -> np.ndarray:
    return np.hstack([grid, grid[:, ::-1]])


def sample_input(rng: np.random.Generator, widen: float) -> np.ndarray:
    # Real grids are 3x3 in two or three of the colours 1, 6, 8 with no black; widening varies the size
    # (the output doubles the width, so at most 15) and the palette.
    h = int(rng.integers(3 - round(2 * widen), 3 + round(12 * widen) + 1))
    w = int(rng.integers(3 - round(2 * widen), 3 + round(12 * widen) + 1))
    palette = np.array([1, 6, 8]) if rng.random() >= widen else np.arange(10)
    colours = rng.choice(
        palette, size=int(rng.integers(2, min(3 + round(3 * widen), len(palette)) + 1)), replace=False
    )
    return rng.choice(colours, size=(h, w)).astype(np.int8)

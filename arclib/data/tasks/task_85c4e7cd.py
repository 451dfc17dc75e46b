"""85c4e7cd: the grid is a nest of one-cell-wide rectangular rings, each of one colour; reverse the order of
the ring colours, so the outermost ring takes the innermost colour and so on."""

from __future__ import annotations

import numpy as np


def solve(grid: np.ndarray) -> np.ndarray:
    h, w = grid.shape
    rows, cols = np.indices((h, w))
    ring = np.minimum.reduce([rows, cols, h - 1 - rows, w - 1 - cols])
    n_rings = int(ring.max()) + 1
    colours = grid[np.arange(n_rings), np.arange(n_rings)]  # the diagonal crosses every ring once
    return colours[::-1][ring].astype(grid.dtype)


def sample_input(rng: np.random.Generator, widen: float) -> np.ndarray:
    # Real grids are even squares of side 6 to 14; widening admits odd, non-square, smaller and larger grids.
    if rng.random() < widen:
        h, w = (
            int(v) for v in rng.integers(max(3, 6 - round(3 * widen)), 14 + round(16 * widen) + 1, size=2)
        )
    else:
        h = w = 2 * int(rng.integers(3, 8))
    n_rings = (min(h, w) + 1) // 2
    while True:
        colours = _ring_colours(rng, n_rings, widen)
        if not np.array_equal(colours, colours[::-1]):  # a palindrome would leave the grid unchanged
            break
    rows, cols = np.indices((h, w))
    return colours[np.minimum.reduce([rows, cols, h - 1 - rows, w - 1 - cols])]


def _ring_colours(rng: np.random.Generator, n: int, widen: float) -> np.ndarray:
    """Half the time distinct non-black colours, as in every real pair; otherwise, as the rule allows, a colour
    may come back on a later ring, and only neighbouring rings must differ. Distinct colours alone give one
    example per grid size up to colour relabelling: five in all, every one a real pair."""
    palette = np.arange(0 if rng.random() < widen else 1, 10)
    if n <= len(palette) and rng.random() < 0.5:
        return rng.choice(palette, size=n, replace=False).astype(np.int8)
    colours = [int(rng.choice(palette))]
    while len(colours) < n:
        colours.append(int(rng.choice(palette[palette != colours[-1]])))
    return np.array(colours, dtype=np.int8)

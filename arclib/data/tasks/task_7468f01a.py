"""7468f01a: crop the single object (a filled rectangle carrying a pattern in a second colour) to its
bounding box and mirror it left-right."""

from __future__ import annotations

import numpy as np

CHANGES_SHAPE = True


def solve(grid: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(grid)
    return grid[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1][:, ::-1].copy()


def sample_input(rng: np.random.Generator, widen: float) -> np.ndarray:
    # Real grids are 10-17 x 15-17 holding a 4-7 x 5-8 rectangle; widening stretches both ranges.
    gh = int(rng.integers(max(4, 10 - round(6 * widen)), 17 + round(13 * widen) + 1))
    gw = int(rng.integers(max(4, 15 - round(11 * widen)), 17 + round(13 * widen) + 1))
    oh = int(rng.integers(max(2, 4 - round(2 * widen)), 7 + round(8 * widen) + 1))
    ow = int(rng.integers(max(2, 5 - round(3 * widen)), 8 + round(8 * widen) + 1))
    # The object never fills the grid (a margin remains), so cropping always changes the grid.
    oh, ow = min(oh, gh - 1), min(ow, gw - 1)
    base, ink = rng.choice(np.arange(1, 10), size=2, replace=False)
    obj = _patterned_rectangle(rng, oh, ow, base, ink)
    grid = np.zeros((gh, gw), dtype=np.int8)
    top, left = int(rng.integers(gh - oh + 1)), int(rng.integers(gw - ow + 1))
    grid[top : top + oh, left : left + ow] = obj
    return grid


def _patterned_rectangle(rng: np.random.Generator, h: int, w: int, base: int, ink: int) -> np.ndarray:
    """A rectangle of `base` with a few small `ink` blobs (about a fifth of the area, like the real ones),
    redrawn until it is not left-right symmetric, so the mirroring is visible."""
    while True:
        obj = np.full((h, w), base, dtype=np.int8)
        budget = max(1, round(h * w * rng.uniform(0.12, 0.3)))
        while budget > 0:
            size = min(budget, int(rng.integers(1, 5)))
            _grow_blob(rng, obj, ink, size)
            budget -= size
        if not np.array_equal(obj, obj[:, ::-1]):
            return obj


def _grow_blob(rng: np.random.Generator, obj: np.ndarray, ink: int, size: int) -> None:
    """Paint a 4-connected blob of up to `size` cells, grown from a random seed by random steps."""
    h, w = obj.shape
    r, c = int(rng.integers(h)), int(rng.integers(w))
    obj[r, c] = ink
    for _ in range(size - 1):
        dr, dc = ((0, 1), (1, 0), (0, -1), (-1, 0))[int(rng.integers(4))]
        r, c = min(max(r + dr, 0), h - 1), min(max(c + dc, 0), w - 1)
        obj[r, c] = ink

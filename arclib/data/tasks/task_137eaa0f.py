"""137eaa0f: scattered fragments each hold one grey (5) anchor cell; overlay the 3x3 neighbourhoods of all
anchors on one 3x3 grid, so every fragment keeps its offset from the anchor at the centre."""

from __future__ import annotations

import numpy as np

CHANGES_SHAPE = True
GREY = 5
# The eight neighbours of the anchor in clockwise order, so that a run of them forms an arc.
RING = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))
COLOURS = np.array([1, 2, 3, 4, 6, 7, 8, 9])


def solve(grid: np.ndarray) -> np.ndarray:
    out = np.zeros((3, 3), dtype=grid.dtype)
    out[1, 1] = GREY
    h, w = grid.shape
    for r, c in zip(*np.nonzero(grid == GREY)):
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                if 0 <= r + dr < h and 0 <= c + dc < w and grid[r + dr, c + dc] not in (0, GREY):
                    out[1 + dr, 1 + dc] = grid[r + dr, c + dc]
    return out


def sample_input(rng: np.random.Generator, widen: float) -> np.ndarray:
    # Real grids are 11x11 with 3-4 fragments of 1-3 cells that together cover 6-8 of the 8 neighbours.
    while True:
        h = int(rng.integers(11 - round(4 * widen), 11 + round(8 * widen) + 1))
        w = int(rng.integers(11 - round(4 * widen), 11 + round(8 * widen) + 1))
        fragments = _split_ring(rng, widen)
        anchors = _place_anchors(rng, h, w, len(fragments))
        if anchors is not None:
            break
    grid = np.zeros((h, w), dtype=np.int8)
    colours = rng.choice(COLOURS, size=len(fragments), replace=False)
    for (r, c), cells, colour in zip(anchors, fragments, colours):
        grid[r, c] = GREY
        for dr, dc in cells:
            grid[r + dr, c + dc] = colour
    return grid


def _split_ring(rng: np.random.Generator, widen: float) -> list[list[tuple[int, int]]]:
    """Disjoint fragments (lists of anchor offsets) covering most of the ring around the anchor.

    Mostly runs along the ring, as in the real task; sometimes scattered cells (one real fragment sits on
    both sides of its anchor). Widening admits more, smaller fragments and less coverage."""
    max_n = 4 + round(4 * widen)
    n = int(rng.integers(3, max_n + 1))
    covered = int(rng.integers(max(n, 6 - round(3 * widen)), 9))
    # Fragment sizes: `covered` cells split into n parts of 1..3 (more when widened) cells.
    while True:
        cuts = np.sort(rng.choice(np.arange(1, covered), size=n - 1, replace=False))
        sizes = np.diff(np.concatenate(([0], cuts, [covered])))
        if sizes.max() <= 3 + round(2 * widen):
            break
    # Uncovered neighbours fall anywhere, also between two fragments, as in the real task.
    kept = rng.permutation(8)[:covered]
    if rng.random() < 0.8:
        rotated = np.roll(np.arange(8), int(rng.integers(8)))
        order = rotated[np.isin(rotated, kept)]
    else:
        order = kept
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    return [[RING[k] for k in order[s : s + size]] for s, size in zip(starts, sizes)]


def _place_anchors(rng: np.random.Generator, h: int, w: int, n: int) -> list[tuple[int, int]] | None:
    """n anchor positions whose 3x3 windows lie inside the grid and do not overlap, or None if the random
    placement keeps failing (the caller then draws a new layout)."""
    anchors: list[tuple[int, int]] = []
    for _ in range(50 * n):
        r, c = int(rng.integers(1, h - 1)), int(rng.integers(1, w - 1))
        if all(max(abs(r - r2), abs(c - c2)) >= 3 for r2, c2 in anchors):
            anchors.append((r, c))
            if len(anchors) == n:
                return anchors
    return None

"""c1d99e64: a grid of one-colour noise has a few rows and columns that are entirely black; paint every
such row and column red (2)."""

from __future__ import annotations

import numpy as np

RED = 2


def solve(grid: np.ndarray) -> np.ndarray:
    out = grid.copy()
    out[(grid == 0).all(axis=1), :] = RED
    out[:, (grid == 0).all(axis=0)] = RED
    return out


def sample_input(rng: np.random.Generator, widen: float) -> np.ndarray:
    # Real grids are 12x14 to 27x25 with 0-3 blank rows and 1-3 blank columns (at least one in all),
    # and about 60-70% of the cells coloured; widening admits smaller and larger grids and more blank lines.
    lo, hi = max(3, 12 - round(9 * widen)), 27 + round(3 * widen)
    h, w = (int(v) for v in rng.integers(lo, hi + 1, size=2))
    colour = int(rng.integers(1, 10))
    grid = np.where(rng.random((h, w)) < rng.uniform(0.55, 0.75), colour, 0).astype(np.int8)
    max_lines = 3 + round(2 * widen)
    blank_rows = _spaced_positions(rng, h, int(rng.integers(0, max_lines + 1)))
    blank_cols = _spaced_positions(rng, w, int(rng.integers(0 if blank_rows else 1, max_lines + 1)))
    grid[blank_rows, :] = 0
    grid[:, blank_cols] = 0
    # Only the chosen lines may be blank: give every other row and column a coloured cell.
    for r in np.setdiff1d(np.flatnonzero(~grid.any(axis=1)), blank_rows):
        grid[r, rng.choice(np.setdiff1d(np.arange(w), blank_cols))] = colour
    for c in np.setdiff1d(np.flatnonzero(~grid.any(axis=0)), blank_cols):
        grid[rng.choice(np.setdiff1d(np.arange(h), blank_rows)), c] = colour
    return grid


def _spaced_positions(rng: np.random.Generator, n: int, k: int) -> list[int]:
    """Up to k distinct positions in 0..n-1, no two adjacent (real blank lines are never neighbours)."""
    free = list(range(n))
    chosen = []
    while free and len(chosen) < k:
        p = int(rng.choice(free))
        chosen.append(p)
        free = [q for q in free if abs(q - p) > 1]
    return sorted(chosen)

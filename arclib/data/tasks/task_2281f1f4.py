"""2281f1f4: grey (5) markers on the top row pick columns and grey markers on the right column pick rows;
every crossing of a picked column with a picked row turns red (2)."""

from __future__ import annotations

import numpy as np

GREY, RED = 5, 2


def solve(grid: np.ndarray) -> np.ndarray:
    out = grid.copy()
    # The top-right cell belongs to neither marker line, so it is excluded from both.
    cols = np.nonzero(grid[0, :-1] == GREY)[0]
    rows = np.nonzero(grid[1:, -1] == GREY)[0] + 1
    out[np.ix_(rows, cols)] = RED
    return out


def sample_input(rng: np.random.Generator, widen: float) -> np.ndarray:
    # Every real grid is 10x10 with 3-5 column markers (anywhere left of the corner) and 2-5 row markers
    # (from row 2 down: row 1 stays blank); widening changes the size and the marker counts.
    h = int(rng.integers(max(4, 10 - round(6 * widen)), 10 + round(20 * widen) + 1))
    w = int(rng.integers(max(3, 10 - round(7 * widen)), 10 + round(20 * widen) + 1))
    grid = np.zeros((h, w), dtype=np.int8)
    n_cols = _count(rng, 3, 5, w - 1, widen)
    n_rows = _count(rng, 2, 5, h - 2, widen)
    grid[0, rng.choice(w - 1, size=n_cols, replace=False)] = GREY
    grid[2 + rng.choice(h - 2, size=n_rows, replace=False), -1] = GREY
    return grid


def _count(rng: np.random.Generator, lo: int, hi: int, room: int, widen: float) -> int:
    """A marker count in lo..hi (reaching 1..room as widen grows), never more than the room on the line."""
    lo = max(1, lo - round(2 * widen))
    hi = max(hi, round(hi + widen * (room - hi)))
    return int(rng.integers(min(lo, room), min(hi, room) + 1))

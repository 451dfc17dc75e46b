"""2204b7a8: two opposite border lines of different colours; every green (3) dot takes the colour of the
nearer line."""

from __future__ import annotations

import numpy as np

GREEN = 3


def solve(grid: np.ndarray) -> np.ndarray:
    vertical = _is_line(grid[:, 0]) and _is_line(grid[:, -1])
    g = grid if vertical else grid.T
    out = g.copy()
    w = g.shape[1]
    for r, c in zip(*np.nonzero(g == GREEN)):
        if 2 * c == w - 1:
            raise ValueError(f"dot at column {c} is as near one line as the other")
        out[r, c] = g[r, 0] if 2 * c < w - 1 else g[r, -1]
    return out if vertical else out.T


def _is_line(cells: np.ndarray) -> bool:
    return bool(cells[0] != 0 and cells[0] != GREEN and np.all(cells == cells[0]))


def sample_input(rng: np.random.Generator, widen: float) -> np.ndarray:
    # Every real grid is 10x10 with 3 to 9 dots; widening varies the size and the dot count.
    along = int(rng.integers(10 - round(5 * widen), 10 + round(20 * widen) + 1))
    across = int(rng.integers(10 - round(5 * widen), 10 + round(20 * widen) + 1))
    # Built with the lines as the left and right columns, then turned for horizontal lines.
    grid = np.zeros((along, across), dtype=np.int8)
    grid[:, 0], grid[:, -1] = rng.choice([c for c in range(1, 10) if c != GREEN], size=2, replace=False)
    n_dots = int(rng.integers(3, 9 + round(12 * widen) + 1))
    placed = 0
    for _ in range(20 * n_dots):
        r, c = int(rng.integers(along)), int(rng.integers(1, across - 1))
        # Real dots never touch, not even diagonally, and none is equidistant from both lines.
        if 2 * c == across - 1 or np.any(grid[max(r - 1, 0) : r + 2, c - 1 : c + 2] == GREEN):
            continue
        grid[r, c] = GREEN
        placed += 1
        if placed == n_dots:
            break
    return grid if rng.random() < 0.5 else np.ascontiguousarray(grid.T)

"""b27ca6d3: red (2) cells lie on black; every red domino (two edge-adjacent red cells) gets a one-cell green (3)
outline around it, while lone red cells stay as they are."""

from __future__ import annotations

import numpy as np

RED, GREEN = 2, 3


def solve(grid: np.ndarray) -> np.ndarray:
    out = grid.copy()
    for cells in _red_components(grid):
        if len(cells) != 2:
            continue
        (r0, c0), (r1, c1) = sorted(cells)
        box = out[max(0, r0 - 1) : r1 + 2, max(0, c0 - 1) : c1 + 2]
        box[box == 0] = GREEN
    return out


def _red_components(grid: np.ndarray) -> list[list[tuple[int, int]]]:
    """Edge-connected groups of red cells."""
    h, w = grid.shape
    seen = np.zeros((h, w), dtype=bool)
    groups = []
    for start in zip(*np.nonzero(grid == RED)):
        if seen[start]:
            continue
        seen[start] = True
        stack, group = [start], []
        while stack:
            r, c = stack.pop()
            group.append((int(r), int(c)))
            for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if 0 <= nr < h and 0 <= nc < w and grid[nr, nc] == RED and not seen[nr, nc]:
                    seen[nr, nc] = True
                    stack.append((nr, nc))
        groups.append(group)
    return groups


def sample_input(rng: np.random.Generator, widen: float) -> np.ndarray:
    # Real grids are 15x16 to 17x16 with 1-5 dominoes and 8-17 lone cells; counts scale with the area,
    # and widening admits other sizes and more objects.
    lo, hi = max(5, 15 - round(10 * widen)), 18 + round(12 * widen)
    h, w = (int(v) for v in rng.integers(lo, hi + 1, size=2))
    scale = h * w / 250  # the real counts belong to grids of about 250 cells
    n_dominoes = max(1, round(rng.integers(1, 6 + round(4 * widen)) * scale))
    n_lone = round(rng.integers(6, 19 + round(10 * widen)) * scale)
    grid = np.zeros((h, w), dtype=np.int8)
    # A domino needs a black ring around it so that its outline is not another red cell.
    placed, tries = 0, 0
    while placed < n_dominoes and tries < 50 * n_dominoes:
        tries += 1
        vertical = int(rng.random() < 0.5)
        r, c = int(rng.integers(h - vertical)), int(rng.integers(w - 1 + vertical))
        r1, c1 = r + vertical, c + 1 - vertical
        if not grid[max(0, r - 1) : r1 + 2, max(0, c - 1) : c1 + 2].any():
            grid[r, c] = grid[r1, c1] = RED
            placed += 1
    # Lone cells may touch each other at corners (as in the real grids) but never share an edge, and stay
    # off the domino outlines.
    domino = grid == RED
    tries, budget = 0, 20 * n_lone
    while n_lone > 0 and tries < budget:
        tries += 1
        r, c = int(rng.integers(h)), int(rng.integers(w))
        near_domino = domino[max(0, r - 1) : r + 2, max(0, c - 1) : c + 2].any()
        touching = any(
            0 <= nr < h and 0 <= nc < w and grid[nr, nc] == RED
            for nr, nc in ((r, c), (r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))
        )
        if not near_domino and not touching:
            grid[r, c] = RED
            n_lone -= 1
    return grid

"""What every task generator shares: composing sampling with the rule, and rejecting degenerate examples."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from arclib.data.grids import MAX_SIDE, Grid


class DegenerateExample(ValueError):
    """A drawn example is unusable (unchanged where the rule changes something, empty, or out of range)."""


def check_example(x: Grid, y: Grid) -> None:
    """Raise DegenerateExample unless (x, y) is a usable training example."""
    for name, g in (("input", x), ("output", y)):
        if g.ndim != 2 or not (1 <= g.shape[0] <= MAX_SIDE and 1 <= g.shape[1] <= MAX_SIDE):
            raise DegenerateExample(f"{name} has shape {g.shape}, outside 1..{MAX_SIDE} per side")
        if g.min() < 0 or g.max() > 9:
            raise DegenerateExample(f"{name} has colours outside 0..9")
    if x.shape == y.shape and np.array_equal(x, y):
        raise DegenerateExample("output equals input")


@dataclass(frozen=True)
class TaskGenerator:
    task_id: str
    solve: Callable[[Grid], Grid]
    sample_input: Callable[[np.random.Generator, float], Grid]
    changes_shape: bool = False

    def generate(
        self, rng: np.random.Generator, widen: float = 0.0, max_tries: int = 100
    ) -> tuple[Grid, Grid]:
        """A fresh (input, output) example; deterministic for the state of `rng`."""
        for _ in range(max_tries):
            x = np.asarray(self.sample_input(rng, widen), dtype=np.int8)
            y = np.asarray(self.solve(x.copy()), dtype=np.int8)
            try:
                check_example(x, y)
            except DegenerateExample:
                continue
            return x, y
        raise RuntimeError(
            f"task {self.task_id}: no valid example in {max_tries} draws; the sampler is broken"
        )

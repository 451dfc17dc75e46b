"""Augmentations applied consistently to every grid of an episode, and their exact inverses.

The 8 dihedral transforms (rotations by k*90 degrees, optionally followed by a left-right flip), colour
permutations that keep the background 0 fixed, and context-pair order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from arclib.data.tokens import Episode

IDENTITY_COLOURS = tuple(range(10))


@dataclass(frozen=True)
class Augmentation:
    dihedral: int = 0  # 0..3 rotate by dihedral*90 deg; 4..7 the same then flip left-right
    colours: tuple[int, ...] = IDENTITY_COLOURS  # colours[c] is the new colour of c; colours[0] == 0
    context_order: tuple[int, ...] | None = field(default=None)  # None keeps the order

    def __post_init__(self):
        if not 0 <= self.dihedral < 8:
            raise ValueError(f"dihedral must be in 0..7, got {self.dihedral}")
        if sorted(self.colours) != list(range(10)) or self.colours[0] != 0:
            raise ValueError(f"colours must be a permutation of 0..9 fixing 0, got {self.colours}")

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        n_context: int = 0,
        dihedral: bool = True,
        colours: bool = True,
        order: bool = True,
    ) -> Augmentation:
        return cls(
            dihedral=int(rng.integers(8)) if dihedral else 0,
            colours=(0, *(int(c) for c in rng.permutation(np.arange(1, 10))))
            if colours
            else IDENTITY_COLOURS,
            context_order=tuple(int(i) for i in rng.permutation(n_context))
            if order and n_context > 1
            else None,
        )

    @property
    def transposes(self) -> bool:
        """Whether height and width swap (odd rotations)."""
        return self.dihedral % 2 == 1

    def move(self, a: np.ndarray) -> np.ndarray:
        """The dihedral transform alone, of a 2D array of anything (a view)."""
        out = np.rot90(a, self.dihedral % 4)
        return np.fliplr(out) if self.dihedral >= 4 else out

    def grid(self, g: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.move(np.asarray(self.colours, dtype=np.int8)[g]))

    def invert_grid(self, g: np.ndarray) -> np.ndarray:
        out = np.fliplr(g) if self.dihedral >= 4 else g
        out = np.rot90(out, -(self.dihedral % 4))
        return np.ascontiguousarray(np.argsort(self.colours).astype(np.int8)[out])

    def episode(self, ep: Episode) -> Episode:
        context = [(self.grid(x), self.grid(y)) for x, y in ep.context]
        if self.context_order is not None:
            context = [context[i] for i in self.context_order]
        return Episode(
            ep.task_id,
            context,
            self.grid(ep.query_input),
            None if ep.query_output is None else self.grid(ep.query_output),
        )

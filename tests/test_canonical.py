"""Canonical keys: equal exactly for copies up to a colour permutation fixing 0 and a dihedral transform."""

import numpy as np
import pytest

from arclib.data.augment import Augmentation
from arclib.data.canonical import canonical_key, example_keys


def random_example(rng, h=4, w=5, n_colours=4):
    x = rng.integers(0, n_colours, (h, w)).astype(np.int8)
    return x, np.flipud(x[:, :3]).copy()  # a non-square output, so orientation matters


@pytest.mark.parametrize("seed", range(20))
def test_key_is_invariant_to_colour_permutations_and_dihedral_transforms(seed):
    rng = np.random.default_rng(seed)
    x, y = random_example(rng)
    aug = Augmentation.random(rng, dihedral=True, colours=True, order=False)
    assert canonical_key(aug.grid(x), aug.grid(y)) == canonical_key(x, y)


def test_every_dihedral_transform_and_a_colour_absent_from_the_grid():
    rng = np.random.default_rng(0)
    x, y = random_example(rng, n_colours=3)  # colours 3..9 absent: a permutation may move them anywhere
    for d in range(8):
        aug = Augmentation(dihedral=d, colours=(0, 9, 8, 7, 6, 5, 4, 3, 2, 1))
        assert canonical_key(aug.grid(x), aug.grid(y)) == canonical_key(x, y)


def test_key_tells_different_examples_apart():
    rng = np.random.default_rng(1)
    x, y = random_example(rng)
    base = canonical_key(x, y)
    changed = y.copy()
    changed[0, 0] = (changed[0, 0] + 1) % 4
    assert canonical_key(x, changed) != base  # one cell differs
    swapped = np.where(x == 0, 1, np.where(x == 1, 0, x)).astype(np.int8)
    assert canonical_key(swapped, np.where(y == 0, 1, np.where(y == 1, 0, y))) != base  # 0 is not relabelled
    assert canonical_key(x, np.fliplr(y)) != base  # the output transformed alone is another example
    assert canonical_key(y, x) != base  # input and output have roles


def test_same_cells_in_other_shapes_differ():
    a = np.array([[1, 2, 2, 1]], dtype=np.int8)
    assert canonical_key(a, a) != canonical_key(a.reshape(2, 2), a.reshape(2, 2))  # same cells, other shape
    assert canonical_key(a, a) == canonical_key(a.T.copy(), a.T.copy())  # a rotation of it


def test_cached_keys_follow_the_content_not_the_array():
    rng = np.random.default_rng(1)
    x, y = random_example(rng)
    (first,) = example_keys([(x, y)])
    x[0, 0] = 9 if x[0, 0] != 9 else 8  # the same array object, now another example
    (second,) = example_keys([(x, y)])
    assert first != second and second == canonical_key(x, y)


def _reference_key(x: np.ndarray, y: np.ndarray) -> bytes:
    """The definition, one transform at a time: relabel colours 1..9 by first appearance, keep the least."""
    keys = []
    for t in (Augmentation(dihedral=d) for d in range(8)):
        tx, ty = t.grid(x), t.grid(y)
        flat = np.concatenate([tx.ravel(), ty.ravel()])
        labels = {0: 0}
        for c in flat.tolist():
            labels.setdefault(c, len(labels))
        keys.append(bytes([*tx.shape, *ty.shape]) + bytes(labels[c] for c in flat.tolist()))
    return min(keys)


HARD_CASES = [
    (np.zeros((1, 1)), np.zeros((1, 1))),  # a single cell, no colour at all
    (np.array([[5]]), np.zeros((2, 3))),  # a colour absent from the output
    (np.arange(10).reshape(2, 5), np.arange(10)[::-1].reshape(5, 2)),  # all ten colours, shapes transposed
    (np.full((3, 3), 7), np.full((3, 3), 7)),  # one colour everywhere: every transform gives the same key
]


@pytest.mark.parametrize("case", range(40 + len(HARD_CASES)))
def test_vectorised_key_equals_the_definition(case):
    """Random non-square grids of independent shapes with one to ten colours, then the hard cases."""
    if case >= 40:
        x, y = (g.astype(np.int8) for g in HARD_CASES[case - 40])
    else:
        rng = np.random.default_rng(case)
        palette = rng.choice(10, size=int(rng.integers(1, 11)), replace=False)
        x = rng.choice(palette, size=tuple(rng.integers(1, 8, size=2))).astype(np.int8)
        y = rng.choice(palette, size=tuple(rng.integers(1, 8, size=2))).astype(np.int8)
    assert canonical_key(x, y) == _reference_key(x, y)

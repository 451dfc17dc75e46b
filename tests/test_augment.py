import numpy as np
import pytest

from arclib.data.augment import Augmentation
from arclib.data.tokens import Episode


def grid(rng, h, w):
    return rng.integers(0, 10, (h, w)).astype(np.int8)


@pytest.mark.parametrize("dihedral", range(8))
def test_augment_then_invert_is_identity(dihedral):
    rng = np.random.default_rng(dihedral)
    aug = Augmentation(dihedral, Augmentation.random(rng).colours)
    for h, w in [(1, 1), (3, 7), (30, 2)]:
        g = grid(rng, h, w)
        assert np.array_equal(aug.invert_grid(aug.grid(g)), g)


def test_eight_distinct_dihedral_transforms_and_background_fixed():
    g = np.arange(6, dtype=np.int8).reshape(2, 3)
    images = {Augmentation(d).grid(g).tobytes() + bytes(Augmentation(d).grid(g).shape) for d in range(8)}
    assert len(images) == 8
    aug = Augmentation.random(np.random.default_rng(1))
    assert aug.colours[0] == 0 and (aug.grid(np.zeros((2, 2), np.int8)) == 0).all()


def test_episode_augmented_consistently():
    rng = np.random.default_rng(0)
    ctx = [(grid(rng, 2, 3), grid(rng, 2, 3)) for _ in range(3)]
    ep = Episode("t", ctx, grid(rng, 2, 3), grid(rng, 2, 3))
    aug = Augmentation(5, Augmentation.random(rng).colours, (2, 0, 1))
    out = aug.episode(ep)
    assert np.array_equal(out.context[0][1], aug.grid(ctx[2][1]))  # reordered and transformed together
    assert np.array_equal(aug.invert_grid(out.query_output), ep.query_output)


def test_invalid_colour_permutation_rejected():
    with pytest.raises(ValueError, match="fixing 0"):
        Augmentation(0, (1, 0, 2, 3, 4, 5, 6, 7, 8, 9))

"""Canonical keys: when are two examples "the same example"?

A colour-equivariant model, or any model trained with colour or dihedral augmentation, cannot tell an example
from a copy of it with colours 1..9 relabelled or with the grids rotated or flipped. Deduplication and the
train / held-out split therefore use a key that is equal exactly for such copies: colours 1..9 relabelled by
first appearance (input then output, row-major; 0 is kept, as the background), serialised with the shapes, then
the minimum over the 8 dihedral transforms applied to both grids.
"""

from __future__ import annotations

import numpy as np

from arclib.data.augment import Augmentation

_DIHEDRAL = tuple(Augmentation(dihedral=d) for d in range(8))


def _relabelled(x: np.ndarray, y: np.ndarray) -> bytes:
    flat = np.concatenate([x.ravel(), y.ravel()])
    colours, first = np.unique(flat[flat != 0], return_index=True)
    mapping = np.zeros(10, dtype=np.int8)
    mapping[colours[np.argsort(first)]] = np.arange(1, len(colours) + 1, dtype=np.int8)
    return bytes([*x.shape, *y.shape]) + mapping[flat].tobytes()


def canonical_key(x: np.ndarray, y: np.ndarray) -> bytes:
    """A key equal for two (input, output) examples iff one is the other up to a colour permutation fixing 0
    and one of the 8 dihedral transforms (the same for both grids)."""
    x, y = np.asarray(x, dtype=np.int8), np.asarray(y, dtype=np.int8)
    return min(_relabelled(t.grid(x), t.grid(y)) for t in _DIHEDRAL)


# Every training run, data check and report computes the keys of the same few thousand examples; the cache
# makes that a one-time cost per process (notebooks and test workers train many runs in one process).
_KEYS: dict[bytes, bytes] = {}


def example_keys(examples) -> list[bytes]:
    out = []
    for x, y in examples:
        x, y = np.asarray(x, dtype=np.int8), np.asarray(y, dtype=np.int8)
        content = bytes([x.ndim, *x.shape, y.ndim, *y.shape]) + x.tobytes() + y.tobytes()
        if content not in _KEYS:
            _KEYS[content] = canonical_key(x, y)
        out.append(_KEYS[content])
    return out

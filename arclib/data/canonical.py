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
_COLOURS = np.arange(1, 10, dtype=np.int8)[None, :, None]  # (1, 9, 1)
_VIEWS: dict[tuple[int, int], tuple[np.ndarray, list[bytes]]] = {}


def _dihedral_views(shape: tuple[int, int]) -> tuple[np.ndarray, list[bytes]]:
    """For an (h, w) grid: (8, h*w) indices into its flattened cells that flatten each dihedral transform, and
    each transform's shape as bytes. Computed once per shape, by transforming a grid of cell indices."""
    if shape not in _VIEWS:
        cells = np.arange(shape[0] * shape[1]).reshape(shape)
        views = [t.move(cells) for t in _DIHEDRAL]
        _VIEWS[shape] = np.stack([v.ravel() for v in views]), [bytes(v.shape) for v in views]
    return _VIEWS[shape]


def canonical_key(x: np.ndarray, y: np.ndarray) -> bytes:
    """A key equal for two (input, output) examples iff one is the other up to a colour permutation fixing 0
    and one of the 8 dihedral transforms (the same for both grids).

    Per transform: its shapes, then its cells (input then output, row-major) with colours 1..9 relabelled
    1, 2, ... by first appearance; the key is the least of the 8. All 8 transforms are relabelled at once.
    """
    x, y = np.asarray(x, dtype=np.int8), np.asarray(y, dtype=np.int8)
    (x_index, x_shapes), (y_index, y_shapes) = _dihedral_views(x.shape), _dihedral_views(y.shape)
    flat = np.concatenate([x.ravel()[x_index], y.ravel()[y_index]], axis=1)  # (8, n)
    hit = flat[:, None, :] == _COLOURS  # (8, 9, n)
    first = np.where(hit.any(2), hit.argmax(2), flat.shape[1])  # (8, 9) first cell of each colour
    order = np.argsort(first, axis=1, kind="stable")  # colours by first appearance (absent: last, unused)
    mapping = np.zeros((8, 10), dtype=np.int8)
    np.put_along_axis(mapping, 1 + order, np.arange(1, 10, dtype=np.int8)[None], axis=1)
    relabelled = np.take_along_axis(mapping, flat.astype(np.intp), axis=1)  # (8, n)
    return min(xs + ys + row.tobytes() for xs, ys, row in zip(x_shapes, y_shapes, relabelled))


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

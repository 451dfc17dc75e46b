"""ARC grids and the ARC task JSON format, with validation that names the file, pair and grid at fault."""

from __future__ import annotations

import itertools
import json
import os
import reprlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from arclib.fileio import atomic_write_text

MAX_SIDE = 30
N_COLOURS = 10
MAX_TASK_FILE_BYTES = 16 * 2**20  # 400 examples of two 30x30 grids take under 2 MB
_repr = reprlib.Repr()  # short and safe for huge or deeply nested values
_repr.maxlevel, _repr.maxlist, _repr.maxstring = 2, 4, 40
_short = _repr.repr

Grid = np.ndarray  # (h, w) int8 with values 0..9
Pair = tuple[Grid, Grid]


class GridError(ValueError):
    """A grid or task file is malformed. The message names where and what."""


def as_grid(value, where: str = "grid") -> Grid:
    """Validate a nested list (or array) as an ARC grid: non-empty, rectangular, 1..30 per side, ints 0..9."""
    fast = _as_grid_fast(value)
    if fast is not None:
        return fast
    if isinstance(value, np.ndarray):
        rows = value.tolist()
    else:
        rows = value
    if not isinstance(rows, list) or len(rows) == 0:
        raise GridError(
            f"{where}: expected a non-empty list of rows, got {type(rows).__name__} {_short(rows)}"
        )
    if not all(isinstance(r, list) for r in rows):
        raise GridError(f"{where}: every row must be a list")
    width = len(rows[0])
    if width == 0:
        raise GridError(f"{where}: row 0 is empty")
    for i, r in enumerate(rows):
        if len(r) != width:
            raise GridError(f"{where}: ragged grid, row 0 has {width} cells but row {i} has {len(r)}")
    if len(rows) > MAX_SIDE or width > MAX_SIDE:
        raise GridError(f"{where}: grid is {len(rows)}x{width}, larger than {MAX_SIDE}x{MAX_SIDE}")
    for i, r in enumerate(rows):
        for j, v in enumerate(r):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise GridError(f"{where}: cell ({i}, {j}) is {_short(v)}, not an integer colour")
            if not 0 <= v < N_COLOURS:
                raise GridError(f"{where}: cell ({i}, {j}) has colour {v}, outside 0..9")
    return np.asarray(rows, dtype=np.int8)


def _as_grid_fast(value) -> Grid | None:
    """The grid if `value` is plainly valid (rows of Python ints, as JSON gives), else None: the slow checks
    then find and name the problem. Loading the data spends most of its time here."""
    if not (isinstance(value, list) and value and all(type(r) is list for r in value)):
        return None
    if set(map(type, itertools.chain.from_iterable(value))) != {int}:  # bools and floats take the slow path
        return None
    width = len(value[0])
    if not (0 < width <= MAX_SIDE and len(value) <= MAX_SIDE and all(len(r) == width for r in value)):
        return None
    grid = np.array(value)
    if grid.min() < 0 or grid.max() >= N_COLOURS:
        return None
    return grid.astype(np.int8)


def grid_to_list(grid: Grid) -> list[list[int]]:
    return [[int(v) for v in row] for row in np.asarray(grid)]


@dataclass
class Task:
    """An ARC task: demonstration pairs ("train") and test pairs ("test")."""

    task_id: str
    train: list[Pair]
    test: list[Pair] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            split: [{"input": grid_to_list(x), "output": grid_to_list(y)} for x, y in pairs]
            for split, pairs in (("train", self.train), ("test", self.test))
        }


def parse_task(obj, task_id: str, source: str = "<memory>") -> Task:
    """Validate an ARC task object; `source` (usually the file path) prefixes every error."""
    if not isinstance(obj, dict):
        raise GridError(
            f"{source}: top level must be an object with 'train' and 'test', got {type(obj).__name__}"
        )
    if "train" not in obj:
        raise GridError(f"{source}: missing key 'train'")
    splits = {}
    for split in ("train", "test"):
        pairs = obj.get(split, [])
        if not isinstance(pairs, list):
            raise GridError(f"{source}: '{split}' must be a list of pairs")
        if split == "train" and not pairs:
            raise GridError(f"{source}: 'train' has no pairs")
        parsed = []
        for k, pair in enumerate(pairs):
            if not isinstance(pair, dict) or "input" not in pair or "output" not in pair:
                raise GridError(f"{source}: {split} pair {k} must be an object with 'input' and 'output'")
            parsed.append(
                tuple(as_grid(pair[g], f"{source}: {split} pair {k} {g}") for g in ("input", "output"))
            )
        splits[split] = parsed
    return Task(task_id, splits["train"], splits["test"])


def load_task(path: str | os.PathLike) -> Task:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: task file not found")
    size = path.stat().st_size
    if size > MAX_TASK_FILE_BYTES:
        raise GridError(
            f"{path}: {size:,} bytes, more than the {MAX_TASK_FILE_BYTES:,} allowed for a task file"
        )
    try:
        obj = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise GridError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except json.JSONDecodeError as e:
        raise GridError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise GridError(f"{path}: JSON nested too deeply to be an ARC task") from None
    return parse_task(obj, path.stem, str(path))


def save_task(task: Task, path: str | os.PathLike) -> None:
    atomic_write_text(path, json.dumps(task.to_json(), separators=(",", ":")) + "\n")

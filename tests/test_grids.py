import json
import os

import numpy as np
import pytest

from arclib.data.grids import GridError, Task, as_grid, load_task, save_task

GOOD = {
    "train": [{"input": [[0, 1], [2, 3]], "output": [[1]]}],
    "test": [{"input": [[5]], "output": [[9, 9]]}],
}


def write(tmp_path, obj, name="t.json"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_round_trip(tmp_path):
    task = load_task(write(tmp_path, GOOD))
    assert task.train[0][0].tolist() == [[0, 1], [2, 3]] and task.test[0][1].shape == (1, 2)
    save_task(task, tmp_path / "copy.json")
    assert json.loads((tmp_path / "copy.json").read_text()) == GOOD


@pytest.mark.parametrize(
    "grid, problem",
    [
        ([], "non-empty"),
        ([[]], "row 0 is empty"),
        ([[1, 2], [3]], "ragged"),
        ([[1, 10]], "outside 0..9"),
        ([[1, -1]], "outside 0..9"),
        ([[1, 1.5]], "not an integer"),
        ([[1, "2"]], "not an integer"),
        ([[True]], "not an integer"),
        ([[1, 2], [True, 3]], "cell (1, 0) is True"),  # a bool beside ints, which numpy would take for 1
        ([[1, 2], [3, 4.0]], "not an integer"),
        ([[0] * 31], "larger than 30x30"),
        ([[0]] * 31, "larger than 30x30"),
        ("abc", "non-empty list"),
    ],
)
def test_bad_grid_names_file_pair_grid_and_problem(tmp_path, grid, problem):
    bad = json.loads(json.dumps(GOOD))
    bad["train"][0]["output"] = grid
    path = write(tmp_path, bad, "broken.json")
    with pytest.raises(GridError) as e:
        load_task(path)
    assert "broken.json" in str(e.value) and "train pair 0 output" in str(e.value) and problem in str(e.value)


@pytest.mark.parametrize(
    "obj, problem",
    [
        ("{not json", "not valid JSON"),
        ([], "top level must be an object"),
        ({"test": []}, "missing key 'train'"),
        ({"train": []}, "'train' has no pairs"),
        ({"train": [{"input": [[1]]}]}, "must be an object with 'input' and 'output'"),
        ({"train": "x"}, "must be a list"),
    ],
)
def test_bad_task_structure(tmp_path, obj, problem):
    with pytest.raises(GridError, match=problem):
        load_task(write(tmp_path, obj))


def test_missing_file_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_task(tmp_path / "nope.json")


def test_as_grid_accepts_full_range():
    g = as_grid(np.arange(900).reshape(30, 30) % 10)
    assert g.shape == (30, 30) and g.dtype == np.int8


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "task.json"
    save_task(load_task(write(tmp_path, GOOD)), path)
    before = path.read_bytes()

    class Boom(Task):
        def to_json(self):
            raise RuntimeError("crash while serialising")

    with pytest.raises(RuntimeError):
        save_task(Boom("x", []), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_loaded_examples_are_read_only_and_a_rewritten_file_is_read_again(tmp_path):
    from arclib.data.generate import load_examples

    path = write(tmp_path, GOOD, "t.json")
    (x, _), *_ = load_examples(tmp_path, ["t"])["t"]
    with pytest.raises(ValueError):
        x[0, 0] = 5  # a caller cannot change what the next one reads from the cache
    changed = json.loads(json.dumps(GOOD))
    changed["train"][0]["input"] = [[7]]
    path.write_text(json.dumps(changed))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert load_examples(tmp_path, ["t"])["t"][0][0].tolist() == [[7]]

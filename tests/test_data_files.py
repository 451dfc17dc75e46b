"""The committed data folder: complete, valid, reproducible, and the held-out set disjoint from training data."""

import json
import shutil

import numpy as np
import pytest

from arclib.data.generate import DATA_DIR, _key, check_data, generate_data, generate_examples
from arclib.data.grids import load_task
from arclib.data.split import task_split, write_split
from arclib.data.tasks import TASK_IDS


def test_generation_is_byte_identical_for_a_seed(tmp_path):
    ids = ("6d0aefbc", "a9f96cdd")
    for run in ("a", "b"):
        generate_data(tmp_path / run, n=6, n_heldout=3, heldout_tasks=ids[:1])
    for rel in ("tasks/6d0aefbc.json", "tasks/a9f96cdd.json", "heldout/6d0aefbc.json", "manifest.json"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert (tmp_path / "a/tasks/6d0aefbc.json").read_bytes() != (
        tmp_path / "a/heldout/6d0aefbc.json"
    ).read_bytes()


def test_heldout_excludes_training_inputs():
    train = generate_examples("8be77c9e", 60, seed=1)
    heldout = generate_examples("8be77c9e", 30, seed=2, exclude={_key(x) for x, _ in train})
    assert not {_key(x) for x, _ in train} & {_key(x) for x, _ in heldout}


def test_committed_data_is_complete_and_valid():
    manifest = json.loads((DATA_DIR / "manifest.json").read_text())
    assert manifest["arc_dataset"].startswith("ARC-AGI-1")
    assert {f"tasks/{t}.json" for t in TASK_IDS} <= set(manifest["files"])
    assert {f"heldout/{t}.json" for t in task_split()["train"]} <= set(manifest["files"])
    assert check_data(DATA_DIR) == []
    for t in task_split()["train"]:
        train = {_key(x) for x, _ in load_task(DATA_DIR / "tasks" / f"{t}.json").train}
        heldout = {_key(x) for x, _ in load_task(DATA_DIR / "heldout" / f"{t}.json").train}
        assert not train & heldout, t


def test_check_data_catches_edits(tmp_path):
    shutil.copytree(DATA_DIR, tmp_path / "data")
    path = tmp_path / "data/tasks/9172f3a0.json"
    obj = json.loads(path.read_text())
    y = np.array(obj["train"][0]["output"])
    obj["train"][0]["output"] = ((y + 1) % 10).tolist()
    path.write_text(json.dumps(obj))
    (tmp_path / "data/tasks/a9f96cdd.json").write_text("{broken")
    problems = check_data(tmp_path / "data")
    assert any("9172f3a0" in p and "rule" in p for p in problems)
    assert any("a9f96cdd" in p and "not valid JSON" in p for p in problems)


def test_default_split_is_the_seeds():
    split = task_split()
    assert split["val"] == ["a9f96cdd", "b27ca6d3", "c1d99e64", "dbc1a6ce"] and len(split["train"]) == 14
    assert not set(split["train"]) & set(split["val"])
    random = task_split("random", seed=1)
    assert len(random["val"]) == 4 and random == task_split("random", seed=1)
    with pytest.raises(ValueError, match="unknown split"):
        task_split("bogus")


def test_committed_split_files_match(tmp_path):
    for strategy in ("seed", "random", "by_example"):
        written = write_split(task_split(strategy), tmp_path)
        assert written.read_text() == (DATA_DIR / "splits" / f"{strategy}.json").read_text()

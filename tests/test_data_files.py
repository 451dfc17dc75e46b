"""The committed data folder: complete, valid, reproducible, and disjoint by canonical key: held-out from
training, the two held-out halves from each other, and every generated example from the task's real pairs."""

import json
import shutil

import numpy as np
import pytest

from arclib.data.arc import load_arc_task
from arclib.data.augment import Augmentation
from arclib.data.canonical import canonical_key, example_keys
from arclib.data.generate import DATA_DIR, check_data, generate_data, generate_task
from arclib.data.grids import load_task
from arclib.data.split import task_split, write_split
from arclib.data.tasks import TASK_IDS


def test_generation_is_byte_identical_for_a_seed(tmp_path):
    ids = ("6d0aefbc", "a9f96cdd")
    for run in ("a", "b"):
        generate_data(tmp_path / run, n=6, n_heldout=4, heldout_tasks=ids[:1], task_ids=ids)
    for rel in ("tasks/6d0aefbc.json", "tasks/a9f96cdd.json", "heldout/6d0aefbc.json", "manifest.json"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert (tmp_path / "a/tasks/6d0aefbc.json").read_bytes() != (
        tmp_path / "a/heldout/6d0aefbc.json"
    ).read_bytes()


def test_small_space_is_split_by_key_and_training_repeats_only_after_every_key():
    # a9f96cdd has about 105 examples up to rotation: far fewer than 120 + 40 asked for
    data = generate_task("a9f96cdd", n=120, n_heldout=40)
    assert data.stats["space_exhausted"] and data.stats["select_keys"] >= 3
    train = example_keys(data.train)
    select, report = (set(example_keys(h)) for h in (data.heldout[:20], data.heldout[20:]))
    assert not set(train) & (select | report) and not select & report
    n_keys = len(set(train))
    assert n_keys == data.stats["train_keys"] and len(set(train[:n_keys])) == n_keys  # each key once, first
    real = load_arc_task("a9f96cdd")
    assert not set(example_keys(real.train + real.test)) & (set(train) | select | report)


def committed(task_id, folder):
    return load_task(DATA_DIR / folder / f"{task_id}.json").train


def test_committed_data_is_complete_and_valid():
    manifest = json.loads((DATA_DIR / "manifest.json").read_text())
    assert manifest["arc_dataset"].startswith("ARC-AGI-1")
    assert {f"tasks/{t}.json" for t in TASK_IDS} <= set(manifest["files"])
    assert {f"heldout/{t}.json" for t in task_split()["train"]} <= set(manifest["files"])
    assert check_data(DATA_DIR).problems == []


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_committed_data_leaks_nothing_by_canonical_key(task_id):
    stats = json.loads((DATA_DIR / "manifest.json").read_text())["tasks"][task_id]
    train = example_keys(committed(task_id, "tasks"))
    if not stats["space_exhausted"]:
        assert len(set(train)) == len(train)
    generated = set(train)
    if task_id in task_split()["train"]:
        heldout = committed(task_id, "heldout")
        select, report = set(example_keys(heldout[:50])), set(example_keys(heldout[50:]))
        assert not (select | report) & set(train) and not select & report
        generated |= select | report
    real = load_arc_task(task_id)
    assert not set(example_keys(real.train + real.test)) & generated


def _edit(path, k, x, y):
    obj = json.loads(path.read_text())
    obj["train"][k] = {"input": x.tolist(), "output": y.tolist()}
    path.write_text(json.dumps(obj))


def _disguised(x, y, dihedral=3):
    aug = Augmentation(dihedral=dihedral, colours=(0, 2, 3, 4, 5, 6, 7, 8, 9, 1))
    out = aug.grid(x), aug.grid(y)
    assert canonical_key(*out) == canonical_key(x, y)
    return out


def test_check_data_catches_every_kind_of_leak(tmp_path):
    shutil.copytree(DATA_DIR, tmp_path / "data")
    d = tmp_path / "data"
    _edit(d / "tasks/1190e5a7.json", 0, *_disguised(*committed("1190e5a7", "tasks")[1]))
    _edit(d / "heldout/6d0aefbc.json", 0, *_disguised(*committed("6d0aefbc", "tasks")[5]))
    _edit(d / "heldout/8be77c9e.json", 60, *_disguised(*committed("8be77c9e", "heldout")[3]))
    _edit(d / "tasks/623ea044.json", 7, *_disguised(*load_arc_task("623ea044").test[0], dihedral=5))
    problems = check_data(d).problems
    assert any("1190e5a7" in p and "duplicates beyond" in p for p in problems)
    assert any("6d0aefbc" in p and "1 held-out examples share a key" in p for p in problems)
    assert any("8be77c9e" in p and "both held-out halves" in p for p in problems)
    assert any("623ea044" in p and "real ARC pairs" in p for p in problems)
    assert check_data(DATA_DIR).problems == []  # the negative control: the committed data has none of these


def test_check_data_catches_edits(tmp_path):
    shutil.copytree(DATA_DIR, tmp_path / "data")
    path = tmp_path / "data/tasks/9172f3a0.json"
    obj = json.loads(path.read_text())
    y = np.array(obj["train"][0]["output"])
    obj["train"][0]["output"] = ((y + 1) % 10).tolist()
    path.write_text(json.dumps(obj))
    (tmp_path / "data/tasks/a9f96cdd.json").write_text("{broken")
    problems = check_data(tmp_path / "data").problems
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

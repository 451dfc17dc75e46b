"""Generate, write and check the study's data folder.

data/tasks/<id>.json     400 generated examples per task under "train" (ARC JSON), byte-identical per seed
data/heldout/<id>.json   fresh examples of the training tasks, disjoint from data/tasks (another seed)
data/manifest.json       seeds, counts, sha256 of every file, and the ARC dataset version
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from arclib.data.arc import ARC_DATASET
from arclib.data.grids import GridError, Task, load_task, save_task
from arclib.data.tasks import TASK_IDS, get_generator
from arclib.fileio import atomic_write_text

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
EXAMPLES_PER_TASK = 400
HELDOUT_PER_TASK = 100
DATA_SEED = 307
HELDOUT_SEED = 308


def _key(x: np.ndarray) -> bytes:
    return bytes(x.shape) + x.tobytes()


def generate_examples(
    task_id: str,
    n: int,
    seed: int,
    widen: float = 0.0,
    exclude: set[bytes] = frozenset(),
    max_tries: int = 50,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """n examples with distinct inputs (none in `exclude`), deterministic for (task_id, seed).

    Tasks with a small input space cannot always supply n distinct inputs; after `max_tries` duplicate draws in
    a row a duplicate is accepted (never one from `exclude`, which guards the held-out set's disjointness).
    """
    gen = get_generator(task_id)
    rng = np.random.default_rng([seed, int(task_id, 16)])
    examples, seen = [], set()
    while len(examples) < n:
        for _ in range(max_tries):
            x, y = gen.generate(rng, widen)
            k = _key(x)
            if k not in seen and k not in exclude:
                break
        else:
            while k in exclude:
                x, y = gen.generate(rng, min(1.0, widen + 0.5))
                k = _key(x)
        seen.add(k)
        examples.append((x, y))
    return examples


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def generate_data(
    data_dir: Path = DATA_DIR,
    n: int = EXAMPLES_PER_TASK,
    n_heldout: int = HELDOUT_PER_TASK,
    seed: int = DATA_SEED,
    heldout_seed: int = HELDOUT_SEED,
    widen: float = 0.0,
    heldout_tasks: tuple[str, ...] | None = None,
) -> dict:
    """Write data/tasks, data/heldout and data/manifest.json. Returns the manifest."""
    from arclib.data.split import task_split

    data_dir = Path(data_dir)
    heldout_tasks = heldout_tasks if heldout_tasks is not None else tuple(task_split()["train"])
    files = {}
    for task_id in tqdm(TASK_IDS, desc="generating tasks"):
        train = generate_examples(task_id, n, seed, widen)
        path = data_dir / "tasks" / f"{task_id}.json"
        save_task(Task(task_id, train), path)
        files[str(path.relative_to(data_dir))] = _sha256(path)
        if task_id in heldout_tasks:
            exclude = {_key(x) for x, _ in train}
            heldout = generate_examples(task_id, n_heldout, heldout_seed, widen, exclude=exclude)
            path = data_dir / "heldout" / f"{task_id}.json"
            save_task(Task(task_id, heldout), path)
            files[str(path.relative_to(data_dir))] = _sha256(path)
    manifest = {
        "arc_dataset": ARC_DATASET,
        "seed": seed,
        "heldout_seed": heldout_seed,
        "examples_per_task": n,
        "heldout_per_task": n_heldout,
        "widen": widen,
        "files": files,
    }
    atomic_write_text(data_dir / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def check_data(data_dir: Path = DATA_DIR) -> list[str]:
    """Validate every data file against the manifest and the task rules. Returns a list of problems."""
    data_dir = Path(data_dir)
    manifest_path = data_dir / "manifest.json"
    if not manifest_path.exists():
        return [f"{manifest_path}: missing; run `python -m arclib data generate`"]
    manifest = json.loads(manifest_path.read_text())
    problems = []
    for rel, digest in tqdm(sorted(manifest["files"].items()), desc="checking data"):
        path = data_dir / rel
        try:
            task = load_task(path)
        except (GridError, FileNotFoundError) as e:
            problems.append(str(e))
            continue
        if _sha256(path) != digest:
            problems.append(
                f"{path}: sha256 differs from the manifest (edited or regenerated with other settings)"
            )
        expected = manifest["examples_per_task"] if rel.startswith("tasks/") else manifest["heldout_per_task"]
        if len(task.train) != expected:
            problems.append(f"{path}: {len(task.train)} examples, expected {expected}")
        solve = get_generator(task.task_id).solve
        for k, (x, y) in enumerate(task.train):
            if not np.array_equal(solve(x.copy()), y):
                problems.append(f"{path}: train pair {k} output does not follow the task's rule")
                break
    return problems


def load_examples(folder: str | Path, task_ids) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Examples of each task from data/<folder>/<id>.json, with a clear error for missing data."""
    folder = Path(folder)
    out = {}
    for task_id in task_ids:
        path = folder / f"{task_id}.json"
        if not path.exists():
            raise FileNotFoundError(f"{path}: missing; run `python -m arclib data generate` (or `make data`)")
        out[task_id] = load_task(path).train
    return out

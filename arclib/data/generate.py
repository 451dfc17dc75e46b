"""Generate, write and check the study's data folder.

data/tasks/<id>.json     400 generated examples per task under "train" (ARC JSON), byte-identical per seed
data/heldout/<id>.json   100 examples of each training task whose canonical keys are never in data/tasks: the
                         first 50 ("select") choose checkpoints, the last 50 ("report") are reported
data/manifest.json       seeds, counts, per-task key counts, sha256 of every file, and the ARC dataset version

Examples count as the same when their canonical keys are equal (arclib.data.canonical: up to colour
relabelling and the 8 dihedral transforms). Per task, one pool of examples is drawn from the task's sampler;
the pool's distinct keys, less those of the real ARC pairs of the task, are shuffled and split between
"select", "report" and training, so the held-out sets come from the same sampler as training, conditioned on
keys that training never sees. Where a task's space is small ("exhausted": fewer distinct keys than the files
need), a tenth of its keys go to each held-out half, and training examples repeat keys (in other colours or
orientations) only after every training key has been used once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from arclib.data.arc import ARC_DATASET, load_arc_task
from arclib.data.canonical import canonical_key, example_keys
from arclib.data.grids import GridError, Task, load_task, save_task
from arclib.data.split import heldout_slice
from arclib.data.tasks import TASK_IDS, get_generator
from arclib.fileio import atomic_write_text

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
EXAMPLES_PER_TASK = 400
HELDOUT_PER_TASK = 100
DATA_SEED = 307
MAX_DRAWS = 30_000  # pool size cap per task
PATIENCE = 3_000  # draws without a new key after which a task's space counts as used up
SMALL_SPACE_HELDOUT_FRACTION = 0.1  # of the keys, for each held-out half, where keys run short
# Fewer keys than this cannot give training and both held-out halves 3 keys each (an episode's worth).
MIN_KEYS = 9

Example = tuple[np.ndarray, np.ndarray]


@dataclass
class TaskExamples:
    train: list[Example]
    heldout: list[Example]  # the "select" half, then the "report" half
    stats: dict


def real_keys(task_id: str) -> set[bytes]:
    """Canonical keys of every real demonstration and test pair of the task."""
    task = load_arc_task(task_id)
    return set(example_keys(task.train + task.test))


def _draw_pool(task_id: str, rng: np.random.Generator, wanted: int, excluded: set[bytes], widen: float):
    """Draws until `wanted` distinct keys not in `excluded`, or the space seems used up.
    Returns the examples not excluded (with their keys), the distinct keys in order of appearance, the draws."""
    gen = get_generator(task_id)
    pool, keys, draws, since_new = [], {}, 0, 0
    while len(keys) < wanted and draws < MAX_DRAWS and since_new < PATIENCE:
        x, y = gen.generate(rng, widen)
        k = canonical_key(x, y)
        draws += 1
        since_new += 1
        if k in excluded:
            continue
        if k not in keys:
            keys[k] = None
            since_new = 0
        pool.append((x, y, k))
    return pool, list(keys), draws


def _take(pool: list, part: set[bytes], n: int, task_id: str, part_name: str) -> list[Example]:
    """n examples with keys in `part`: one per key first (in draw order), then repeats in draw order."""
    firsts, repeats, used = [], [], set()
    for x, y, k in pool:
        if k in part:
            (repeats if k in used else firsts).append((x, y))
            used.add(k)
    out = (firsts + repeats)[:n]
    if len(out) < n:
        raise RuntimeError(
            f"task {task_id}: only {len(out)} {part_name} examples in {len(pool)} draws, {n} needed"
        )
    return out


def generate_task(
    task_id: str, n: int, n_heldout: int, seed: int = DATA_SEED, widen: float = 0.0
) -> TaskExamples:
    """Training and (if n_heldout) held-out examples of one task, disjoint by key from each other and from the
    task's real pairs; deterministic for (task_id, seed)."""
    excluded = real_keys(task_id)
    half = n_heldout // 2
    wanted = n + 2 * half
    rng = np.random.default_rng([seed, int(task_id, 16)])
    pool, keys, draws = _draw_pool(task_id, rng, wanted, excluded, widen)
    exhausted = len(keys) < wanted
    if n_heldout and len(keys) < MIN_KEYS:
        raise RuntimeError(
            f"task {task_id}: only {len(keys)} distinct examples (up to colours and rotations) outside the "
            f"real pairs; at least {MIN_KEYS} are needed to split training from held-out data"
        )
    order = [keys[i] for i in np.random.default_rng([seed, int(task_id, 16), 1]).permutation(len(keys))]
    n_part = half if not exhausted else max(3, round(SMALL_SPACE_HELDOUT_FRACTION * len(keys)))
    n_part = n_part if n_heldout else 0
    select, report = set(order[:n_part]), set(order[n_part : 2 * n_part])
    train_keys = set(order[2 * n_part :])
    train = _take(pool, train_keys, n, task_id, "training")
    heldout = []
    if n_heldout:
        heldout = _take(pool, select, half, task_id, "select") + _take(pool, report, half, task_id, "report")
    stats = {
        "draws": draws,
        "distinct_keys_drawn": len(keys),
        "space_exhausted": exhausted,
        "real_keys_excluded": len(excluded),
        "train_keys": len(set(example_keys(train))),
        "select_keys": len(select),
        "report_keys": len(report),
    }
    return TaskExamples(train, heldout, stats)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def generate_data(
    data_dir: Path = DATA_DIR,
    n: int = EXAMPLES_PER_TASK,
    n_heldout: int = HELDOUT_PER_TASK,
    seed: int = DATA_SEED,
    widen: float = 0.0,
    heldout_tasks: tuple[str, ...] | None = None,
    task_ids: tuple[str, ...] = TASK_IDS,
) -> dict:
    """Write data/tasks, data/heldout and data/manifest.json. Returns the manifest."""
    from arclib.data.split import task_split

    data_dir = Path(data_dir)
    heldout_tasks = heldout_tasks if heldout_tasks is not None else tuple(task_split()["train"])
    generated = {
        t: generate_task(t, n, n_heldout if t in heldout_tasks else 0, seed, widen)
        for t in tqdm(task_ids, desc="generating tasks")
    }
    files = {}
    for task_id, data in generated.items():
        for folder, examples in (("tasks", data.train), ("heldout", data.heldout)):
            if examples:
                path = data_dir / folder / f"{task_id}.json"
                save_task(Task(task_id, examples), path)
                files[f"{folder}/{task_id}.json"] = _sha256(path)
    manifest = {
        "arc_dataset": ARC_DATASET,
        "seed": seed,
        "examples_per_task": n,
        "heldout_per_task": n_heldout,
        "heldout_halves": "first half 'select' (checkpoint choice), second half 'report' (results)",
        "widen": widen,
        "keys": "canonical: colours 1..9 relabelled by first appearance, 0 kept, min over the 8 dihedral transforms",
        "tasks": {t: d.stats for t, d in generated.items()},
        "files": files,
    }
    atomic_write_text(data_dir / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def key_figures(task_id: str, train: list[Example], heldout: list[Example]) -> dict:
    """Distinct keys per set and every overlap that would leak (all overlaps must be 0)."""
    train_keys = set(example_keys(train))
    select_keys = set(example_keys(heldout_slice(heldout, "select")))
    report_keys = set(example_keys(heldout_slice(heldout, "report")))
    generated = train_keys | select_keys | report_keys
    task = load_arc_task(task_id)
    return {
        "train_examples": len(train),
        "train_keys": len(train_keys),
        "select_keys": len(select_keys),
        "report_keys": len(report_keys),
        "heldout_in_train": sum(k in train_keys for k in example_keys(heldout)),
        "select_in_report": len(select_keys & report_keys),
        "real_in_generated": sum(k in generated for k in example_keys(task.train + task.test)),
    }


LEAKS = {
    "heldout_in_train": "held-out examples share a key with a training example",
    "select_in_report": "keys are in both held-out halves (select and report)",
    "real_in_generated": "real ARC pairs of the task share a key with a generated example",
}


@dataclass
class DataCheck:
    problems: list[str]
    figures: dict[str, dict]  # task id -> key_figures

    def table(self) -> str:
        lines = [
            "distinct canonical keys per task (up to colour relabelling and rotations/flips); overlaps must be 0",
            f"{'task':10} {'train':>6} {'select':>7} {'report':>7} {'held-out in train':>18} "
            f"{'select in report':>17} {'real in generated':>18}",
        ]
        for t, f in sorted(self.figures.items()):
            held = ("select_keys", "report_keys", "heldout_in_train", "select_in_report")
            s, r, h, b = (f[c] if f["select_keys"] else "-" for c in held)
            lines.append(
                f"{t:10} {f['train_keys']:>6} {s:>7} {r:>7} {h:>18} {b:>17} {f['real_in_generated']:>18}"
            )
        return "\n".join(lines)


def check_data(data_dir: Path = DATA_DIR) -> DataCheck:
    """Validate every data file against the manifest, the task rules and the key disjointness; lists every
    problem found (never stops at the first)."""
    data_dir = Path(data_dir)
    manifest_path = data_dir / "manifest.json"
    if not manifest_path.exists():
        return DataCheck([f"{manifest_path}: missing; run `python -m arclib data generate`"], {})
    try:
        manifest = json.loads(manifest_path.read_text())
        files, recorded = manifest["files"], manifest["tasks"]
    except (ValueError, KeyError) as e:
        return DataCheck(
            [f"{manifest_path}: unreadable or from an older layout ({e!r}); regenerate the data"], {}
        )
    problems, loaded = [], {}
    for rel, digest in tqdm(sorted(files.items()), desc="checking data"):
        path = data_dir / rel
        try:
            task = load_task(path)
        except (GridError, OSError, ValueError) as e:
            problems.append(str(e) if str(path) in str(e) else f"{path}: {e}")
            continue
        loaded[rel] = task.train
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
    figures = {}
    for task_id in sorted(recorded):
        train = loaded.get(f"tasks/{task_id}.json")
        if train is None:
            continue
        f = figures[task_id] = key_figures(task_id, train, loaded.get(f"heldout/{task_id}.json", []))
        problems += [f"task {task_id}: {f[name]} {what}" for name, what in LEAKS.items() if f[name]]
        rec = recorded[task_id]
        if f["train_keys"] < min(len(train), rec["train_keys"]):
            problems.append(
                f"task {task_id}: training examples hold {f['train_keys']} distinct keys, the manifest "
                f"{rec['train_keys']}: duplicates beyond what the task's space forces"
            )
    return DataCheck(problems, figures)


# Parsed files by (path, inode, modification and change times, size): a notebook or a test worker trains many runs in one process,
# and parsing the same files again for each was most of a small run's start-up. The arrays are read-only, so a
# caller cannot change what the next one reads.
_LOADED: dict[tuple, list[tuple[np.ndarray, np.ndarray]]] = {}


def load_examples(folder: str | Path, task_ids) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Examples of each task from data/<folder>/<id>.json, with a clear error for missing data."""
    folder = Path(folder)
    out = {}
    for task_id in task_ids:
        path = folder / f"{task_id}.json"
        if not path.exists():
            raise FileNotFoundError(f"{path}: missing; run `python -m arclib data generate` (or `make data`)")
        stat = path.stat()
        key = (str(path.resolve()), stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)
        if key not in _LOADED:
            pairs = load_task(path).train
            for grid in (g for pair in pairs for g in pair):
                grid.flags.writeable = False
            _LOADED[key] = pairs
        out[task_id] = list(_LOADED[key])
    return out

"""Check every task's `solve` against every real ARC-AGI-1 demo and test pair of its task."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from arclib.data.arc import ARC_DATASET, load_arc_task
from arclib.data.tasks import TASK_IDS, get_generator


@dataclass
class TaskVerification:
    task_id: str
    n_pairs: int = 0
    n_ok: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.n_ok == self.n_pairs and not self.failures


def describe_mismatch(expected: np.ndarray, got: np.ndarray) -> str:
    if expected.shape != got.shape:
        return f"shape {got.shape} instead of {expected.shape}"
    cells = np.argwhere(expected != got)
    shown = ", ".join(f"({r},{c}) {got[r, c]} != {expected[r, c]}" for r, c in cells[:8])
    more = f" and {len(cells) - 8} more" if len(cells) > 8 else ""
    return f"{len(cells)} cells differ: {shown}{more}"


def verify_task(task_id: str) -> TaskVerification:
    task = load_arc_task(task_id)
    result = TaskVerification(task_id)
    try:
        solve = get_generator(task_id).solve
    except (KeyError, ModuleNotFoundError) as e:
        result.failures.append(f"no solver: {e}")
        result.n_pairs = len(task.train) + len(task.test)
        return result
    for split, pairs in (("train", task.train), ("test", task.test)):
        for k, (x, y) in enumerate(pairs):
            result.n_pairs += 1
            try:
                got = np.asarray(solve(x.copy()))
            except Exception as e:  # a crashing solver is a failed verification, reported like a mismatch
                result.failures.append(f"{split} pair {k}: solve raised {type(e).__name__}: {e}")
                continue
            if got.shape == y.shape and np.array_equal(got, y):
                result.n_ok += 1
            else:
                result.failures.append(f"{split} pair {k}: {describe_mismatch(y, got)}")
    return result


def verify_all(task_ids=TASK_IDS) -> list[TaskVerification]:
    return [verify_task(t) for t in task_ids]


def verification_report(results: list[TaskVerification]) -> str:
    lines = [f"Verifying solvers on {ARC_DATASET}", f"{'task':10} {'pairs':>7}  status"]
    for r in results:
        lines.append(f"{r.task_id:10} {r.n_ok:>3}/{r.n_pairs:<3}  {'ok' if r.ok else 'MISMATCH'}")
        lines += [f"    {f}" for f in r.failures]
    n_ok = sum(r.ok for r in results)
    pairs_ok, pairs = sum(r.n_ok for r in results), sum(r.n_pairs for r in results)
    lines.append(f"verified {n_ok}/{len(results)} tasks, {pairs_ok}/{pairs} real pairs")
    return "\n".join(lines)

"""The 18 generators: solvers reproduce the real ARC-AGI-1 pairs; generation is deterministic and non-degenerate."""

import subprocess
import sys

import numpy as np
import pytest

from arclib.data import verify
from arclib.data.arc import load_arc_task
from arclib.data.grids import as_grid
from arclib.data.tasks import TASK_IDS, get_generator
from arclib.data.tasks.base import check_example


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_solver_reproduces_every_real_pair(task_id):
    result = verify.verify_task(task_id)
    assert result.ok, "\n".join(result.failures)
    assert result.n_pairs >= 3


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_generation_is_deterministic_for_a_seed(task_id):
    gen = get_generator(task_id)
    a = [gen.generate(np.random.default_rng(11)) for _ in range(5)]
    b = [gen.generate(np.random.default_rng(11)) for _ in range(5)]
    assert all(np.array_equal(x1, x2) and np.array_equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))


@pytest.mark.parametrize("task_id", TASK_IDS)
@pytest.mark.parametrize("widen", [0.0, 1.0])
def test_samples_are_valid_non_degenerate_and_follow_the_rule(task_id, widen):
    gen = get_generator(task_id)
    rng = np.random.default_rng(5)
    rejected = 0
    for k in range(150):
        x = np.asarray(gen.sample_input(rng, widen), dtype=np.int8)
        y = np.asarray(gen.solve(x.copy()))
        as_grid(x, f"{task_id} sample {k} input")
        as_grid(y, f"{task_id} sample {k} output")
        try:
            check_example(x, y)
        except ValueError:
            rejected += 1
    assert rejected <= 30, f"{task_id}: {rejected}/150 sampled inputs are degenerate"


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_sizes_cover_the_real_examples(task_id):
    gen = get_generator(task_id)
    rng = np.random.default_rng(3)
    shapes = np.array([gen.sample_input(rng, 0.0).shape for _ in range(300)])
    task = load_arc_task(task_id)
    for x, _ in task.train + task.test:
        h, w = x.shape
        assert shapes[:, 0].min() <= h <= shapes[:, 0].max(), f"real height {h} outside sampled range"
        assert shapes[:, 1].min() <= w <= shapes[:, 1].max(), f"real width {w} outside sampled range"


def test_shape_flags_match_the_real_tasks():
    for task_id in TASK_IDS:
        task = load_arc_task(task_id)
        changes = any(x.shape != y.shape for x, y in task.train + task.test)
        assert get_generator(task_id).changes_shape == changes, task_id


def test_verify_reports_a_wrong_solver_with_the_differing_cells(monkeypatch):
    real = get_generator("6d0aefbc")

    def wrong(grid):
        out = real.solve(grid)
        out[0, 0] = (out[0, 0] + 1) % 10
        return out

    monkeypatch.setattr(verify, "get_generator", lambda t: type(real)(t, wrong, real.sample_input))
    result = verify.verify_task("6d0aefbc")
    assert not result.ok and "(0,0)" in result.failures[0]
    assert "MISMATCH" in verify.verification_report([result])


def test_verify_command_prints_the_summary_line():
    out = subprocess.run([sys.executable, "-m", "arclib", "tasks", "verify"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    n_pairs = sum(len(load_arc_task(t).train) + len(load_arc_task(t).test) for t in TASK_IDS)
    assert out.stdout.strip().splitlines()[-1] == f"verified 18/18 tasks, {n_pairs}/{n_pairs} real pairs"

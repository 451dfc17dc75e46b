"""A study's best trial against the recipe (Trial 69), retrained over several seeds and read on the report half.

    python -m arclib tune --experiment exp_3_champion --trials 16 --profile cpu --compare 3

The study chose its best trial on one seed and on the held-out *select* half, so its objective flatters it. Here
both configurations train again with seeds 307, 308, ... (a seed draws the same episodes for both; a tuned batch
size groups them differently), and each run's best checkpoint (selected on the select half, as in the study) is
scored on the *report* half by free generation. The difference best - recipe gets the paired interval over seeds
and tasks of the ablation report (`arclib.evaluation.statistics`). Runs go under
runs/hpo/<study>_compare/{recipe,best_trial_<n>}/ (retrained from scratch when the comparison runs again); the
table is written beside them as comparison.{json,md}.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from arclib import ablation
from arclib.evaluation import report as rp
from arclib.evaluation.statistics import arm_interval, paired_difference
from arclib.fileio import atomic_write_text

METRICS = ("loss", "exact")


def _heldout_scores(
    checkpoints: Path, experiment: str, seeds: list[int], problems: list, per_task: int
) -> dict[int, dict]:
    """{seed: {task: metrics}} of each run's best checkpoint (by heldout_loss) on the report half."""
    runs, _, missing = rp.find_runs(checkpoints, "heldout_loss", experiments=(experiment,))
    found = runs.get(experiment, {})
    if any(seed not in found for seed in seeds):
        raise rp.ReportError(f"{checkpoints}: runs without a heldout_loss checkpoint: {missing}")
    key = rp.evaluation_key({"heldout": problems}, per_task, views=1)
    return {seed: rp.evaluate_run(found[seed], {"heldout": problems}, key)["heldout"] for seed in seeds}


def compare_with_recipe(
    experiment: str,
    profile: str,
    best_trial: int,
    best_config: Path,
    root: Path,
    seeds: int,
    overrides: tuple[str, ...] = (),
    per_task: int | None = None,
    jobs: int | None = None,
) -> dict:
    """Train the recipe and the best config for `seeds` seeds, score both on the report half, write and return
    the comparison."""
    seed_list = ablation.seeds(seeds)
    per_task = per_task or ablation.EVAL_PER_TASK[profile]
    jobs = jobs or ablation.default_jobs()
    folders = {"recipe": root / "recipe", "best": root / f"best_trial_{best_trial}"}
    extras = {"recipe": [], "best": ["--config", str(best_config)]}
    fixed = ["--monitor=heldout_loss"]  # checkpoints selected on the study's objective
    for name, folder in folders.items():
        print(f"[compare] training {name} ({experiment}, {profile} profile), seeds {seed_list}", flush=True)
        shutil.rmtree(folder, ignore_errors=True)  # no checkpoint of an earlier comparison may be picked
        ablation.train_experiments(
            [experiment], profile, folder, [*overrides, *fixed, *extras[name]], jobs, seed_list=seed_list
        )
    problems = rp.evaluation_problems(per_task)["heldout"]
    scores = {
        name: _heldout_scores(folder / "checkpoints", experiment, seed_list, problems, per_task)
        for name, folder in folders.items()
    }
    tasks = sorted(scores["recipe"][seed_list[0]])
    result = {
        "experiment": experiment,
        "profile": profile,
        "best_trial": best_trial,
        "best_config": str(best_config),
        "overrides": list(overrides),
        "seeds": seed_list,
        "per_task": per_task,
        "queries": len(problems),
        "arms": {},
        "difference": {},
        "exact_grids": {},
    }
    for metric in METRICS:
        grids = {n: np.array([[scores[n][s][t][metric] for t in tasks] for s in seed_list]) for n in scores}
        result["arms"][metric] = {n: arm_interval(g).as_dict() for n, g in grids.items()}
        result["difference"][metric] = paired_difference(grids["recipe"], grids["best"]).as_dict()
    for name in scores:
        result["exact_grids"][name] = rp.exact_grids([scores[name][s][t] for s in seed_list for t in tasks])
    atomic_write_text(root / "comparison.json", json.dumps(result, indent=1) + "\n")
    markdown = format_comparison(result)
    atomic_write_text(root / "comparison.md", markdown + "\n")
    print(markdown)
    return result


def _interval(d: dict) -> str:
    return f"{d['estimate']:.3f} [{d['low']:.3f}, {d['high']:.3f}]"


def format_comparison(result: dict) -> str:
    lines = [
        f"Best trial (trial {result['best_trial']}) against the recipe: {result['experiment']}, "
        f"{result['profile']} profile, seeds "
        f"{result['seeds']}, held-out report half ({result['queries']} queries, per-task means; 95% intervals "
        "over seeds and tasks)",
        "",
        "| metric | recipe (Trial 69) | best trial | best - recipe | p |",
        "|---|---|---|---|---|",
    ]
    for metric in METRICS:
        arms, diff = result["arms"][metric], result["difference"][metric]
        lines.append(
            f"| {metric} | {_interval(arms['recipe'])} | {_interval(arms['best'])} | {_interval(diff)} "
            f"| {diff['p_value']:.3g} |"
        )
    grids = result["exact_grids"]
    lines += ["", "Exact grids: " + ", ".join(f"{n} {g['k']}/{g['n']}" for n, g in grids.items()) + "."]
    return "\n".join(lines + [f"On loss: {verdict(result['difference']['loss'])}"])


def verdict(loss_difference: dict) -> str:
    """In words, for best - recipe of a loss (lower is better)."""
    if loss_difference["low"] <= 0 <= loss_difference["high"]:
        return "no detectable difference (the interval covers 0)."
    return "the best trial is better." if loss_difference["estimate"] < 0 else "the recipe is better."

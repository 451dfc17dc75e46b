"""The ablation report: every trained run (experiment x seed) evaluated on the same episodes, then statistics.

    python -m arclib report [--output-root DIR] [--per-task 5] [--monitor heldout_loss] [--fresh]
    python -m arclib report --evaluate-run EXPERIMENT/SEED [--per-task 5]   (one run's scores, no report)

Runs are read from checkpoints/<experiment>/seed_<seed>/ (the best checkpoint by the monitor it was selected on;
files named after another monitor are never mixed in) and runs/<experiment>/seed_<seed>/version_N/metrics.csv.
Each run's per-task metrics are cached beside its checkpoint (evaluation.json, keyed by the checkpoint file and
the evaluation episodes), so a rebuild after adding a seed or an arm evaluates only the new runs.

Evaluation sets (shared by all runs, so cells pair):
  val      generated examples of the 4 validation tasks (2 other examples as context, fixed seed)
  heldout  the "report" half of the held-out examples of the 14 training tasks (checkpoints were selected on
           the "select" half)
  real18   the real ARC-AGI-1 pairs of all 18 tasks: real demos as context, each real test input as query
Per (run, task): teacher-forced loss per target token of that task, and by greedy free generation exact, shape and
cell accuracy. Every mean over tasks weighs each task the same.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from arclib.data.arc import ARC_DATASET
from arclib.data.generate import DATA_DIR
from arclib.data.tokens import PAD, Episode, collate
from arclib.evaluation.arc_score import score_output, task_scores
from arclib.evaluation.cli import EvaluationError, Problem, generated_problems, real_problems
from arclib.evaluation.metrics import aggregate, grid_metrics
from arclib.evaluation.statistics import (
    ALPHA,
    CONFIDENCE,
    arm_interval,
    holm,
    paired_difference,
    wilson_interval,
)
from arclib.evaluation.voting import model_predictor, predict_with_voting
from arclib.fileio import atomic_write_text
from arclib.models import ABLATION_ARMS, MODEL_NAMES, count_parameters
from arclib.models.base import token_nll
from arclib.training.checkpoints import CheckpointError, load_model

EVAL_SETS = ("val", "heldout", "real18")
STAT_METRICS = ("loss", "exact", "shape", "cell")
CONCLUSION_METRICS = ("loss", "exact")
REPORT_SLICE = "report"
KEY_COLUMNS = ("train_keys", "select_keys", "report_keys", "space_exhausted")  # from data/manifest.json
BASELINE = "exp_0_encoder_decoder"
EVALUATION_FILE = "evaluation.json"
EVALUATION_VERSION = 1  # bump when the metrics change, so cached evaluations are redone
SET_NAMES = {"val": "validation-task", "heldout": "held-out (report slice)", "real18": "real-pair"}
METRIC_NAMES = {"loss": "loss", "exact": "exact accuracy", "shape": "shape accuracy", "cell": "cell accuracy"}
# The named change between two arms; each pair whose arms both ran is compared.
CHANGES = {
    ("exp_-1_decoder_only", "exp_0_encoder_decoder"): "The encoder-decoder",
    ("exp_0_encoder_decoder", "exp_1_grid2d"): "Grid2D positions",
    ("exp_1_grid2d", "exp_2_perminv"): "Colour-permutation equivariance",
    ("exp_2_perminv", "exp_2_perminv_dff640"): "d_ff 640 alone (the champion's parameter matching)",
    ("exp_2_perminv_dff640", "exp_3_champion"): "The context-pair encoder and bridge alone",
    ("exp_2_perminv", "exp_3_champion"): "The context-pair encoder and bridge, with d_ff 640",
}
# <experiment>-epoch=NN-<monitor>=<value>.ckpt; a nan or inf value never matches
_SCORE = re.compile(r"-epoch=([0-9]+)-(val_loss|heldout_loss)=([0-9]+\.[0-9]+)\.ckpt$")
_SEED_DIR = re.compile(r"^seed_(-?[0-9]+)$")


class ReportError(RuntimeError):
    """A user-facing problem with the runs or the data (printed, exit code 2)."""


@dataclass
class Run:
    experiment: str
    seed: int
    checkpoint: Path
    monitor: str
    monitor_value: float
    best_epoch: int


def _scored(ckpt_dir: Path) -> list[tuple[float, str, int, Path]]:
    """(monitored value, monitor, epoch, path) of every checkpoint named after a finite monitored loss."""
    return [
        (float(m.group(3)), m.group(2), int(m.group(1)), p)
        for p in ckpt_dir.glob("*.ckpt")
        if (m := _SCORE.search(p.name))
    ]


def best_checkpoint(ckpt_dir: Path, monitor: str, experiment: str = "", seed: int = 0) -> Run | None:
    """The checkpoint with the lowest `monitor` value in its name; files named after other monitors are ignored."""
    scored = [(value, epoch, path) for value, name, epoch, path in _scored(ckpt_dir) if name == monitor]
    if not scored:
        return None
    value, epoch, path = min(scored)
    return Run(experiment, seed, path, monitor, value, epoch)


def seed_dirs(checkpoints_dir: Path, experiment: str) -> dict[int, Path]:
    folder = checkpoints_dir / experiment
    found = {}
    for path in sorted(folder.glob("seed_*")) if folder.is_dir() else []:
        if path.is_dir() and (m := _SEED_DIR.match(path.name)):
            found[int(m.group(1))] = path
    return dict(sorted(found.items()))


def find_runs(
    checkpoints_dir: Path, monitor: str | None = None, experiments=ABLATION_ARMS
) -> tuple[dict[str, dict[int, Run]], str, dict[str, str]]:
    """({experiment: {seed: best Run}}, the monitor, {experiment or experiment/seed: why it is missing}).

    Without `monitor`, the one monitor that checkpoint names use; checkpoints named after several are an error
    (a report must not compare runs selected on different losses).
    """
    dirs = {e: seed_dirs(checkpoints_dir, e) for e in experiments}
    if monitor is None:
        named = defaultdict(list)
        for e, by_seed in dirs.items():
            for seed, d in by_seed.items():
                for _, name, _, _ in _scored(d):
                    named[name].append(f"{e}/seed_{seed}")
        if len(named) > 1:
            where = "; ".join(f"{m}: {', '.join(sorted(set(v)))}" for m, v in sorted(named.items()))
            raise ReportError(
                f"{checkpoints_dir}: checkpoints are named after several monitors ({where}); "
                "pass --monitor to choose the one the runs were selected on"
            )
        monitor = next(iter(named), "heldout_loss")
    runs, missing = {}, {}
    for e, by_seed in dirs.items():
        if not by_seed:
            missing[e] = f"no {checkpoints_dir / e}/seed_<seed>/ folder"
            continue
        for seed, d in by_seed.items():
            run = best_checkpoint(d, monitor, e, seed)
            if run is None:
                missing[f"{e}/seed_{seed}"] = f"no checkpoint named after {monitor} in {d}"
            else:
                runs.setdefault(e, {})[seed] = run
    return runs, monitor, missing


def evaluation_problems(per_task: int | None, data_dir: Path = DATA_DIR) -> dict[str, list[Problem]]:
    """The validation tasks' examples, the held-out report half and the 18 real test pairs, as problems."""
    from arclib.data.tasks import TASK_IDS

    try:
        return {
            "val": generated_problems("val", data_dir, 2, per_task),
            "heldout": generated_problems("heldout", data_dir, 2, per_task),
            "real18": real_problems(sorted(TASK_IDS), per_task),
        }
    except EvaluationError as e:
        raise ReportError(str(e)) from None
    except ValueError as e:  # too few (distinct) examples for an episode
        raise ReportError(f"{data_dir}: cannot build the evaluation episodes ({e})") from None


def problems_digest(problems: dict[str, list[Problem]]) -> str:
    """A hash of every grid of the evaluation episodes: a cached evaluation is reused only on the same ones."""
    h = hashlib.sha256()
    for name in sorted(problems):
        for p in problems[name]:
            h.update(f"{name}|{p.task_id}|".encode())
            for grid in [g for pair in p.demos for g in pair] + p.test_inputs + p.test_outputs:
                h.update(f"{grid.shape}".encode() + np.ascontiguousarray(grid).tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def task_losses(model, episodes: list[Episode], batch_size: int = 32) -> dict[str, float]:
    """Teacher-forced loss per target token within each task."""
    model.eval()
    device = next(model.parameters()).device
    total, count = defaultdict(float), defaultdict(int)
    for s in range(0, len(episodes), batch_size):
        chunk = episodes[s : s + batch_size]
        batch = collate(chunk).to(device)
        nll = token_nll(model(batch), batch.tgt_out).sum(dim=1)
        tokens = (batch.tgt_out != PAD).sum(dim=1)
        for e, loss, n in zip(chunk, nll.tolist(), tokens.tolist()):
            total[e.task_id] += loss
            count[e.task_id] += n
    return {t: total[t] / max(count[t], 1) for t in total}


def evaluate_model(model, problems: list[Problem], views: int = 1, seed: int = 0) -> dict:
    """Per-task metrics of one model on one evaluation set ({task: {metric: value, "n": queries}}) and
    every (episode, prediction)."""
    episodes = [
        Episode(p.task_id, p.demos, x, y) for p in problems for x, y in zip(p.test_inputs, p.test_outputs)
    ]
    queries = [Episode(e.task_id, e.context, e.query_input) for e in episodes]  # the target is never shown
    results = predict_with_voting(model_predictor(model), queries, views, seed)
    rows = [
        (e.task_id, grid_metrics(r.identity[0], e.query_output, e.query_input))
        for e, r in zip(episodes, results)
    ]
    metrics = {t: m for t, m in aggregate(rows).items() if t != "all"}
    scores = task_scores(
        [
            score_output(e.task_id, r.voted_attempts, e.query_output, e.query_input)
            for e, r in zip(episodes, results)
        ]
    )
    for task_id, loss in task_losses(model, episodes).items():
        metrics[task_id] |= {"loss": loss, "pass2": scores[task_id]["pass2"], "n": scores[task_id]["n"]}
    predictions = [(e, r.identity[0]) for e, r in zip(episodes, results)]
    return {"metrics": metrics, "predictions": predictions}


def latest_csv(runs_dir: Path, experiment: str, seed: int) -> Path | None:
    """metrics.csv of the newest log version of one run (runs/<experiment>/seed_<seed>/version_N/)."""
    found = sorted(
        (runs_dir / experiment / f"seed_{seed}").glob("version_*/metrics.csv"),
        key=lambda p: p.stat().st_mtime,
    )
    return found[-1] if found else None


def evaluate_run(run: Run, problems: dict, key: dict, fresh: bool = False, progress=print) -> dict:
    """{set: {task: metrics}} of one run, from its cached evaluation.json when that matches `key`."""
    cache = run.checkpoint.parent / EVALUATION_FILE
    stat = run.checkpoint.stat()
    key = key | {"checkpoint": run.checkpoint.name, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if not fresh and cache.exists():
        try:
            cached = json.loads(cache.read_text())
        except json.JSONDecodeError:
            cached = {}
        if cached.get("key") == key:
            return cached["sets"]
    progress(f"evaluating {run.experiment} seed {run.seed} ({run.checkpoint.name})")
    try:
        model = load_model(run.checkpoint).model
    except CheckpointError as e:
        raise ReportError(str(e)) from None
    sets = {name: evaluate_model(model, p, key["views"])["metrics"] for name, p in problems.items()}
    sets["parameters"] = count_parameters(model)
    atomic_write_text(cache, json.dumps({"key": key, "sets": sets}, indent=1) + "\n")
    return sets


def evaluate_one_run(
    checkpoints_dir: Path,
    name: str,
    per_task: int | None = 5,
    views: int = 1,
    monitor: str | None = None,
    fresh: bool = False,
    data_dir: Path = DATA_DIR,
    progress=print,
) -> None:
    """Evaluate one run ("experiment/seed") into its cache, as `run_report` would, and write no report: the
    ablation evaluates each run as soon as it has trained, beside the runs still training."""
    experiment, _, seed = name.partition("/")
    if experiment not in ABLATION_ARMS or not re.fullmatch(r"-?[0-9]+", seed):
        raise ReportError(f"--evaluate-run {name!r}: expected EXPERIMENT/SEED with EXPERIMENT one of "
                          f"{', '.join(ABLATION_ARMS)}, for example exp_3_champion/307")  # fmt: skip
    found, _, missing = find_runs(checkpoints_dir, monitor, [experiment])
    run = found.get(experiment, {}).get(int(seed))
    if run is None:
        why = missing.get(
            f"{experiment}/seed_{seed}", f"no {checkpoints_dir / experiment}/seed_{seed}/ folder"
        )
        raise ReportError(f"--evaluate-run {name}: {why}")
    problems = evaluation_problems(per_task, data_dir)
    evaluate_run(run, problems, evaluation_key(problems, per_task, views), fresh, progress)


def comparisons(arms: list[str]) -> list[tuple[str, str]]:
    """(earlier, later) pairs: each named change whose arms both ran, and each later arm against the baseline."""
    pairs = [pair for pair in CHANGES if set(pair) <= set(arms)]
    if BASELINE in arms:
        later = MODEL_NAMES[MODEL_NAMES.index(BASELINE) + 1 :]
        pairs += [(BASELINE, b) for b in later if b in arms and (BASELINE, b) not in pairs]
    return pairs


def _grid(runs: dict, arm: str, seeds: list[int], set_name: str, tasks: list[str], metric: str) -> np.ndarray:
    """(seeds, tasks) values of one arm."""
    return np.array([[runs[arm][str(s)]["sets"][set_name][t][metric] for t in tasks] for s in seeds])


def exact_grids(cells: list[dict], confidence: float = CONFIDENCE) -> dict:
    """Exactly solved grids over (run, task) cells of metrics: k of n with a Wilson interval."""
    k, n = sum(round(c["exact"] * c["n"]) for c in cells), sum(c["n"] for c in cells)
    return {"k": k, "n": n} | wilson_interval(k, n, confidence).as_dict()


def evaluation_key(problems: dict[str, list[Problem]], per_task: int | None, views: int) -> dict:
    """What a cached evaluation must match to be reused (with the checkpoint file, added per run)."""
    return {
        "version": EVALUATION_VERSION,
        "per_task": per_task,
        "views": views,
        "episodes": problems_digest(problems),
    }


def compute_statistics(runs: dict, confidence: float = CONFIDENCE) -> dict:
    """Arm intervals, exact-grid proportions, paired comparisons (Holm within each set and metric), per-task
    tables. `runs` is {arm: {seed (str): {"sets": {set: {task: metrics}}}}}."""
    arms = [a for a in ABLATION_ARMS if a in runs]
    out = {"arms": {}, "exact_grids": {}, "comparisons": {}, "per_task": {}}
    for set_name in EVAL_SETS:
        tasks = sorted(set.intersection(*(set(r["sets"][set_name]) for a in arms for r in runs[a].values())))
        seeds = {a: sorted(int(s) for s in runs[a]) for a in arms}
        out["arms"][set_name], out["comparisons"][set_name], out["per_task"][set_name] = {}, {}, {}
        out["exact_grids"][set_name] = {}
        for metric in STAT_METRICS:
            arm_rows, task_rows = {}, {}
            for a in arms:
                values = _grid(runs, a, seeds[a], set_name, tasks, metric)
                arm_rows[a] = arm_interval(values, confidence).as_dict() | {
                    "n_seeds": len(seeds[a]),
                    "n_tasks": len(tasks),
                }
                sd = values.std(axis=0, ddof=1) if len(values) > 1 else np.full(len(tasks), np.nan)
                task_rows[a] = {
                    t: {"mean": float(m), "sd": None if np.isnan(s) else float(s)}
                    for t, m, s in zip(tasks, values.mean(axis=0), sd)
                }
            rows = []
            for a, b in comparisons(arms):
                common = sorted(set(seeds[a]) & set(seeds[b]))
                if not common:
                    continue
                diff = paired_difference(
                    _grid(runs, a, common, set_name, tasks, metric),
                    _grid(runs, b, common, set_name, tasks, metric),
                    confidence,
                )
                rows.append({"a": a, "b": b, "seeds": common} | diff.as_dict())
            for row, adjusted in zip(rows, holm([r["p_value"] for r in rows])):
                row["p_holm"] = float(adjusted)
            out["arms"][set_name][metric] = arm_rows
            out["comparisons"][set_name][metric] = rows
            out["per_task"][set_name][metric] = task_rows
        for a in arms:
            cells = [runs[a][str(s)]["sets"][set_name][t] for s in seeds[a] for t in tasks]
            out["exact_grids"][set_name][a] = exact_grids(cells, confidence)
    return out


def _num(x: float) -> str:
    return f"{x:.3f}"


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _p_is(name: str, p: float) -> str:
    return f"{name} < 0.001" if p < 0.001 else f"{name} = {p:.3f}"


def comparison_label(a: str, b: str) -> str:
    change = CHANGES.get((a, b))
    return f"{change} ({b} against {a})" if change else f"{b} against {a}"


def conclusion(row: dict, set_name: str, metric: str) -> str:
    """One sentence stating a comparison; "no detectable difference" unless the interval excludes 0 and the
    Holm-adjusted p-value is below alpha."""
    what = f"{SET_NAMES[set_name]} {METRIC_NAMES[metric]}"
    detail = (
        f"{_num(row['estimate'])} [{_num(row['low'])}, {_num(row['high'])}], {_p_is('p', row['p_value'])}, "
        f"{_p_is('Holm p', row['p_holm'])}; {row['n_seeds']} seed(s) x {row['n_tasks']} tasks"
    )
    label = comparison_label(row["a"], row["b"])
    detectable = not (row["low"] <= 0 <= row["high"]) and row["p_holm"] < ALPHA
    if not detectable:
        return f"{label}: no detectable difference in {what} ({detail})."
    verb = "lowers" if row["estimate"] < 0 else "raises"
    return f"{label} {verb} {what} by {_num(abs(row['estimate']))} ({detail})."


def conclusions(statistics: dict) -> dict[str, list[str]]:
    return {
        s: [conclusion(row, s, m) for m in CONCLUSION_METRICS for row in statistics["comparisons"][s][m]]
        for s in EVAL_SETS
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def run_report(
    checkpoints_dir: Path,
    per_task: int | None = 5,
    views: int = 1,
    monitor: str | None = None,
    fresh: bool = False,
    data_dir: Path = DATA_DIR,
    progress=print,
) -> dict:
    """Evaluate every run present on the same episodes and compute the statistics."""
    found, monitor, missing = find_runs(checkpoints_dir, monitor)
    if not found:
        raise ReportError(f"{checkpoints_dir}: no runs to report ({'; '.join(missing.values())})")
    problems = evaluation_problems(per_task, data_dir)
    key = evaluation_key(problems, per_task, views)
    runs = {}
    for arm, by_seed in found.items():
        for seed, run in by_seed.items():
            sets = evaluate_run(run, problems, key, fresh, progress)
            runs.setdefault(arm, {})[str(seed)] = {
                "checkpoint": str(run.checkpoint),
                "monitor_value": run.monitor_value,
                "best_epoch": run.best_epoch,
                "parameters": sets["parameters"],
                "sets": {s: sets[s] for s in EVAL_SETS},
            }
    statistics = compute_statistics(runs)
    manifest = json.loads((data_dir / "manifest.json").read_text())["tasks"]
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "arc_dataset": ARC_DATASET,
        "per_task": per_task,
        "views": views,
        "monitor": monitor,
        "heldout_slice": {"name": REPORT_SLICE, "queries": len(problems["heldout"])},
        "keys": {t: {k: manifest[t][k] for k in KEY_COLUMNS} for t in sorted(manifest)},
        "confidence": CONFIDENCE,
        "seeds": {arm: sorted(int(s) for s in by_seed) for arm, by_seed in runs.items()},
        "missing": missing,
        "runs": runs,
        "statistics": statistics,
        "conclusions": conclusions(statistics),
    }


def task_table(
    report: dict, set_name: str, metric: str
) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(arms, tasks, mean over seeds, sd over seeds) for the arm x task heatmap; sd is nan with one seed."""
    rows = report["statistics"]["per_task"][set_name][metric]
    arms = list(rows)
    tasks = sorted({t for r in rows.values() for t in r})
    mean = np.array([[rows[a][t]["mean"] for t in tasks] for a in arms])
    sd = np.array([[np.nan if rows[a][t]["sd"] is None else rows[a][t]["sd"] for t in tasks] for a in arms])
    return arms, tasks, mean, sd


def format_markdown(report: dict, figures: dict[str, str] | None = None) -> str:
    stats, pct = report["statistics"], int(round(report["confidence"] * 100))
    sl = report["heldout_slice"]
    lines = [
        "# Ablation results",
        "",
        f"Created {report['created']} at commit {report['commit'] or 'unknown'}. Real tasks: {report['arc_dataset']}.",
        f"Checkpoints selected on `{report['monitor']}`; held-out results on the {sl['name']!r} half of each task's held-out "
        f"examples ({sl['queries']} queries), which selection never saw. Up to "
        f"{report['per_task']} queries per task, {report['views']} view(s) per query.",
        "Metrics by free generation (the model writes the grid and its size); loss is teacher-forced per target "
        "token within a task. Every mean over tasks weighs each task the same.",
        "",
        "| arm | seeds |",
        "|---|---|",
        *[f"| {a} | {', '.join(map(str, s))} |" for a, s in report["seeds"].items()],
        "",
    ]
    if report["missing"]:
        lines += ["Missing: " + "; ".join(f"{k} ({v})" for k, v in report["missing"].items()) + ".", ""]
    lines += ["## Conclusions", "", "Generated from the paired comparisons below.", ""]
    for set_name, sentences in report["conclusions"].items():
        bullets = [f"- {s}" for s in sentences] or ["- (fewer than two arms: nothing to compare)"]
        lines += [f"### {set_name}", "", *bullets, ""]
    lines += [
        f"## Arms: mean over tasks [{pct}% bootstrap interval resampling seeds and tasks]",
        "",
        "With few seeds this bootstrap is narrow: at 3 seeds x 14 tasks it covered the true mean about 87% of "
        "the time in simulation with equal seed, task and query variation (tests/test_statistics.py), less when "
        "seeds vary most. The paired comparisons below use a t interval that counts seed and task variation. "
        "The Wilson interval treats every query of every seed as independent, so it weighs tasks by their "
        "number of queries.",
        "",
    ]
    for set_name in EVAL_SETS:
        lines += [f"### {set_name}", "", f"| arm | seeds | {' | '.join(STAT_METRICS)} | exact grids (Wilson {pct}%) |",
                  "|---|---:|" + "---:|" * (len(STAT_METRICS) + 1)]  # fmt: skip
        for arm in report["seeds"]:
            cells = [stats["arms"][set_name][m][arm] for m in STAT_METRICS]
            g = stats["exact_grids"][set_name][arm]
            lines.append(
                f"| {arm} | {len(report['seeds'][arm])} | "
                + " | ".join(f"{_num(c['estimate'])} [{_num(c['low'])}, {_num(c['high'])}]" for c in cells)
                + f" | {g['k']}/{g['n']} = {_num(g['estimate'])} [{_num(g['low'])}, {_num(g['high'])}] |"
            )
        lines.append("")
    lines += [
        "## Paired comparisons (later arm minus earlier; same seeds, tasks and episodes)",
        "",
        f"Difference with a {pct}% t interval and two-sided p-value; the standard error counts seed-to-seed and "
        "task-to-task variation (crossed random-effects ANOVA, Satterthwaite degrees of freedom). Holm-adjusted "
        "within each evaluation set and metric. For loss, negative is better; for accuracies, positive.",
        "",
    ]
    for set_name in EVAL_SETS:
        lines += [f"### {set_name}", "", "| comparison | metric | difference | p | Holm p | seeds x tasks |",
                  "|---|---|---:|---:|---:|---:|"]  # fmt: skip
        for metric in STAT_METRICS:
            for r in stats["comparisons"][set_name][metric]:
                lines.append(
                    f"| {r['b']} - {r['a']} | {metric} | {_num(r['estimate'])} [{_num(r['low'])}, {_num(r['high'])}] "
                    f"| {_p(r['p_value'])} | {_p(r['p_holm'])} | {r['n_seeds']} x {r['n_tasks']} |"
                )
        lines.append("")
    lines += ["## Per task: mean over seeds (sd over seeds)", ""]
    for set_name in EVAL_SETS:
        for metric in CONCLUSION_METRICS:
            arms, tasks, mean, sd = task_table(report, set_name, metric)
            lines += [f"### {set_name}: {metric}", "", "| arm | " + " | ".join(tasks) + " |",
                      "|---|" + "---:|" * len(tasks)]  # fmt: skip
            for arm, m_row, s_row in zip(arms, mean, sd):
                cells = [f"{m:.2f}" + ("" if np.isnan(s) else f" ({s:.2f})") for m, s in zip(m_row, s_row)]
                lines.append(f"| {arm} | " + " | ".join(cells) + " |")
            lines.append("")
    lines += [
        "## Data: distinct canonical keys per task",
        "",
        "Held-out keys are never trained on. A closed-world task's whole space (as its sampler draws it) fits in "
        "the training set, so its training examples repeat keys in other colours and orientations.",
        "",
        "| task | training keys | select keys | report keys | closed-world |",
        "|---|---:|---:|---:|---|",
        *[
            f"| {t} | {k['train_keys']} | {k['select_keys'] or '-'} | {k['report_keys'] or '-'} | "
            f"{'yes' if k['space_exhausted'] else ''} |"
            for t, k in report["keys"].items()
        ],
        "",
    ]
    if figures:
        lines += ["## Figures", "", *[f"![{name}]({path})" for name, path in figures.items()], ""]
    return "\n".join(lines)


def write_report(
    report: dict, checkpoints_dir: Path, figures: dict[str, str] | None = None
) -> tuple[Path, Path]:
    json_path, md_path = checkpoints_dir / "ablation_results.json", checkpoints_dir / "ablation_results.md"
    atomic_write_text(json_path, json.dumps(report, indent=1) + "\n")
    atomic_write_text(md_path, format_markdown(report, figures) + "\n")
    return json_path, md_path


def load_report(checkpoints_dir: Path) -> dict:
    return json.loads((checkpoints_dir / "ablation_results.json").read_text())


def main(argv: list[str] | None = None) -> int:
    from arclib.training.cli import REPO_ROOT

    parser = argparse.ArgumentParser(prog="python -m arclib report", description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--output-root", default=str(REPO_ROOT), help="folder holding checkpoints/ and runs/")
    parser.add_argument(
        "--per-task", type=int, default=5, help="generated queries per task (real: test pairs)"
    )
    parser.add_argument("--views", type=int, default=1, help="augmented views per query for pass@2 voting")
    parser.add_argument("--monitor", choices=["val_loss", "heldout_loss"], default=None,
                        help="the loss checkpoints were selected on (default: the one their names use)")  # fmt: skip
    parser.add_argument("--data-dir", default=str(DATA_DIR))
    parser.add_argument("--fresh", action="store_true", help="re-evaluate every run, ignoring cached results")
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--evaluate-run", metavar="EXPERIMENT/SEED",
                        help="only evaluate this run and cache its scores beside its checkpoint; write no report")  # fmt: skip
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    for name in ("per_task", "views"):
        if getattr(args, name) < 1:
            print(
                f"error: --{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}",
                file=sys.stderr,
            )
            return 2
    root = Path(args.output_root).resolve()
    checkpoints_dir = root / "checkpoints"
    if args.evaluate_run:
        try:
            evaluate_one_run(
                checkpoints_dir,
                args.evaluate_run,
                args.per_task,
                args.views,
                args.monitor,
                Path(args.data_dir),
            )
        except ReportError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    try:
        report = run_report(
            checkpoints_dir, args.per_task, args.views, args.monitor, args.fresh, Path(args.data_dir)
        )
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    figures = None
    if not args.no_figures:
        from arclib.viz.statistics import save_report_figures

        figures = save_report_figures(report, root / "runs", checkpoints_dir / "ablation_figures")
        figures = {name: str(Path(path).relative_to(checkpoints_dir)) for name, path in figures.items()}
    json_path, md_path = write_report(report, checkpoints_dir, figures)
    print(f"wrote {json_path} and {md_path}")
    return 0

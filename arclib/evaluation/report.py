"""The ablation report: every trained experiment evaluated on the same episodes.

Evaluation sets (shared by all experiments, so rows are comparable):
  val      generated examples of the 4 validation tasks (2 other examples as context, fixed seed)
  heldout  fresh generated examples of the 14 training tasks, never trained on
  real18   the real ARC-AGI-1 pairs of all 18 tasks: real demos as context, each real test input as query
Greedy free generation gives top-1 metrics; `views` > 1 adds augmentation voting and ARC pass@2.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from arclib.data.arc import ARC_DATASET
from arclib.data.generate import DATA_DIR
from arclib.data.tokens import PAD, Episode, collate
from arclib.evaluation.arc_score import overall_score, score_output, task_scores
from arclib.evaluation.cli import Problem, load_problems
from arclib.evaluation.metrics import aggregate, grid_metrics
from arclib.evaluation.voting import model_predictor, predict_with_voting
from arclib.fileio import atomic_write_text
from arclib.models import MODEL_NAMES, count_parameters
from arclib.models.base import token_nll
from arclib.training.checkpoints import load_checkpoint, load_model

EVAL_SETS = ("val", "heldout", "real18")
TABLE_METRICS = ("exact", "pass2", "shape", "cell", "change_recall", "loss")
_SCORE = re.compile(r"-(val_loss|heldout_loss)=([0-9.]+)\.ckpt$")


@dataclass
class Run:
    experiment: str
    checkpoint: Path
    best_epoch: int
    monitor: str | None
    monitor_value: float | None


def best_checkpoint(ckpt_dir: Path) -> Run | None:
    """The checkpoint with the lowest monitored loss in its name; last.ckpt if none is named so."""
    scored = [
        (float(m.group(2)), m.group(1), p) for p in ckpt_dir.glob("*.ckpt") if (m := _SCORE.search(p.name))
    ]
    if scored:
        value, monitor, path = min(scored)
    elif (ckpt_dir / "last.ckpt").exists():
        value, monitor, path = None, None, ckpt_dir / "last.ckpt"
    else:
        return None
    return Run(ckpt_dir.name, path, int(load_checkpoint(path)["epoch"]), monitor, value)


def find_runs(checkpoints_dir: Path) -> tuple[dict[str, Run], list[str]]:
    """Best run of each experiment present, and the experiments with no checkpoint."""
    runs, missing = {}, []
    for name in MODEL_NAMES:
        run = best_checkpoint(checkpoints_dir / name)
        if run is None:
            missing.append(name)
        else:
            runs[name] = run
    return runs, missing


def evaluation_problems(per_task: int | None, data_dir: Path = DATA_DIR) -> dict[str, list[Problem]]:
    return {name: load_problems(name, data_dir, None, per_task) for name in EVAL_SETS}


@torch.no_grad()
def teacher_forced_loss(model, episodes: list[Episode], batch_size: int = 32) -> float:
    """Mean per-token loss over the episodes' targets (as val_loss is computed in training)."""
    model.eval()
    total, count = 0.0, 0
    for s in range(0, len(episodes), batch_size):
        batch = collate(episodes[s : s + batch_size])
        logits = model(batch)
        total += float(token_nll(logits, batch.tgt_out).sum())
        count += int((batch.tgt_out != PAD).sum())
    return total / max(count, 1)


def evaluate_model(model, problems: list[Problem], views: int = 1, seed: int = 0) -> dict:
    """Pooled ("all") and per-task metrics of one model on one evaluation set, plus every prediction."""
    episodes = [
        Episode(p.task_id, p.demos, x, y) for p in problems for x, y in zip(p.test_inputs, p.test_outputs)
    ]
    queries = [Episode(e.task_id, e.context, e.query_input) for e in episodes]  # the target is never shown
    results = predict_with_voting(model_predictor(model), queries, views, seed)
    rows = [
        (e.task_id, grid_metrics(r.identity[0], e.query_output, e.query_input))
        for e, r in zip(episodes, results)
    ]
    metrics = aggregate(rows)
    per_task = task_scores(
        [
            score_output(e.task_id, r.voted_attempts, e.query_output, e.query_input)
            for e, r in zip(episodes, results)
        ]
    )
    for task_id, scores in per_task.items():
        metrics[task_id]["pass2"] = scores["pass2"]
    metrics["all"]["pass2"] = overall_score(per_task)["pass2"]  # ARC's mean over tasks
    metrics["all"]["loss"] = teacher_forced_loss(model, episodes)
    metrics["all"]["n"] = len(episodes)
    predictions = [(e, r.identity[0]) for e, r in zip(episodes, results)]
    return {"metrics": metrics, "predictions": predictions}


def run_report(checkpoints_dir: Path, per_task: int | None = 25, views: int = 1, progress=print) -> dict:
    """Evaluate the best checkpoint of every experiment present on the same episodes."""
    runs, missing = find_runs(checkpoints_dir)
    problems = evaluation_problems(per_task)
    report = {
        "arc_dataset": ARC_DATASET,
        "per_task": per_task,
        "views": views,
        "missing": missing,
        "experiments": {},
    }
    predictions = {}
    for name, run in runs.items():
        progress(f"evaluating {name} ({run.checkpoint.name})")
        model = load_model(run.checkpoint).model
        entry = {
            "checkpoint": str(run.checkpoint),
            "parameters": count_parameters(model),
            "best_epoch": run.best_epoch,
            "monitor": run.monitor,
            "monitor_value": run.monitor_value,
            "sets": {},
        }
        for set_name, set_problems in problems.items():
            result = evaluate_model(model, set_problems, views)
            entry["sets"][set_name] = result["metrics"]
            predictions[(name, set_name)] = result["predictions"]
        report["experiments"][name] = entry
    report["_predictions"] = predictions  # for the gallery; not written to JSON
    return report


def format_markdown(report: dict) -> str:
    lines = [
        "# Ablation results",
        "",
        f"Real tasks: {report['arc_dataset']}. Up to {report['per_task']} generated queries per task; "
        f"{report['views']} view(s) per query (pass@2 needs voting: with 1 view it equals top-1 exact).",
        "Metrics by free generation (the model writes the grid and its size); loss is teacher-forced per token.",
        "",
    ]
    if report["missing"]:
        lines += [f"Missing (no checkpoint): {', '.join(report['missing'])}. Train with `python -m arclib fit "
                  f"--config configs/<experiment>.yaml --config configs/profiles/cpu.yaml`.", ""]  # fmt: skip
    for set_name in EVAL_SETS:
        lines += [f"## {set_name}", "", "| experiment | params | best epoch | best monitored loss | exact | pass@2 | shape | cell | change recall | loss |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for name, entry in report["experiments"].items():
            m = entry["sets"][set_name]["all"]
            cells = [f"{m[k]:.3f}" if m.get(k) is not None else "n/a" for k in TABLE_METRICS]
            best = (
                f"{entry['monitor']} {entry['monitor_value']:.4f}"
                if entry.get("monitor_value") is not None
                else "n/a"
            )
            head = f"| {name} | {entry['parameters']:,} | {entry['best_epoch']} | {best} | "
            lines.append(head + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_report(report: dict, checkpoints_dir: Path) -> tuple[Path, Path]:
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    json_path, md_path = checkpoints_dir / "ablation_results.json", checkpoints_dir / "ablation_results.md"
    atomic_write_text(json_path, json.dumps(public, indent=1, default=_plain) + "\n")
    atomic_write_text(md_path, format_markdown(report) + "\n")
    return json_path, md_path


def _plain(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def exact_heatmap_data(report: dict, set_name: str) -> tuple[list[str], list[str], np.ndarray]:
    """(experiments, tasks, exact accuracy matrix) for the experiments x tasks heatmap."""
    names = list(report["experiments"])
    tasks = sorted({t for e in report["experiments"].values() for t in e["sets"][set_name] if t != "all"})
    matrix = np.array(
        [
            [report["experiments"][n]["sets"][set_name].get(t, {}).get("exact", np.nan) for t in tasks]
            for n in names
        ]
    )
    return names, tasks, matrix

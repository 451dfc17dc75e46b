"""Voting and test-time training per experiment, for the analysis notebook.

On the real ARC-AGI-1 pairs: pass@1 without voting (one attempt), pass@2 with voting, and (on the validation tasks, where a task
is new to the model) after test-time training on the task's real demonstrations.
"""

from __future__ import annotations

from pathlib import Path

from arclib.data.split import task_split
from arclib.data.tasks import TASK_IDS
from arclib.data.tokens import Episode
from arclib.evaluation.arc_score import overall_score, score_output, task_scores
from arclib.evaluation.cli import real_problems
from arclib.evaluation.ttt import TTTConfig, ttt_predict
from arclib.evaluation.voting import model_predictor, predict_with_voting
from arclib.training.checkpoints import load_model


def _pass2(problems, results, attempts: str) -> float:
    targets = [(p.task_id, x, y) for p in problems for x, y in zip(p.test_inputs, p.test_outputs)]
    scores = [score_output(t, getattr(r, attempts), y, x) for (t, x, y), r in zip(targets, results)]
    return overall_score(task_scores(scores))["pass2"]


def voting_and_ttt_table(
    checkpoints: dict[str, Path], views: int = 8, ttt_steps: int = 40, tasks: list[str] | None = None
) -> str:
    """Markdown table: real-task pass@1 of each experiment without voting, pass@2 with voting and with TTT + voting."""
    all_ids = sorted(tasks or TASK_IDS)
    val_ids = [t for t in task_split()["val"] if t in all_ids] or all_ids[:1]
    problems = real_problems(all_ids, None)
    val_problems = [p for p in problems if p.task_id in val_ids]
    lines = [
        f"Real ARC-AGI-1 test inputs; {views} views for voting; TTT {ttt_steps} steps on tasks {', '.join(val_ids)}.",
        "",
        f"| experiment | {len(all_ids)} tasks: pass@1 | pass@2, voting | {len(val_ids)} val tasks: pass@1 | pass@2, voting | pass@2, TTT + voting |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, path in checkpoints.items():
        model = load_model(path).model
        episodes = [Episode(p.task_id, p.demos, x) for p in problems for x in p.test_inputs]
        results = predict_with_voting(model_predictor(model), episodes, views)
        val_index = [i for i, e in enumerate(episodes) if e.task_id in val_ids]
        val_results = [results[i] for i in val_index]
        ttt = [
            r
            for p in val_problems
            for r in ttt_predict(
                model, p.task_id, p.demos, p.test_inputs, TTTConfig(steps=ttt_steps), n_views=views
            )
        ]
        cells = [
            _pass2(problems, results, "identity_attempts"),
            _pass2(problems, results, "voted_attempts"),
            _pass2(val_problems, val_results, "identity_attempts"),
            _pass2(val_problems, val_results, "voted_attempts"),
            _pass2(val_problems, ttt, "voted_attempts"),
        ]
        lines.append(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    return "\n".join(lines)

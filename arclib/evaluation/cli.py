"""`python -m arclib evaluate`: ARC-style scoring of a checkpoint, with augmentation voting and optional TTT.

    python -m arclib evaluate --checkpoint PATH --tasks real18 [--views 8] [--ttt --ttt-steps 300]

Task sets (--tasks):
  real18    the real ARC-AGI-1 pairs of the 18 tasks: real demos as context, each real test input as a query
  val       generated examples of the 4 validation tasks (data/tasks): each example a query with 2 other
            examples as context, drawn with a fixed seed as training-time validation draws them (the same
            episodes only when --limit-per-task equals the run's data.val_per_task)
  heldout   the same over the "report" half of data/heldout (examples of the 14 training tasks whose keys are
            in neither training nor the "select" half that chose the checkpoint)
  IDS       comma-separated ARC-AGI-1 ids (training or evaluation set): real demos as context

Context: the models were trained with 2 context pairs but accept any number, so real tasks show *all* their
demos by default; `--context 2` shows the first 2 only. Generated sets use `--context` (default 2) examples.

Each test output is scored twice: without voting (the identity view's greedy answer as the single attempt:
pass@1, which the JSON still files under `pass2_no_voting`) and with voting over --views augmented views (the
two most voted grids as the two attempts: pass@2). The headline `pass2` of the JSON is the voting one; with
--views 1 the two coincide.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from arclib.data.arc import ARC_DATASET, load_arc_task
from arclib.data.episodes import NO_AUGMENT, EpisodeDataset, EpisodePlanner
from arclib.data.generate import DATA_DIR, load_examples
from arclib.data.grids import grid_to_list
from arclib.data.split import heldout_slice, task_split
from arclib.data.tasks import TASK_IDS
from arclib.data.tokens import Episode
from arclib.evaluation.arc_score import overall_score, score_output, task_scores
from arclib.evaluation.ttt import TTTConfig, inputs_only, ttt_predict
from arclib.evaluation.voting import VoteResult, model_predictor, predict_with_voting
from arclib.fileio import atomic_write_text

Pair = tuple[np.ndarray, np.ndarray]
GENERATED_SETS = ("val", "heldout")
EPISODE_SEED = 307  # the training-time validation seed, so "val" episodes match those the training logged
ARC_ID = re.compile(r"^[0-9a-f]{8}$")


class EvaluationError(Exception):
    """A user-facing problem (bad checkpoint, unknown task, missing data): printed, exit code 2."""


@dataclass
class Problem:
    """What a solver is shown (demos, test inputs) plus the test outputs, which only the scorer reads."""

    task_id: str
    demos: list[Pair]
    test_inputs: list[np.ndarray]
    test_outputs: list[np.ndarray]


def real_problems(task_ids: list[str], limit_per_task: int | None) -> list[Problem]:
    problems = []
    for task_id in task_ids:
        try:
            task = load_arc_task(task_id)
        except KeyError as e:
            raise EvaluationError(e.args[0]) from None
        tests = task.test[:limit_per_task]
        problems.append(Problem(task_id, list(task.train), inputs_only(tests), [y for _, y in tests]))
    return problems


def generated_episodes(
    name: str, data_dir: Path, n_context: int, limit_per_task: int | None
) -> list[Episode]:
    """Fixed episodes of "val" or "heldout" (its report half): each example a query, `n_context` other
    examples (other by canonical key) its context, drawn with EPISODE_SEED."""
    split = task_split()
    ids, folder = (split["val"], "tasks") if name == "val" else (split["train"], "heldout")
    try:
        examples = load_examples(data_dir / folder, ids)
    except FileNotFoundError as e:
        raise EvaluationError(str(e)) from None
    if name == "heldout":
        examples = {t: heldout_slice(p, "report") for t, p in examples.items()}
    plans = EpisodePlanner(examples, n_context).plans(
        np.random.default_rng([EPISODE_SEED, 1]), NO_AUGMENT, limit_per_task
    )
    dataset = EpisodeDataset(examples)
    return [dataset[plan] for plan in plans]


def generated_problems(
    name: str, data_dir: Path, n_context: int, limit_per_task: int | None
) -> list[Problem]:
    """One problem per generated example: the example is the query, `n_context` other examples the demos."""
    episodes = generated_episodes(name, data_dir, n_context, limit_per_task)
    return [Problem(ep.task_id, ep.context, [ep.query_input], [ep.query_output]) for ep in episodes]


def load_problems(
    spec: str, data_dir: Path, context: int | None, limit_per_task: int | None
) -> list[Problem]:
    if spec == "real18":
        return real_problems(sorted(TASK_IDS), limit_per_task)
    if spec in GENERATED_SETS:
        return generated_problems(spec, data_dir, context or 2, limit_per_task)
    ids = [t.strip() for t in spec.split(",") if t.strip()]
    bad = [t for t in ids if not ARC_ID.match(t)]
    if not ids or bad:
        raise EvaluationError(
            f"--tasks {spec!r}: expected real18, val, heldout or comma-separated 8-hex-digit ARC ids (bad: {bad})"
        )
    return real_problems(ids, limit_per_task)


def load_model(checkpoint: Path, device: str) -> tuple[torch.nn.Module, dict]:
    """The network of an arclib checkpoint and its hyperparameters, via the safe (weights-only) loader."""
    from arclib.training.checkpoints import CheckpointError
    from arclib.training.checkpoints import load_model as load_module

    try:
        module = load_module(checkpoint)
    except CheckpointError as e:
        raise EvaluationError(str(e)) from None
    return module.model.to(device).eval(), dict(module.hparams)


def ttt_config(args) -> TTTConfig:
    return TTTConfig(steps=args.ttt_steps, lr=args.ttt_lr, batch_size=args.ttt_batch_size, seed=args.seed)


def predict_problems(model, problems: list[Problem], args) -> list[VoteResult]:
    """Vote results for every test input, in problem order."""
    if args.ttt:
        config = ttt_config(args)
        options = dict(
            n_views=args.views, context=args.context, vote_seed=args.seed, batch_size=args.batch_size
        )
        results = []
        for p in tqdm(problems, desc="TTT per problem"):
            results += ttt_predict(model, p.task_id, p.demos, p.test_inputs, config, **options)
        return results
    shown = slice(None) if args.context is None else slice(args.context)
    episodes = [Episode(p.task_id, p.demos[shown], x) for p in problems for x in p.test_inputs]
    return predict_with_voting(
        model_predictor(model, args.batch_size, progress=True), episodes, args.views, args.seed
    )


def score(problems: list[Problem], results: list[VoteResult]) -> tuple[dict, list[dict]]:
    targets = [(p.task_id, x, y) for p in problems for x, y in zip(p.test_inputs, p.test_outputs)]
    plain = [score_output(t, r.identity_attempts, y, x) for (t, x, y), r in zip(targets, results)]
    voted = [score_output(t, r.voted_attempts, y, x) for (t, x, y), r in zip(targets, results)]
    per_task = {"no_voting": task_scores(plain), "voting": task_scores(voted)}
    outputs = [
        {
            "task_id": t,
            "pass2_no_voting": a.pass2,
            "pass2_voting": b.pass2,
            "attempts_voting": [grid_to_list(g) for g in r.voted_attempts],
            "votes": [c.votes for c in r.candidates[:2]],
        }
        for (t, _, _), a, b, r in zip(targets, plain, voted, results)
    ]
    return per_task, outputs


TABLE_COLUMNS = (  # (header, key, voted?, meaning)
    ("outputs", "n", False, "test outputs scored"),
    ("solved 1st", "top1", False, "solved by the first attempt (the unaugmented view's answer)"),
    ("solved 2 tries", "pass2", False, "solved by one of two attempts, the ARC rule"),
    ("shape right", "shape", False, "first attempt has the right height and width"),
    ("cells right", "cell", False, "share of cells right in the first attempt (0 if the shape is wrong)"),
    ("voted 1st", "top1", True, "solved by the most voted grid over the augmented views"),
    ("voted 2 tries", "pass2", True, "solved by one of the two most voted grids"),
)


def format_table(per_task: dict) -> str:
    """Per-task scores, the mean over tasks, then what each column means, one per line."""
    plain, voted = per_task["no_voting"], per_task["voting"]
    widths = [max(len(h), 6) for h, *_ in TABLE_COLUMNS]
    header = f"{'task':<10} " + " ".join(f"{h:>{w}}" for (h, *_), w in zip(TABLE_COLUMNS, widths))

    def row(name, a, b):
        cells = []
        for (_, key, is_voted, _), w in zip(TABLE_COLUMNS, widths):
            value = (b if is_voted else a)[key]
            cells.append(f"{value:>{w}d}" if key == "n" else f"{value:>{w}.3f}")
        return f"{name:<10} " + " ".join(cells)

    lines = [header, "-" * len(header)]
    lines += [row(t, plain[t], voted[t]) for t in plain]
    all_plain, all_voted = overall_score(plain), overall_score(voted)
    lines += ["-" * len(header), row("mean/task", all_plain | {"n": all_plain["n_outputs"]}, all_voted)]
    lines += ["", "columns (fractions of the task's test outputs, averaged over tasks in mean/task):"]
    lines += [f"  {h:<15} {meaning}" for h, _, _, meaning in TABLE_COLUMNS]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m arclib evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="Lightning checkpoint of ArcLitModule")
    p.add_argument("--tasks", default="real18", help="real18 | val | heldout | comma-separated ARC-AGI-1 ids")
    p.add_argument("--views", type=int, default=8, help="augmented views for voting (1 = identity only)")
    p.add_argument(
        "--context", type=int, default=None, help="context pairs shown (default: all real demos; 2 generated)"
    )
    p.add_argument(
        "--limit-per-task", type=int, default=None, help="at most K test outputs (queries) per task"
    )
    p.add_argument("--ttt", action="store_true", help="test-time training on each task's demos first")
    p.add_argument("--ttt-steps", type=int, default=TTTConfig.steps)
    p.add_argument("--ttt-lr", type=float, default=TTTConfig.lr)
    p.add_argument("--ttt-batch-size", type=int, default=TTTConfig.batch_size)
    p.add_argument("--batch-size", type=int, default=32, help="episodes per generation batch")
    p.add_argument("--seed", type=int, default=0, help="seed of the voting views and TTT sampling")
    p.add_argument("--data-dir", type=Path, default=DATA_DIR, help="data folder for val / heldout")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=None, help="JSON summary path")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse has printed usage; return its code instead of exiting
        return int(e.code or 0)
    for name in ("views", "context", "limit_per_task", "ttt_steps", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "ttt_steps" else 1):
            print(f"error: --{name.replace('_', '-')} must be positive, got {value}", file=sys.stderr)
            return 2
    try:
        problems = load_problems(args.tasks, args.data_dir, args.context, args.limit_per_task)
        model, hparams = load_model(args.checkpoint, args.device)
    except (EvaluationError, FileNotFoundError, ValueError) as e:  # bad input, not a bug: no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    results = predict_problems(model, problems, args)
    per_task, outputs = score(problems, results)
    seconds = time.perf_counter() - start
    print("\n" + format_table(per_task), flush=True)  # own lines, even when a progress bar shares the log
    overall = {k: overall_score(v) for k, v in per_task.items()}
    print(
        f"mean over {overall['voting']['n_tasks']} tasks: pass@2 {overall['voting']['pass2']:.3f} with voting "
        f"({args.views} views), pass@1 {overall['no_voting']['pass2']:.3f} without; {seconds:.1f}s"
    )
    if args.out is not None:
        summary = {
            "pass2": overall["voting"]["pass2"],
            "pass2_no_voting": overall["no_voting"]["pass2"],
            "arc_dataset": ARC_DATASET,
            "checkpoint": str(args.checkpoint.resolve()),
            "model": {"name": hparams.get("model_name"), "preset": hparams.get("preset")},
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "out"}
            | {"ttt_config": asdict(ttt_config(args)) if args.ttt else None},
            "seconds": round(seconds, 2),
            "overall": overall,
            "per_task": per_task,
            "outputs": outputs,
        }
        atomic_write_text(args.out, json.dumps(summary, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0

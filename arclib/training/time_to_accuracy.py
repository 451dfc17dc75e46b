"""Time to accuracy, the study's figure of merit on a small machine: how many minutes of training an arm needs
before it writes held-out grids exactly.

    python -m arclib bench --time-to-accuracy [--experiment exp_3_champion] [--minutes 30] [--seeds 2]

One arm trains on this machine's cores with its profile's recipe; every `--every` minutes of *training* time
(scoring is timed apart and excluded) the model writes, by free generation, the outputs of fixed episodes
from the held-out **report** half of the 14 training tasks. Each scoring gives the mean over tasks (each task
weighs the same) of exact, shape and cell accuracy and of the teacher-forced loss per token. Lightning's own
validation is off: nothing but training runs on the clock.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch

from arclib.data.tokens import Episode
from arclib.evaluation.cli import generated_episodes
from arclib.evaluation.metrics import aggregate, grid_metrics
from arclib.evaluation.predict import predict_grids
from arclib.evaluation.report import task_losses
from arclib.fileio import atomic_write_text

THRESHOLDS = (0.25, 0.5)


def report_episodes(data_dir: Path, per_task: int, n_context: int = 2) -> list[Episode]:
    """The report's fixed episodes over the report half of each training task's held-out examples."""
    return generated_episodes("heldout", Path(data_dir), n_context, per_task)


@torch.no_grad()
def score(model, episodes: list[Episode], batch_size: int = 32) -> dict[str, float]:
    """Task-mean exact / shape / cell accuracy by free generation, and task-mean teacher-forced loss."""
    preds = predict_grids(model, episodes, batch_size)
    per_task = aggregate(
        [
            (ep.task_id, grid_metrics(p, ep.query_output, ep.query_input))
            for ep, (p, _) in zip(episodes, preds)
        ]
    )
    per_task.pop("all")
    was_training = model.training
    losses = task_losses(model, episodes, batch_size)
    model.train(was_training)
    out = {m: float(np.mean([t[m] for t in per_task.values()])) for m in ("exact", "shape", "cell")}
    out["loss"] = float(np.mean(list(losses.values())))
    out["per_task_exact"] = {t: v["exact"] for t, v in sorted(per_task.items())}
    return out


@dataclass
class TimedScoring(L.Callback):
    """Scores every `every_s` seconds of training time and stops training after `budget_s`."""

    episodes: list[Episode]
    every_s: float
    budget_s: float
    progress: object = print
    rows: list[dict] = field(default_factory=list)

    def on_train_start(self, trainer, pl_module) -> None:
        self._start, self._scoring_s, self._next = time.perf_counter(), 0.0, 0.0
        self._score(pl_module, 0.0)

    def training_seconds(self) -> float:
        return time.perf_counter() - self._start - self._scoring_s

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        t = self.training_seconds()
        if t >= self._next or t >= self.budget_s:
            self._score(pl_module, t)
        if t >= self.budget_s:
            trainer.should_stop = True

    def _score(self, pl_module, train_s: float) -> None:
        start = time.perf_counter()
        row = score(pl_module.model, self.episodes)
        scoring_s = time.perf_counter() - start
        self._scoring_s += scoring_s
        self._next = train_s + self.every_s
        self.rows.append({"minutes": train_s / 60, "scoring_s": scoring_s, **row})
        self.progress(
            f"[time-to-accuracy] {train_s / 60:5.1f} min: exact {row['exact']:.3f} shape {row['shape']:.3f} "
            f"cell {row['cell']:.3f} loss {row['loss']:.3f} (scoring {scoring_s:.0f} s, off the clock)"
        )


def minutes_to(rows: list[dict], threshold: float) -> float | None:
    return next((r["minutes"] for r in rows if r["exact"] >= threshold), None)


def run_time_to_accuracy(
    experiment: str,
    minutes: float,
    seeds: list[int],
    every_minutes: float,
    per_task: int,
    profile: str = "cpu",
    overrides: tuple[str, ...] = (),
    out_dir: Path | None = None,
    progress=print,
) -> dict:
    from arclib.training.cli import REPO_ROOT, load_experiment

    seed_range = f"seed_{seeds[0]}" + (f"-{seeds[-1]}" if len(seeds) > 1 else "")  # a new seed adds a folder
    out_dir = Path(out_dir or REPO_ROOT / "checkpoints" / "time_to_accuracy" / experiment / seed_range)
    runs = []
    for seed in seeds:
        exp = load_experiment(
            experiment, profile, f"--seed_everything={seed}", "--trainer.logger=false", *overrides
        )
        episodes = report_episodes(exp.datamodule.data_dir, per_task, exp.datamodule.hparams.n_context)
        scoring = TimedScoring(episodes, every_minutes * 60, minutes * 60, progress)
        L.seed_everything(seed, verbose=False)
        trainer = L.Trainer(
            max_epochs=-1,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            gradient_clip_val=exp.trainer.gradient_clip_val,
            precision=exp.trainer.precision,
            accelerator=exp.trainer.accelerator,
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[scoring],
        )
        trainer.fit(exp.model, datamodule=exp.datamodule)
        runs.append({"seed": seed, "rows": scoring.rows, "steps": trainer.global_step})
    result = summarise(experiment, profile, minutes, per_task, overrides, runs)
    write_outputs(result, out_dir)
    return result


def summarise(experiment, profile, minutes, per_task, overrides, runs) -> dict:
    reached = {
        str(th): [minutes_to(r["rows"], th) for r in runs] for th in THRESHOLDS
    }  # per seed; None = not reached
    return {
        "experiment": experiment,
        "profile": profile,
        "overrides": list(overrides),
        "minutes": minutes,
        "report_episodes_per_task": per_task,
        "torch_threads": torch.get_num_threads(),
        "runs": runs,
        "minutes_to_exact": reached,
    }


def write_outputs(result: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "time_to_accuracy.json", json.dumps(result, indent=1) + "\n")
    with open(out_dir / "time_to_accuracy.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["seed", "minutes", "exact", "shape", "cell", "loss", "scoring_s"])
        for run in result["runs"]:
            for r in run["rows"]:
                writer.writerow(
                    [
                        run["seed"],
                        *(f"{r[k]:.4f}" for k in ("minutes", "exact", "shape", "cell", "loss", "scoring_s")),
                    ]
                )
    plot_time_to_accuracy(result).savefig(out_dir / "time_to_accuracy.png", dpi=100)


def plot_time_to_accuracy(result: dict):
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    for k, run in enumerate(result["runs"]):
        minutes = [r["minutes"] for r in run["rows"]]
        for metric, style in (("exact", "-"), ("shape", "--"), ("cell", ":")):
            label = f"{metric}" if k == 0 else None
            ax1.plot(minutes, [r[metric] for r in run["rows"]], style, color=f"C{k}", label=label)
        ax2.plot(minutes, [r["loss"] for r in run["rows"]], color=f"C{k}", label=f"seed {run['seed']}")
    for th in THRESHOLDS:
        ax1.axhline(th, color="grey", lw=0.6)
    ax1.set(xlabel="training minutes (scoring excluded)", ylabel="task-mean accuracy", ylim=(-0.02, 1.02))
    ax2.set(xlabel="training minutes (scoring excluded)", ylabel="task-mean loss per token")
    ax1.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax2.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.suptitle(f"{result['experiment']} ({result['profile']} profile): held-out report half")
    fig.tight_layout()
    plt.close(fig)
    return fig


def format_summary(result: dict) -> str:
    lines = [f"{result['experiment']} ({result['profile']}), {result['minutes']:g} training minutes per seed"]
    for run in result["runs"]:
        last = run["rows"][-1]
        times = []
        for th in THRESHOLDS:
            m = minutes_to(run["rows"], th)
            times.append(
                f"exact {th}: "
                + (f"{m:.1f} min" if m is not None else f"not reached in {result['minutes']:g} min")
            )
        scoring = sum(r["scoring_s"] for r in run["rows"])
        lines.append(
            f"  seed {run['seed']}: final exact {last['exact']:.3f} shape {last['shape']:.3f} cell {last['cell']:.3f} "
            f"loss {last['loss']:.3f} after {run['steps']} steps; {'; '.join(times)}; scoring {scoring:.0f} s apart"
        )
    return "\n".join(lines)

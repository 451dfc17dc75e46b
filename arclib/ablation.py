"""The main job: train every experiment with N seeds, write the report, then run the analysis notebook.

    python -m arclib ablation --profile cpu [--seeds 3]          (what `make ablation` runs)

A seed sets the model's initialisation and the episode sampling (`--seed_everything`; the datamodule's episodes
follow it), so seed s gives every experiment the same episode stream and the arms pair seed by seed. Seeds are
FIRST_SEED, FIRST_SEED + 1, ... Each run trains in its own process (`python -m arclib fit ...`), so one crash
loses only that run; runs land in runs/<experiment>/seed_<seed>/ (its log: ablation_<profile>.log there) and
checkpoints/<experiment>/seed_<seed>/. As each run finishes, its report evaluation (`python -m arclib report
--evaluate-run`, log evaluation.log beside the run's) joins the queue and caches its scores beside the checkpoint.
Wall times go to checkpoints/ablation_timing.json. Then `python -m arclib report` writes
checkpoints/ablation_results.{json,md} from the cached scores, and the analysis notebook runs.

Runs go `--jobs` at a time, each on cores // jobs threads. Small-batch CPU training uses a second thread
poorly, so two single-threaded runs side by side finish sooner than two two-threaded runs in turn. Runs start
seed by seed in ABLATION_ARMS order, which puts the slowest (the decoder-only) first.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from arclib.fileio import atomic_write_text
from arclib.models import ABLATION_ARMS
from arclib.training.cli import CONFIG_DIR, PROFILES, REPO_ROOT

ANALYSIS_NOTEBOOK = REPO_ROOT / "notebooks" / "08_analysis.ipynb"
STATUS_EVERY_S = 120
FIRST_SEED = 307  # the seed's own run (configs/base.yaml seed_everything)
DEFAULT_SEEDS = 3
EVAL_PER_TASK = {"smoke": 1, "cpu": 5, "full": 50, "gpu": 50}  # generated queries per task in the report
# Validation picks each run's checkpoint (the report scores it) and draws its held-out curve. In the cpu profile
# the recipe's one cosine cycle (T_0 = max_epochs = 6) made the held-out loss lowest at the last epoch in all 18
# runs of the ablation at 8c8428a, so validating every other epoch (the last included) picks the same checkpoint
# and halves validation, which took about 15% of a run. Only the recipe's runs do this (no overrides given):
# the measurement covers no other schedule.
VALIDATE_EVERY_N_EPOCHS = {"cpu": 2}


class AblationError(RuntimeError):
    """One or more experiments failed; the others' checkpoints and the report are kept."""


def default_jobs() -> int:
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def gpu_slots(n_gpus: int, per_run: int) -> list[str]:
    """CUDA_VISIBLE_DEVICES of each run slot: `per_run` GPUs each, as many slots as the GPUs allow."""
    if per_run < 1 or per_run > n_gpus:
        raise ValueError(f"--gpus-per-run must be between 1 and the {n_gpus} GPU(s) here, got {per_run}")
    return [",".join(str(g) for g in range(k, k + per_run)) for k in range(0, n_gpus - per_run + 1, per_run)]


def seeds(n: int) -> list[int]:
    if n < 1:
        raise ValueError(f"--seeds must be at least 1, got {n}")
    return [FIRST_SEED + k for k in range(n)]


def run_log(output_root: Path, experiment: str, seed: int, profile: str) -> Path:
    return output_root / "runs" / experiment / f"seed_{seed}" / f"ablation_{profile}.log"


def report_args(output_root: Path, per_task: int) -> list[str]:
    """The report's arguments, the same for each run's evaluation and the final report, so that the final
    report finds every cached evaluation under its key."""
    return ["--output-root", str(output_root), "--per-task", str(per_task)]


def _launch(cmd: list[str], log: Path, threads: int, gpus: str | None):
    """Start `cmd` in the background on `threads` threads (and its GPUs, if any, as CUDA_VISIBLE_DEVICES)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        process = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
    return process, log, time.time()


def _start(
    run: tuple[str, int],
    profile: str,
    output_root: Path,
    extra: list[str],
    threads: int,
    gpus: str | None = None,
):
    """Launch one `fit` in the background."""
    experiment, seed = run
    log = run_log(output_root, experiment, seed, profile)
    cmd = [
        sys.executable, "-m", "arclib", "fit",
        "--config", str(CONFIG_DIR / f"{experiment}.yaml"),
        "--config", str(CONFIG_DIR / "profiles" / f"{profile}.yaml"),
        "--output_root", str(output_root),
        "--seed_everything", str(seed),
        "--trainer.enable_progress_bar=false",
        # The report scores every run by free generation on more queries; generating during training would
        # repeat that on fewer queries, for curves only a live plot shows (measured: about 4 s per scoring for
        # the champion on 2 threads).
        "--model.generate_per_task=0",
        *extra,
    ]  # fmt: skip
    if gpus is not None:
        cmd += [f"--trainer.devices={len(gpus.split(','))}"]
    print(
        f"[ablation] {experiment} seed {seed}: training ({profile} profile, {threads} thread(s)), log {log}",
        flush=True,
    )
    return _launch(cmd, log, threads, gpus)


def _start_evaluation(run: tuple[str, int], output_root: Path, per_task: int, threads: int):
    """Launch the report's evaluation of one trained run; it caches the scores the report then reuses."""
    experiment, seed = run
    log = output_root / "runs" / experiment / f"seed_{seed}" / "evaluation.log"
    cmd = [
        sys.executable, "-m", "arclib", "report", *report_args(output_root, per_task),
        "--evaluate-run", f"{experiment}/{seed}",
    ]  # fmt: skip
    print(f"[ablation] {experiment} seed {seed}: evaluating for the report, log {log}", flush=True)
    return _launch(cmd, log, threads, None)


def _status(output_root: Path, running: dict) -> str:
    """One line: each running run's validated epochs and latest held-out loss, from its CSV log."""
    from arclib.evaluation.report import latest_csv

    parts = []
    for (experiment, seed), (_, _, began, *_) in running.items():
        path = latest_csv(output_root / "runs", experiment, seed)
        rows = []
        if path is not None and path.stat().st_mtime >= began:  # not a CSV of an earlier run
            with open(path) as f:
                rows = [r for r in csv.DictReader(f) if r.get("heldout_loss")]
        name = f"{experiment}/seed_{seed}"
        if rows:
            epoch, loss = int(float(rows[-1]["epoch"])) + 1, float(rows[-1]["heldout_loss"])
            parts.append(f"{name}: epoch {epoch}, heldout_loss {loss:.3f}")
        else:
            parts.append(f"{name}: not validated yet")
    return "; ".join(parts)


def _exit_on_sigterm(signum, frame) -> None:
    signal.signal(signum, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
    raise SystemExit(128 + signum)  # unwinds through `finally`, which stops the runs this process started


@contextlib.contextmanager
def _sigterm_exits():
    """While inside, SIGTERM (`kill`, a scheduler) raises SystemExit; the handler found is restored after."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


@_sigterm_exits()  # stopped by `kill` or a scheduler, it stops its runs too instead of orphaning them
def train_experiments(
    experiments: list[str],
    profile: str,
    output_root: Path,
    extra: list[str],
    jobs: int,
    on_done=None,
    seed_list: list[int] = (FIRST_SEED,),
    gpu_slots: list[str] | None = None,
    evaluate_per_task: int | None = None,
) -> dict[tuple[str, int], float]:
    """Train every (experiment, seed), `jobs` at a time (with `gpu_slots`: one run per slot of GPUs);
    {(experiment, seed): wall seconds}. Raises AblationError naming every failed run (with the end of its
    log) after the others have finished.

    With `evaluate_per_task`, a trained run's report evaluation goes next in the queue (after the evaluations
    already waiting), so it runs beside the runs still training instead of after all of them, and the last
    slots do not idle while one run finishes. Evaluation runs on the CPU, so with `gpu_slots` it is left to
    the report. An evaluation that fails is only reported: the report tries that run again.
    `on_done(kind, run, seconds, threads)` is called as each job ("train" or "evaluate") succeeds.
    """
    jobs = len(gpu_slots) if gpu_slots else jobs
    if gpu_slots:
        evaluate_per_task = None
    threads = max(1, (os.cpu_count() or 1) // jobs)
    pending = [("train", (e, s)) for s in seed_list for e in experiments]
    running, seconds, failures = {}, {}, []
    start = last_status = time.time()
    try:
        while pending or running:
            while pending and len(running) < jobs:
                kind, run = job = pending.pop(0)
                taken = {slot for *_, slot in running.values()}
                slot = next(g for g in gpu_slots if g not in taken) if gpu_slots else None
                if kind == "train":
                    started = _start(run, profile, output_root, extra, threads, slot)
                else:
                    started = _start_evaluation(run, output_root, evaluate_per_task, threads)
                running[job] = (*started, slot)
            time.sleep(0.5)
            if time.time() - last_status > STATUS_EVERY_S:
                last_status = time.time()
                elapsed = (last_status - start) / 60
                training = {run: v for (kind, run), v in running.items() if kind == "train"}
                evaluating = len(running) - len(training)
                status = [_status(output_root, training)] if training else []
                status += [f"evaluating {evaluating} run(s) for the report"] if evaluating else []
                print(f"[ablation] {elapsed:.1f} min: {'; '.join(status)}", flush=True)
            for job, (process, log, began, _) in list(running.items()):
                if process.poll() is None:
                    continue
                del running[job]
                kind, run = job
                name = f"{run[0]} seed {run[1]}"
                if process.returncode != 0:
                    if kind == "evaluate":
                        print(
                            f"[ablation] {name}: evaluation FAILED, see {log}; the report tries again",
                            flush=True,
                        )
                        continue
                    tail = log.read_text()[-3000:]
                    failures.append(f"{name} failed (exit {process.returncode}); end of {log}:\n{tail}")
                    print(f"[ablation] {name}: FAILED, see {log}", flush=True)
                    continue
                took = time.time() - began
                print(f"[ablation] {name}: {'done' if kind == 'train' else 'evaluated'} in {took / 60:.1f} min",
                      flush=True)  # fmt: skip
                if kind == "train":
                    seconds[run] = took
                    if evaluate_per_task is not None:
                        waiting = sum(k == "evaluate" for k, _ in pending)
                        pending.insert(waiting, ("evaluate", run))
                if on_done:
                    on_done(kind, run, took, threads)
    finally:
        for process, *_ in running.values():  # interrupted: stop the children too
            process.terminate()
        deadline = time.time() + 30  # for all of them together
        for process, *_ in running.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                process.kill()
    if failures:
        raise AblationError("\n\n".join(failures))
    return seconds


def train_here(
    experiments: list[str], profile: str, output_root: Path, extra: list[str], seed_list: list[int]
) -> None:
    """Train each (experiment, seed) in turn in this process, into the folders `train_experiments` uses: for
    runs of seconds (smoke mode in a notebook), where a new process per run would cost more than its training."""
    from arclib.training.cli import load_experiment

    for seed in seed_list:
        for experiment in experiments:
            run = load_experiment(
                experiment, profile, "--output_root", str(output_root), f"--seed_everything={seed}",
                "--trainer.enable_progress_bar=false", *extra,
            )  # fmt: skip
            run.trainer.fit(run.model, datamodule=run.datamodule)


def run_analysis_notebook(output_root: Path, profile: str) -> Path:
    """Execute the analysis notebook top to bottom; it writes checkpoints/ablation_results.{json,md}."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ANALYSIS_NOTEBOOK, as_version=4)
    env = {"ARCLIB_OUTPUT_ROOT": str(output_root), "ARCLIB_PROFILE": profile}
    os.environ.update(env)
    NotebookClient(
        nb,
        timeout=3600,
        kernel_name="python3",
        resources={"metadata": {"path": str(ANALYSIS_NOTEBOOK.parent)}},
    ).execute()
    executed = output_root / "checkpoints" / "analysis_executed.ipynb"
    executed.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, executed)
    return executed


def main(argv: list[str] | None = None) -> int:
    from arclib.evaluation import report

    parser = argparse.ArgumentParser(prog="python -m arclib ablation", description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--profile", default="cpu", choices=PROFILES)
    parser.add_argument("--experiments", nargs="+", default=list(ABLATION_ARMS), choices=ABLATION_ARMS)
    parser.add_argument(
        "--seeds", type=int, default=DEFAULT_SEEDS, help=f"seeds per experiment, from {FIRST_SEED}"
    )
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="runs trained at once")
    parser.add_argument(
        "--gpus-per-run", type=int, default=None,
        help="CUDA GPUs per run: runs go side by side, one per group of GPUs "
             "(default: 1 with the gpu profile, so one run per GPU; otherwise no GPU placement)",
    )  # fmt: skip
    parser.add_argument("--output-root", default=str(REPO_ROOT), help="folder for checkpoints/ and runs/")
    parser.add_argument(
        "--skip-training", action="store_true", help="only write the report (and the notebook)"
    )
    parser.add_argument("--skip-notebook", action="store_true", help="do not run the analysis notebook")
    args, extra = parser.parse_known_args(argv)
    if not extra and args.profile in VALIDATE_EVERY_N_EPOCHS:
        extra = [f"--trainer.check_val_every_n_epoch={VALIDATE_EVERY_N_EPOCHS[args.profile]}"]
    try:
        seed_list = seeds(args.seeds)
    except ValueError as e:
        parser.error(str(e))
    slots = None
    if not args.skip_training and (args.profile == "gpu" or args.gpus_per_run is not None):
        import torch

        if args.profile == "gpu" and not torch.cuda.is_available():
            parser.error("the gpu profile needs a CUDA GPU and none is visible here; use --profile cpu")
        try:
            slots = gpu_slots(
                torch.cuda.device_count(), 1 if args.gpus_per_run is None else args.gpus_per_run
            )
        except ValueError as e:
            parser.error(str(e))
    output_root = Path(args.output_root).resolve()
    timing_path = output_root / "checkpoints" / "ablation_timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    start = time.perf_counter()

    def record(kind: str, run: tuple[str, int], seconds: float, threads: int) -> None:
        if kind == "train":  # a new run: its earlier evaluation time no longer applies
            timing[f"{run[0]}/seed_{run[1]}"] = {}
        timing[f"{run[0]}/seed_{run[1]}"] |= {
            "profile": args.profile,
            f"{kind}_seconds": round(seconds, 1),
            "threads": threads,
        }
        atomic_write_text(timing_path, json.dumps(timing, indent=1) + "\n")

    failures = []
    per_task = EVAL_PER_TASK[args.profile]
    if not args.skip_training:
        try:
            train_experiments(
                args.experiments, args.profile, output_root, extra, max(1, args.jobs), record, seed_list,
                gpu_slots=slots, evaluate_per_task=per_task,
            )  # fmt: skip
        except AblationError as e:
            failures.append(str(e))  # the report still covers the runs that trained
        timing["train_and_evaluate_seconds"] = round(time.perf_counter() - start, 1)
    print("[ablation] writing the report", flush=True)
    report_start = time.perf_counter()
    if report.main(report_args(output_root, per_task)) != 0:
        failures.append("the report could not be written (see above)")
    notebook_start = time.perf_counter()
    timing["report_seconds"] = round(notebook_start - report_start, 1)
    if not args.skip_notebook:
        print("[ablation] running the analysis notebook", flush=True)
        try:
            executed = run_analysis_notebook(output_root, args.profile)
            print(f"[ablation] executed notebook {executed}")
        except Exception as e:  # the report is already written; say what failed
            failures.append(f"the analysis notebook failed: {type(e).__name__}: {str(e)[-2000:]}")
        timing["notebook_seconds"] = round(time.perf_counter() - notebook_start, 1)
    total = time.perf_counter() - start
    timing["total_seconds"] = round(total, 1)
    atomic_write_text(timing_path, json.dumps(timing, indent=1) + "\n")
    md = output_root / "checkpoints" / "ablation_results.md"
    print(f"[ablation] finished in {total / 60:.1f} min; report {md}")
    if md.exists():
        print(md.read_text())
    for failure in failures:
        print(f"[ablation] {failure}", file=sys.stderr)
    return 1 if failures else 0

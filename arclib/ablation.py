"""The main job: train every experiment in a profile, then run the analysis notebook, which writes the report.

    python -m arclib ablation --profile cpu          (what `make ablation` runs)

Each experiment trains in its own process (`python -m arclib fit ...`), so one crash loses only that run,
and its log goes to runs/ablation_<profile>/<experiment>.log. Wall times go to checkpoints/ablation_timing.json.

Experiments run `--jobs` at a time, each on cores // jobs threads. Small-batch CPU training uses a second
thread poorly, so two single-threaded runs side by side finish sooner than two two-threaded runs in turn.
Experiments start in MODEL_NAMES order, which puts the slowest (the decoder-only) first: its lane stays busy
while the other lane trains the rest.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from arclib.fileio import atomic_write_text
from arclib.models import MODEL_NAMES
from arclib.training.cli import CONFIG_DIR, PROFILES, REPO_ROOT

ANALYSIS_NOTEBOOK = REPO_ROOT / "notebooks" / "08_analysis.ipynb"
STATUS_EVERY_S = 120


class AblationError(RuntimeError):
    """One or more experiments failed; the others' checkpoints and the report are kept."""


def default_jobs() -> int:
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def _start(experiment: str, profile: str, output_root: Path, extra: list[str], threads: int):
    log = output_root / "runs" / f"ablation_{profile}" / f"{experiment}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "arclib", "fit",
        "--config", str(CONFIG_DIR / f"{experiment}.yaml"),
        "--config", str(CONFIG_DIR / "profiles" / f"{profile}.yaml"),
        "--output_root", str(output_root),
        "--trainer.enable_progress_bar=false",
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    print(
        f"[ablation] {experiment}: training ({profile} profile, {threads} thread(s)), log {log}", flush=True
    )
    with open(log, "w") as f:
        process = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
    return process, log, time.time()


def _status(output_root: Path, running: dict) -> str:
    """One line: each running experiment's validated epochs and latest held-out loss, from its CSV log."""
    from arclib.viz.report import latest_metrics_csv  # here: it imports matplotlib

    parts = []
    for experiment, (_, _, began) in running.items():
        path = latest_metrics_csv(output_root / "runs", experiment)
        rows = []
        if path is not None and path.stat().st_mtime >= began:  # not a CSV of an earlier run
            with open(path) as f:
                rows = [r for r in csv.DictReader(f) if r.get("heldout_loss")]
        if rows:
            parts.append(
                f"{experiment}: {len(rows)} epoch(s), heldout_loss {float(rows[-1]['heldout_loss']):.3f}"
            )
        else:
            parts.append(f"{experiment}: first epoch")
    return "; ".join(parts)


def train_experiments(
    experiments: list[str], profile: str, output_root: Path, extra: list[str], jobs: int, on_done=None
) -> dict[str, float]:
    """Train `experiments`, `jobs` at a time; {experiment: wall seconds}. Raises AblationError naming every
    failed experiment (with the end of its log) after the others have finished."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    pending, running, seconds, failures = list(experiments), {}, {}, []
    start = last_status = time.time()
    try:
        while pending or running:
            while pending and len(running) < jobs:
                experiment = pending.pop(0)
                running[experiment] = _start(experiment, profile, output_root, extra, threads)
            time.sleep(0.5)
            if time.time() - last_status > STATUS_EVERY_S:
                last_status = time.time()
                elapsed = (last_status - start) / 60
                print(f"[ablation] {elapsed:.1f} min: {_status(output_root, running)}", flush=True)
            for experiment, (process, log, began) in list(running.items()):
                if process.poll() is None:
                    continue
                del running[experiment]
                if process.returncode != 0:
                    tail = log.read_text()[-3000:]
                    failures.append(f"{experiment} failed (exit {process.returncode}); end of {log}:\n{tail}")
                    print(f"[ablation] {experiment}: FAILED, see {log}", flush=True)
                    continue
                seconds[experiment] = time.time() - began
                print(f"[ablation] {experiment}: done in {seconds[experiment] / 60:.1f} min", flush=True)
                if on_done:
                    on_done(experiment, seconds[experiment], threads)
    finally:
        for process, _, _ in running.values():  # interrupted: stop the children too
            process.terminate()
    if failures:
        raise AblationError("\n\n".join(failures))
    return seconds


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
    parser = argparse.ArgumentParser(prog="python -m arclib ablation", description=__doc__)
    parser.add_argument("--profile", default="cpu", choices=PROFILES)
    parser.add_argument("--experiments", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="experiments trained at once")
    parser.add_argument("--output-root", default=str(REPO_ROOT), help="folder for checkpoints/ and runs/")
    parser.add_argument("--skip-training", action="store_true", help="only run the analysis")
    args, extra = parser.parse_known_args(argv)
    output_root = Path(args.output_root).resolve()
    timing_path = output_root / "checkpoints" / "ablation_timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    start = time.perf_counter()

    def record(experiment: str, seconds: float, threads: int) -> None:
        timing[experiment] = {"profile": args.profile, "train_seconds": round(seconds, 1), "threads": threads}
        atomic_write_text(timing_path, json.dumps(timing, indent=1) + "\n")

    failure = None
    if not args.skip_training:
        try:
            train_experiments(args.experiments, args.profile, output_root, extra, max(1, args.jobs), record)
        except AblationError as e:
            failure = e  # the analysis still reports the experiments that trained
        timing["train_seconds"] = round(time.perf_counter() - start, 1)
    print("[ablation] running the analysis notebook", flush=True)
    analysis_start = time.perf_counter()
    executed = run_analysis_notebook(output_root, args.profile)
    timing["analysis_seconds"] = round(time.perf_counter() - analysis_start, 1)
    total = time.perf_counter() - start
    timing["total_seconds"] = round(total, 1)
    atomic_write_text(timing_path, json.dumps(timing, indent=1) + "\n")
    report = output_root / "checkpoints" / "ablation_results.md"
    print(f"[ablation] finished in {total / 60:.1f} min; report {report}; executed notebook {executed}")
    if report.exists():
        print(report.read_text())
    if failure:
        print(f"[ablation] {failure}", file=sys.stderr)
        return 1
    return 0

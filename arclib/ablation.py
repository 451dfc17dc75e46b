"""The main job: train every experiment in a profile, then run the analysis notebook, which writes the report.

    python -m arclib ablation --profile cpu          (what `make ablation` runs)

Each experiment trains in its own process (`python -m arclib fit ...`), so one crash loses only that run,
and its log goes to runs/ablation_<profile>/<experiment>.log. Wall times go to checkpoints/ablation_timing.json.
"""

from __future__ import annotations

import argparse
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


def train_experiment(experiment: str, profile: str, output_root: Path, extra: list[str]) -> float:
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
    print(f"[ablation] {experiment}: training ({profile} profile), log {log}", flush=True)
    start = time.perf_counter()
    with open(log, "w") as f:
        result = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"{experiment} failed (exit {result.returncode}); end of {log}:\n{tail}")
    print(f"[ablation] {experiment}: done in {seconds / 60:.1f} min", flush=True)
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
    parser.add_argument("--output-root", default=str(REPO_ROOT), help="folder for checkpoints/ and runs/")
    parser.add_argument("--skip-training", action="store_true", help="only run the analysis")
    args, extra = parser.parse_known_args(argv)
    output_root = Path(args.output_root).resolve()
    timing_path = output_root / "checkpoints" / "ablation_timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    start = time.perf_counter()
    if not args.skip_training:
        for experiment in args.experiments:
            seconds = train_experiment(experiment, args.profile, output_root, extra)
            timing[experiment] = {"profile": args.profile, "train_seconds": round(seconds, 1)}
            atomic_write_text(timing_path, json.dumps(timing, indent=1) + "\n")
    print("[ablation] running the analysis notebook", flush=True)
    executed = run_analysis_notebook(output_root, args.profile)
    total = time.perf_counter() - start
    timing["total_seconds"] = round(total, 1)
    atomic_write_text(timing_path, json.dumps(timing, indent=1) + "\n")
    report = output_root / "checkpoints" / "ablation_results.md"
    print(f"[ablation] finished in {total / 60:.1f} min; report {report}; executed notebook {executed}")
    if report.exists():
        print(report.read_text())
    return 0

"""Command line: `python -m arclib <command>`.

tasks verify            every solver against every real ARC-AGI-1 pair of its task
data generate | check   write or validate data/tasks, data/heldout and data/splits
models                  parameter counts of the five models
fit ...                 LightningCLI training (python -m arclib fit --config configs/exp_3_champion.yaml)
                        (python -m arclib fit --help: the common options; --help-full: all of them)
evaluate ...            ARC-style scoring of a checkpoint (pass@2, voting, test-time training)
bench                   training and generation throughput of each experiment
ablation                train every experiment in a profile and write the analysis report
report                  rebuild checkpoints/ablation_results.{json,md} from existing runs (no training)
tune                    Optuna hyperparameter search (python -m arclib tune --experiment NAME --trials N)
"""

from __future__ import annotations

import argparse
import sys


def _tasks(args) -> int:
    from arclib.data.verify import verification_report, verify_all

    results = verify_all()
    print(verification_report(results))
    return 0 if all(r.ok for r in results) else 1


def _data(args) -> int:
    from pathlib import Path

    from arclib.data.generate import DATA_DIR, check_data, generate_data
    from arclib.data.split import SPLIT_STRATEGIES, task_split, write_split

    data_dir = Path(args.data_dir) if args.data_dir else DATA_DIR
    if args.action == "generate":
        manifest = generate_data(data_dir, n=args.n, seed=args.seed, widen=args.widen)
        for strategy in SPLIT_STRATEGIES:
            write_split(task_split(strategy), data_dir / "splits")
        print(f"wrote {len(manifest['files'])} files under {data_dir} ({manifest['arc_dataset']})")
        return 0
    check = check_data(data_dir)
    print(check.table())
    for p in check.problems:
        print(p, file=sys.stderr)
    print(f"data check: {'OK' if not check.problems else f'{len(check.problems)} problem(s)'} in {data_dir}")
    return 1 if check.problems else 0


def _models(args) -> int:
    from arclib.models import parameter_table

    print(parameter_table())
    return 0


def _fit(argv: list[str]) -> int:
    """LightningCLI training. Bad input and a diverged run end with one `error:` line, not a traceback:
    exit 2 for input (nothing was written), 1 for a run that diverged."""
    from arclib.data.grids import GridError
    from arclib.training.callbacks import RunLockedError
    from arclib.training.checkpoints import CheckpointError, DivergenceError
    from arclib.training.cli import dashes_to_underscores, fit_help, make_cli

    if "-h" in argv or "--help" in argv:
        print(fit_help())
        return 0
    argv = dashes_to_underscores(["--help" if a == "--help-full" else a for a in argv])
    try:
        make_cli(["fit", *argv])
    except DivergenceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (GridError, CheckpointError, RunLockedError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("fit", "evaluate", "bench", "ablation", "report", "tune"):
        from arclib.viz.live import quiet_lightning

        quiet_lightning(keep_info=True)  # Lightning's accelerator banners and advert say nothing here
    if argv and argv[0] == "fit":  # LightningCLI parses its own arguments
        return _fit(argv[1:])
    if argv and argv[0] in ("evaluate", "bench", "ablation", "report", "tune"):
        import importlib

        module = {
            "evaluate": "arclib.evaluation.cli",
            "bench": "arclib.bench",
            "ablation": "arclib.ablation",
            "report": "arclib.evaluation.report",
            "tune": "arclib.training.tune",
        }[argv[0]]
        return importlib.import_module(module).main(argv[1:])

    parser = argparse.ArgumentParser(
        prog="python -m arclib",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    tasks = sub.add_parser("tasks", help="task solvers", allow_abbrev=False)
    tasks.add_argument("action", choices=["verify"])
    tasks.set_defaults(func=_tasks)
    data = sub.add_parser("data", help="generated data", allow_abbrev=False)
    data.add_argument("action", choices=["generate", "check"])
    data.add_argument("--data-dir", default=None)
    data.add_argument("--n", type=int, default=400, help="examples per task")
    data.add_argument("--seed", type=int, default=307)
    data.add_argument(
        "--widen", type=float, default=0.0, help="0 = like the real tasks, up to 1 = wider ranges"
    )
    data.set_defaults(func=_data)
    models = sub.add_parser("models", help="parameter table")
    models.set_defaults(func=_models)
    for name in ("fit", "evaluate", "bench", "ablation", "report", "tune"):
        sub.add_parser(name, help=f"see python -m arclib {name} --help")
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

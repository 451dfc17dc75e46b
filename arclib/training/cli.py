"""LightningCLI for headless runs; notebooks build the very same objects through `load_experiment`.

    python -m arclib fit --config configs/exp_3_champion.yaml --config configs/profiles/cpu.yaml

configs/base.yaml is always read first. Its placeholders ${experiment}, ${seed}, ${monitor} and ${output_root}
are filled in here, so every run directory and checkpoint folder is named by experiment and seed.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from lightning.pytorch.cli import LightningCLI

from arclib.training.datamodule import ArcDataModule
from arclib.training.module import ArcLitModule

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "configs"
PROFILES = ("smoke", "cpu", "full")


def default_precision() -> str:
    # fp16 autocast on CUDA; on CPU mixed precision runs as bf16, which this kind of CPU executes ~10x slower.
    return "16-mixed" if torch.cuda.is_available() else "32-true"


def _fill(value, subs: dict[str, str]):
    if isinstance(value, str):
        for key, sub in subs.items():
            value = value.replace("${" + key + "}", sub)
        return value
    if isinstance(value, list):
        return [_fill(v, subs) for v in value]
    if hasattr(value, "items"):  # jsonargparse Namespace or dict
        for key, v in list(value.items()):
            value[key] = _fill(v, subs)
        return value
    return value


def _share_log_version(loggers) -> None:
    """TensorBoard and CSV logs of one run share one version_N folder (each logger would pick its own)."""
    if not isinstance(loggers, list) or not loggers:
        return
    args = [lg.init_args for lg in loggers if hasattr(lg, "init_args")]
    if not args or any(a.get("version") is not None for a in args):
        return
    run_dir = Path(args[0].save_dir) / args[0].name
    taken = [int(p.name.split("_")[1]) for p in run_dir.glob("version_*") if p.name.split("_")[1].isdigit()]
    for a in args:
        a.version = f"version_{max(taken, default=-1) + 1}"


class ArcCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--monitor", default="val_loss", choices=["val_loss", "heldout_loss"])
        parser.add_argument(
            "--checkpoint_every_n_steps", type=int, default=50, help="mid-epoch last.ckpt interval"
        )
        parser.add_argument(
            "--output_root", default=None, help="folder for checkpoints/ and runs/ (default: repo root)"
        )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        subs = {
            "experiment": config.model.model_name,
            "seed": str(config.seed_everything),
            "monitor": config.monitor,
            "output_root": str(Path(config.output_root or REPO_ROOT).resolve()),
        }
        config.trainer.callbacks = _fill(config.trainer.callbacks, subs)
        for callback in config.trainer.callbacks or []:
            if callback.class_path.endswith("PeriodicCheckpoint"):
                callback.init_args.every_n_steps = config.checkpoint_every_n_steps
        _share_log_version(config.trainer.logger)
        config.trainer.logger = _fill(config.trainer.logger, subs)
        config.trainer.default_root_dir = _fill(config.trainer.default_root_dir, subs)
        if config.data.seed is None:  # episodes follow the run's seed unless given their own
            config.data.seed = int(config.seed_everything)
        if config.trainer.precision is None:
            config.trainer.precision = default_precision()


def make_cli(args: list[str] | None = None, run: bool = True) -> ArcCLI:
    base = {"default_config_files": [str(CONFIG_DIR / "base.yaml")]}
    with warnings.catch_warnings():  # in a notebook sys.argv holds the kernel's own arguments, not ours
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return ArcCLI(
            ArcLitModule,
            ArcDataModule,
            args=args,
            run=run,
            parser_kwargs=base if not run else {cmd: base for cmd in ("fit", "validate", "test", "predict")},
            save_config_kwargs={"overwrite": True},
        )


def load_experiment(experiment: str, profile: str = "cpu", *overrides: str) -> ArcCLI:
    """Trainer, model and datamodule of an experiment, from the same YAML files the CLI reads.

    Returns the (not yet run) CLI: use `.trainer.fit(.model, datamodule=.datamodule)`. `overrides` are extra
    command-line style arguments such as "--trainer.max_epochs=3".
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES}")
    path = CONFIG_DIR / f"{experiment}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in CONFIG_DIR.glob("exp_*.yaml"))
        raise FileNotFoundError(f"{path}: no such experiment config; known: {', '.join(known)}")
    return make_cli(
        ["--config", str(path), "--config", str(CONFIG_DIR / "profiles" / f"{profile}.yaml"), *overrides],
        run=False,
    )

"""LightningCLI for headless runs; notebooks build the very same objects through `load_experiment`.

    python -m arclib fit --config configs/exp_3_champion.yaml --config configs/profiles/cpu.yaml

configs/base.yaml is always read first. Its placeholders ${experiment}, ${seed}, ${monitor} and ${output_root}
are filled in here, so every run directory and checkpoint folder is named by experiment and seed. Every setting
is checked before anything is built or written (arclib.training.validation); `fit` then loads the data, checks
the output folders are writable and takes the run's lock before the Trainer starts.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import warnings
from pathlib import Path

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from arclib.data.split import SPLIT_STRATEGIES
from arclib.models import ABLATION_ARMS, count_parameters
from arclib.training.callbacks import LOG_VERSION_KEY, acquire_run_lock
from arclib.training.checkpoints import CheckpointError, load_checkpoint
from arclib.training.datamodule import ArcDataModule
from arclib.training.module import ArcLitModule
from arclib.training.precision import resolve_precision
from arclib.training.validation import ConfigError, check_data_hparams, check_module_hparams

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "configs"
PROFILES = ("smoke", "cpu", "full", "gpu")
MONITORS = ("val_loss", "heldout_loss")
VERSION_ENV = "ARCLIB_LOG_VERSION"  # the version rank 0 chose, for the DDP processes it launches


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


def _is_launched_rank() -> bool:
    """A process that Lightning's DDP launcher started for a rank other than 0 (it re-runs this CLI)."""
    return int(os.environ.get("LOCAL_RANK", 0)) > 0 or int(os.environ.get("NODE_RANK", 0)) > 0


def _next_version(run_dir: Path) -> str:
    taken = [int(p.name.split("_")[1]) for p in run_dir.glob("version_*") if p.name.split("_")[1].isdigit()]
    return f"version_{max(taken, default=-1) + 1}"


def _share_log_version(loggers, resumed_version: str | None) -> None:
    """All loggers of one run write to one version_N folder of the (filled-in) run path: the resumed run's own,
    else the next free one (each logger would otherwise pick its own, or all version_0)."""
    if not isinstance(loggers, list) or not loggers:
        return
    args = [lg.init_args for lg in loggers if hasattr(lg, "init_args")]
    if not args or any(a.get("version") is not None for a in args):
        return
    version = resumed_version
    if version is None and _is_launched_rank():
        version = os.environ.get(VERSION_ENV)
    if version is None:
        version = _next_version(Path(args[0].save_dir) / args[0].name)
    os.environ[VERSION_ENV] = version
    for a in args:
        a.version = version


def _callback_args(config, name: str):
    return [c.init_args for c in config.trainer.callbacks or [] if c.class_path.endswith(name)]


def _check_trainer(config) -> None:
    max_epochs = config.trainer.max_epochs
    if max_epochs is not None and max_epochs != -1 and max_epochs < 1:
        raise ConfigError(f"trainer.max_epochs: {max_epochs} must be >= 1 (or -1 for no limit)")
    if config.checkpoint_every_n_steps < 1:
        raise ConfigError(f"checkpoint_every_n_steps: {config.checkpoint_every_n_steps} must be >= 1")
    if config.monitor not in MONITORS:
        raise ConfigError(f"monitor: {config.monitor!r} is not one of {', '.join(MONITORS)}")


def _resume_path(ckpt_path, checkpoint_dir: Path) -> Path | None:
    """The checkpoint a `--ckpt_path` names ("last": this run's last.ckpt); it must exist and load."""
    if ckpt_path is None:
        return None
    path = checkpoint_dir / "last.ckpt" if ckpt_path == "last" else Path(ckpt_path)
    if ckpt_path in ("best", "hpc", "registry"):
        raise ConfigError(f"--ckpt-path {ckpt_path}: to resume a run use 'last' or a checkpoint file")
    if not path.is_file():
        raise ConfigError(
            f"--ckpt-path {ckpt_path}: no checkpoint at {path}; leave --ckpt-path out to start a new run"
        )
    return path


def _check_writable(folder: Path, option: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ConfigError(f"{option}: cannot write to {folder} ({e.strerror or e})") from None


def fit_help() -> str:
    """The short `fit --help`: what the command does and the options most runs need, with their choices."""
    return f"""usage: python -m arclib fit --config configs/EXPERIMENT.yaml [--config configs/profiles/PROFILE.yaml] [options]

Train one experiment with Lightning. configs/base.yaml (the Trial 69 recipe, callbacks, loggers) is read first,
then each --config in order, then the options. Every value is checked before anything is written. At the end
it prints where the best checkpoint, the checkpoints and the logs went:
checkpoints/<experiment>/seed_<seed>/ and runs/<experiment>/seed_<seed>/version_N/ under --output-root.

common options (all flags are written with dashes; --trainer.max-epochs and --trainer.max_epochs are one flag):
  --config FILE                experiment: configs/{{{",".join(ABLATION_ARMS)}}}.yaml
                               profile: configs/profiles/{{{",".join(PROFILES)}}}.yaml
  --model.preset NAME          matched | seed | tiny (seed: exp_-1_decoder_only only)
  --model.lr FLOAT             learning rate (> 0)
  --data.split NAME            {" | ".join(SPLIT_STRATEGIES)}
  --data.batch-size N          episodes per batch (>= 1)
  --data.train-per-task N      training queries per task and epoch (>= 1; default: all)
  --monitor NAME               {" | ".join(MONITORS)}: picks checkpoints and stops early
  --seed-everything N          the run's seed (default 307; names the seed_N folders)
  --trainer.max-epochs N       epochs (>= 1)
  --output-root DIR            folder for checkpoints/ and runs/ (default: the repository)
  --checkpoint-every-n-steps N also save last.ckpt every N steps (>= 1)
  --ckpt-path last|FILE        resume: last = checkpoints/<experiment>/seed_<seed>/last.ckpt
  --print-config               print the resolved configuration and exit

every option, Lightning's included: python -m arclib fit --help-full
"""


def dashes_to_underscores(argv: list[str]) -> list[str]:
    """`--trainer.max-epochs=3` -> `--trainer.max_epochs=3`: one flag style (dashes) across arclib's commands."""
    out = []
    for arg in argv:
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            arg = "--" + name.replace("-", "_") + eq + value
        out.append(arg)
    return out


class ArcArgumentParser(LightningArgumentParser):
    """One-line errors (the full usage is hundreds of lines), and no abbreviated option names."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("prog", "python -m arclib")
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:
            return super().error(message, ex)
        message = re.sub(r"\s+", " ", str(message)).strip()
        sys.stderr.write(f"error: {message} (see python -m arclib fit --help)\n")
        sys.exit(2)


class ArcCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--monitor", default="val_loss", choices=list(MONITORS))
        parser.add_argument(
            "--checkpoint_every_n_steps", type=int, default=50, help="mid-epoch last.ckpt interval"
        )
        parser.add_argument(
            "--output_root", default=None, help="folder for checkpoints/ and runs/ (default: repo root)"
        )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        check_module_hparams(dict(config.model))
        check_data_hparams(config.data)
        _check_trainer(config)
        seed = int(config.seed_everything)
        subs = {
            "experiment": config.model.model_name,
            "seed": str(seed),
            "monitor": config.monitor,
            "output_root": str(Path(config.output_root or REPO_ROOT).resolve()),
        }
        config.trainer.callbacks = _fill(config.trainer.callbacks, subs)
        for args in _callback_args(config, "PeriodicCheckpoint"):
            args.every_n_steps = config.checkpoint_every_n_steps
        for args in _callback_args(config, "StepSeed"):
            args.seed = seed
        config.trainer.logger = _fill(config.trainer.logger, subs)
        config.trainer.default_root_dir = _fill(config.trainer.default_root_dir, subs)
        checkpoints = _callback_args(config, "ModelCheckpoint")
        self.checkpoint_dir = Path(
            checkpoints[0].dirpath
            if checkpoints
            else f"{subs['output_root']}/checkpoints/{subs['experiment']}/seed_{seed}"
        )
        resumed_version = None
        if self.subcommand == "fit":
            resume = _resume_path(config.ckpt_path, self.checkpoint_dir)
            if resume is not None:
                config.ckpt_path = str(resume)
                try:
                    resumed_version = load_checkpoint(resume).get(LOG_VERSION_KEY)
                except CheckpointError as e:
                    raise ConfigError(f"--ckpt-path: {e}") from None
        _share_log_version(config.trainer.logger, resumed_version)
        if config.data.seed is None:  # episodes follow the run's seed unless given their own
            config.data.seed = seed
        if config.trainer.precision is None:
            accelerator = config.trainer.accelerator
            config.trainer.precision = resolve_precision(
                accelerator if isinstance(accelerator, str) else "auto"
            )

    def before_fit(self) -> None:
        """Everything that can fail before training fails here, before a log or checkpoint file exists."""
        self.datamodule.setup("fit")
        if not _is_launched_rank():
            try:
                acquire_run_lock(self.checkpoint_dir)
            except OSError as e:
                raise ConfigError(
                    f"checkpoints: cannot write to {self.checkpoint_dir} ({e.strerror or e})"
                ) from None
        _check_writable(self.checkpoint_dir, "checkpoints")
        for folder in {Path(lg.log_dir).parent for lg in self.trainer.loggers}:
            _check_writable(folder, "logs")
        if not _is_launched_rank():  # in place of Lightning's model summary, whose FLOPs column reads 0 here
            model = self.model.model
            print(
                f"{self.model.hparams.model_name}: {type(model).__name__}, {count_parameters(model):,} parameters"
            )

    def after_fit(self) -> None:
        if self.trainer.global_rank != 0:
            return
        best = self.trainer.checkpoint_callback.best_model_path if self.trainer.checkpoint_callback else ""
        print(f"best checkpoint: {best or '(none)'}")
        print(f"checkpoints:     {self.checkpoint_dir}")
        print(f"logs:            {self.trainer.loggers[0].log_dir if self.trainer.loggers else '(none)'}")


def make_cli(args: list[str] | None = None, run: bool = True) -> ArcCLI:
    base = {"default_config_files": [str(CONFIG_DIR / "base.yaml")]}
    with warnings.catch_warnings():  # in a notebook sys.argv holds the kernel's own arguments, not ours
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return ArcCLI(
            ArcLitModule,
            ArcDataModule,
            parser_class=ArcArgumentParser,
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

"""Hyperparameter search with Optuna: the kind of study that a "Trial 69" comes from.

    python -m arclib tune --experiment exp_3_champion --trials 20 --profile cpu [--study NAME]

A trial writes its sampled values as a config file and trains through `load_experiment` (base.yaml, the
experiment, the profile, then that file): the very objects `python -m arclib fit` builds, so what is tuned
transfers. Its objective is the lowest `heldout_loss` over its epochs (the loss that selects checkpoints),
reported each epoch so that bad trials are pruned. Free generation is switched off in trials: it does not touch
training, and it is the slow part of a short run. The study's first trial is the recipe itself (Trial 69 with
the profile's budget), so every study carries its own baseline.

The study lives in SQLite (runs/hpo/<study>.db) and is loaded if it exists: a killed `tune` is resumed by
running it again, and several `tune` processes on one study share the work. `--trials N` asks for N finished
(completed or pruned) trials in all. Each trial writes under runs/hpo/<study>/trial_<n>/ (its config.yaml,
checkpoints/ and runs/), and the best one is written to configs/hpo/best_<study>.yaml for `fit` and `ablation`.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import socket
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy
import yaml
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback

from arclib.fileio import atomic_write_text
from arclib.models import ABLATION_ARMS
from arclib.training.cli import CONFIG_DIR, REPO_ROOT, load_experiment
from arclib.training.module import NonFiniteLossError

SEARCH_SPACE = CONFIG_DIR / "hpo" / "search_space.yaml"
OBJECTIVE = "heldout_loss"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# A killed process's running trial is marked failed (and queued again with the same values) once its heartbeat
# is older than the grace period; long enough that a busy but live process is never taken for a dead one.
HEARTBEAT_S, GRACE_S = 30, 120


class TuneError(ValueError):
    """Bad input to the search (experiment, profile, trials, search-space file, study)."""


@dataclass(frozen=True)
class Param:
    name: str
    key: str  # dotted config option; a number indexes a list (model.betas.0 is beta1)
    type: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None

    def suggest(self, trial: optuna.Trial):
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        suggest = trial.suggest_float if self.type == "float" else trial.suggest_int
        return suggest(self.name, self.low, self.high, log=self.log)

    def contains(self, value) -> bool:
        if self.type == "categorical":
            return value in self.choices
        if self.type == "int" and int(value) != value:
            return False
        return self.low <= value <= self.high

    def describe(self) -> str:
        if self.type == "categorical":
            return f"one of {list(self.choices)}"
        return f"[{self.low}, {self.high}]" + (" (log)" if self.log else "")


@dataclass(frozen=True)
class SearchSpace:
    path: Path
    params: tuple[Param, ...]
    sampler: dict  # TPESampler arguments, "seed" included
    pruner: optuna.pruners.BasePruner


def load_search_space(path: str | Path = SEARCH_SPACE) -> SearchSpace:
    """Read and check a search-space YAML file; every problem is a TuneError naming the file and the entry."""
    path = Path(path)

    def fail(message: str):
        raise TuneError(f"{path}: {message}")

    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        fail(f"cannot read the search space: {e}")
    if not isinstance(spec, dict) or not isinstance(spec.get("params"), dict) or not spec["params"]:
        fail("needs a non-empty 'params' mapping")
    unknown = set(spec) - {"params", "sampler", "pruner"}
    if unknown:
        fail(f"unknown top-level entries {sorted(unknown)}; allowed: params, sampler, pruner")
    params = tuple(_param(name, entry, fail) for name, entry in spec["params"].items())

    sampler = dict(spec.get("sampler") or {})
    if not isinstance(sampler.get("seed"), int):
        fail("sampler.seed must be an integer: the study records it")
    try:
        optuna.samplers.TPESampler(**sampler)
    except TypeError as e:
        fail(f"sampler: bad TPESampler arguments: {e}")

    pruner_spec = dict(spec.get("pruner") or {"class": "NopPruner"})
    name = pruner_spec.pop("class", None)
    cls = getattr(optuna.pruners, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, optuna.pruners.BasePruner)):
        fail(f"pruner.class {name!r} is not a class of optuna.pruners")
    try:
        pruner = cls(**pruner_spec)
    except (TypeError, ValueError) as e:
        fail(f"pruner: bad {name} arguments: {e}")
    return SearchSpace(path, params, sampler, pruner)


def _param(name: str, entry, fail) -> Param:
    where = f"params.{name}"
    if not isinstance(entry, dict):
        fail(f"{where} must be a mapping with key and type")
    allowed = {"key", "type", "low", "high", "log", "choices"}
    if set(entry) - allowed:
        fail(f"{where}: unknown fields {sorted(set(entry) - allowed)}; allowed: {sorted(allowed)}")
    key, kind = entry.get("key"), entry.get("type")
    if (
        not isinstance(key, str)
        or key.count(".") < 1
        or key.split(".")[0] not in ("model", "data", "trainer")
    ):
        fail(f"{where}.key must be a dotted option under model, data or trainer (e.g. model.lr), got {key!r}")
    if kind == "categorical":
        choices = entry.get("choices")
        if not isinstance(choices, list) or not choices or set(entry) - {"key", "type", "choices"}:
            fail(f"{where}: a categorical parameter needs a non-empty 'choices' list and nothing else")
        return Param(name, key, kind, choices=tuple(choices))
    if kind not in ("float", "int"):
        fail(f"{where}.type must be float, int or categorical, got {kind!r}")
    low, high, log = entry.get("low"), entry.get("high"), entry.get("log", False)
    number = int if kind == "int" else (int, float)
    if not all(isinstance(v, number) and not isinstance(v, bool) for v in (low, high)):
        fail(f"{where}: low and high must be {kind} numbers, got {low!r} and {high!r}")
    if not low < high:
        fail(f"{where}: low ({low}) must be below high ({high})")
    if not isinstance(log, bool) or (log and low <= 0):
        fail(f"{where}: log must be true or false, and a log range needs low > 0")
    return Param(name, key, kind, low, high, log)


# the recipe and trial configs ---------------------------------------------------------------------------------


def available_profiles() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in (CONFIG_DIR / "profiles").glob("*.yaml")))


def recipe_value(recipe, key: str):
    """The value of a dotted option in an experiment's resolved config (`recipe`: from load_experiment).
    model.model_overrides.X is unset in the configs: it falls back to the model preset's X."""
    section, option, *rest = key.split(".")
    value = recipe.config[f"{section}.{option}"]
    if key.startswith("model.model_overrides.") and not (value and rest[0] in value):
        return getattr(recipe.model.model.config, rest[0])
    for part in rest:
        value = value[int(part)] if isinstance(value, (list, tuple)) else value[part]
    return value


def _check_keys(space: SearchSpace, recipe) -> None:
    for p in space.params:
        section, option, *rest = p.key.split(".")
        problem = None
        if f"{section}.{option}" not in recipe.config:
            problem = f"no config option {section}.{option}"
        elif p.key.startswith("model.model_overrides."):
            if len(rest) != 1 or not hasattr(recipe.model.model.config, rest[0]):
                problem = f"the model config has no field {'.'.join(rest)!r}"
        else:
            try:
                recipe_value(recipe, p.key)
            except (IndexError, KeyError, TypeError, ValueError):
                problem = f"{section}.{option} has no element {'.'.join(rest)!r}"
        if problem:
            raise TuneError(f"{space.path}: params.{p.name}.key {p.key!r}: {problem}")


def trial_config(space: SearchSpace, values: dict, recipe) -> dict:
    """The config file of one trial: each parameter's option set to its value, the rest as in the recipe.
    Also `monitor: heldout_loss`, so `fit` selects checkpoints by the loss the trial was scored on."""
    config: dict = {"monitor": OBJECTIVE}
    for p in space.params:
        section, option, *rest = p.key.split(".")
        target = config.setdefault(section, {})
        if not rest:
            target[option] = values[p.name]
            continue
        if option not in target:  # a list or mapping: start from the recipe's, change only the tuned element
            current = recipe.config[f"{section}.{option}"]
            target[option] = list(current) if isinstance(current, (list, tuple)) else dict(current or {})
        container = target[option]
        *path, last = rest
        for part in path:
            container = container[int(part)] if isinstance(container, list) else container[part]
        container[int(last) if isinstance(container, list) else last] = values[p.name]
    return config


def _write_config(path: Path, config: dict, header: str) -> Path:
    atomic_write_text(path, header + yaml.safe_dump(config, sort_keys=False))
    return path


# the study ----------------------------------------------------------------------------------------------------


def study_paths(study: str, output_root: str | Path = REPO_ROOT) -> dict[str, Path]:
    root = Path(output_root).resolve()
    return {
        "storage": root / "runs" / "hpo" / f"{study}.db",
        "trials": root / "runs" / "hpo" / study,
        "best": root / "configs" / "hpo" / f"best_{study}.yaml",
        "compare": root / "runs" / "hpo" / f"{study}_compare",  # --compare: the best trial against the recipe
    }


def open_study(study: str, output_root: str | Path = REPO_ROOT, storage: str | None = None) -> optuna.Study:
    """Create or load a study in SQLite (or in `storage`, any URL Optuna takes, for several machines)."""
    if storage is None:
        db = study_paths(study, output_root)["storage"]
        db.parent.mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{db}"
    for attempt in range(3):  # processes started together race to create the tables: the loser retries
        try:
            with warnings.catch_warnings():  # heartbeats and retries are marked experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                rdb = optuna.storages.RDBStorage(
                    storage,
                    engine_kwargs={"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else None,
                    heartbeat_interval=HEARTBEAT_S,
                    grace_period=GRACE_S,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=1
                    ),
                )
            break
        except sqlalchemy.exc.OperationalError:
            if attempt == 2:
                raise
            time.sleep(1 + attempt)
    return optuna.create_study(storage=rdb, study_name=study, direction="minimize", load_if_exists=True)


def run_study(
    experiment: str,
    trials: int,
    profile: str = "cpu",
    study_name: str | None = None,
    *,
    space_path: str | Path = SEARCH_SPACE,
    output_root: str | Path = REPO_ROOT,
    storage: str | None = None,
    overrides: tuple[str, ...] = (),
) -> optuna.Study:
    """Run (or resume, or join) a study until it has `trials` finished trials; write the best trial's config.
    `overrides` are `fit` options given to every trial (and to the recipe), such as "--trainer.max_epochs=3"."""
    study_name = study_name or f"{experiment}_{profile}"
    if not isinstance(trials, int) or trials < 1:
        raise TuneError(f"--trials must be a positive integer, got {trials!r}")
    if profile not in available_profiles():
        raise TuneError(
            f"unknown profile {profile!r}: configs/profiles has {', '.join(available_profiles())}"
        )
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", study_name):
        raise TuneError(f"--study {study_name!r}: use letters, digits, '_', '.' and '-' (it names files)")
    if experiment not in ABLATION_ARMS:
        raise TuneError(f"unknown experiment {experiment!r}; choose one of {', '.join(ABLATION_ARMS)}")
    space = load_search_space(space_path)
    overrides = tuple(overrides)
    recipe = load_experiment(experiment, profile, *overrides)  # the recipe's objects (nothing is written)
    _check_keys(space, recipe)
    baseline = {p.name: recipe_value(recipe, p.key) for p in space.params}
    for p in space.params:
        if not p.contains(baseline[p.name]):
            raise TuneError(
                f"{space.path}: params.{p.name} is {p.describe()}, which does not contain the recipe's "
                f"{p.key} = {baseline[p.name]!r} ({experiment}, {profile} profile); widen the range"
            )

    study = open_study(study_name, output_root, storage)
    made_for = {"experiment": experiment, "profile": profile, "overrides": list(overrides)}
    for attr, value in made_for.items():
        recorded = study.user_attrs.get(attr, value)
        if recorded != value:
            raise TuneError(
                f"study {study_name!r} was made for {attr} {recorded!r}, not {value!r}; pass another --study"
            )
        study.set_user_attr(attr, value)
    study.set_user_attr("search_space", space.path.read_text())
    # Seeded by how far the study has got, so a resumed or joining process does not replay earlier samples.
    sampler_seed = space.sampler["seed"] + len(study.trials)
    study.sampler = optuna.samplers.TPESampler(**{**space.sampler, "seed": sampler_seed})
    study.pruner = space.pruner
    study.enqueue_trial(baseline, user_attrs={"baseline": True}, skip_if_exists=True)

    seed = int(recipe.config.seed_everything)
    trial_root = study_paths(study_name, output_root)["trials"]

    def objective(trial: optuna.Trial) -> float:
        values = {p.name: p.suggest(trial) for p in space.params}
        out = trial_root / f"trial_{trial.number}"
        header = f"# Trial {trial.number} of Optuna study {study_name} ({experiment}, {profile} profile)\n"
        path = _write_config(out / "config.yaml", trial_config(space, values, recipe), header)
        for attr, value in {
            "seed": seed,
            "sampler_seed": sampler_seed,
            "process": f"{socket.gethostname()}:{os.getpid()}",
            "output_dir": str(out),
        }.items():
            trial.set_user_attr(attr, value)
        run = load_experiment(
            experiment,
            profile,
            *overrides,
            "--config", str(path),
            "--output_root", str(out),
            f"--seed_everything={seed}",
            "--model.generate_per_task=0",
            "--trainer.enable_progress_bar=false",
        )  # fmt: skip
        run.trainer.callbacks.append(PyTorchLightningPruningCallback(trial, monitor=OBJECTIVE))
        try:
            run.trainer.fit(run.model, datamodule=run.datamodule)
        except NonFiniteLossError as e:  # a diverging trial is an unpromising one: stopped, like a pruned one
            trial.set_user_attr("diverged", str(e))
            raise optuna.TrialPruned(str(e)) from e
        score = run.trainer.checkpoint_callback.best_model_score
        if score is None or not math.isfinite(float(score)):
            raise RuntimeError(f"trial {trial.number}: no finite {OBJECTIVE} was logged ({out})")
        return float(score)

    remaining = trials - len(study.get_trials(states=FINISHED))
    if remaining > 0:
        study.optimize(
            objective,
            n_trials=remaining,
            callbacks=[optuna.study.MaxTrialsCallback(trials, states=FINISHED)],  # other processes' count too
            gc_after_trial=True,
        )
    write_best_config(study, space, recipe, output_root)
    return study


def baseline_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The study's finished run of the recipe (Trial 69 with the profile's budget), if any."""
    done = [t for t in study.get_trials(states=FINISHED) if t.user_attrs.get("baseline")]
    return done[0] if done else None


def write_best_config(study: optuna.Study, space: SearchSpace, recipe, output_root=REPO_ROOT) -> Path | None:
    completed = study.get_trials(states=(TrialState.COMPLETE,))
    if not completed:
        print(f"[tune] study {study.study_name}: no completed trial yet, so no best config written")
        return None
    best, base = study.best_trial, baseline_trial(study)
    experiment, profile = study.user_attrs["experiment"], study.user_attrs["profile"]
    path = study_paths(study.study_name, output_root)["best"]
    shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
    against = (
        f"the recipe (trial {base.number}): {base.value:.4f}"
        if base and base.value is not None
        else "no recipe"
    )
    header = (
        f"# Best trial of Optuna study {study.study_name} ({experiment}, {profile} profile, "
        f"{len(study.get_trials(states=FINISHED))} finished trials): trial {best.number}, "
        f"{OBJECTIVE} {best.value:.4f}; {against}.\n"
        f"#   python -m arclib fit --config configs/{experiment}.yaml --config configs/profiles/{profile}.yaml "
        f"--config {shown}\n"
        f"#   python -m arclib ablation --profile {profile} --config {shown}\n"
    )
    if study.user_attrs.get("overrides"):
        header += f"# The trials also ran with: {' '.join(study.user_attrs['overrides'])}\n"
    _write_config(path, trial_config(space, best.params, recipe), header)
    print(f"[tune] best: trial {best.number}, {OBJECTIVE} {best.value:.4f} ({against}); wrote {path}")
    return path


def best_vs_baseline(study: optuna.Study) -> list[tuple[str, object, object]]:
    """Rows (name, recipe, best trial): the objective, then each parameter."""
    best, base = study.best_trial, baseline_trial(study)
    if base is None:
        raise TuneError(f"study {study.study_name} has no finished run of the recipe")
    return [(OBJECTIVE, base.value, best.value)] + [(k, base.params[k], best.params[k]) for k in best.params]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m arclib tune",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--experiment", required=True, help="e.g. exp_3_champion")
    parser.add_argument(
        "--trials", type=int, required=True, help="finished trials wanted in the study, in all"
    )
    parser.add_argument("--profile", default="cpu", help=f"one of {', '.join(available_profiles())}")
    parser.add_argument("--study", default=None, help="study name (default: <experiment>_<profile>)")
    parser.add_argument("--space", default=str(SEARCH_SPACE), help="search-space YAML")
    parser.add_argument("--output-root", default=str(REPO_ROOT), help="folder for runs/hpo and configs/hpo")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default: SQLite under runs/hpo)")
    parser.add_argument(
        "--compare", type=int, default=0, metavar="SEEDS",
        help="then train the recipe and the best trial with SEEDS seeds each and compare them on the report half",
    )  # fmt: skip
    args, overrides = parser.parse_known_args(argv)
    if any(not o.startswith("--") for o in overrides):
        parser.error(f"unrecognised arguments {overrides}; fit options are given as --key=value")
    if args.compare < 0:
        parser.error(f"--compare must be 0 (no comparison) or a number of seeds, got {args.compare}")
    try:
        study = run_study(
            args.experiment,
            args.trials,
            args.profile,
            args.study,
            space_path=args.space,
            output_root=args.output_root,
            storage=args.storage,
            overrides=tuple(overrides),
        )
    except TuneError as e:
        parser.error(str(e))
    if args.compare:
        from arclib.ablation import AblationError
        from arclib.evaluation.report import ReportError
        from arclib.training.study_compare import compare_with_recipe

        if not study.get_trials(states=(TrialState.COMPLETE,)):
            parser.error(f"--compare: study {study.study_name} has no completed trial, so no best config")
        if study.best_trial.user_attrs.get("baseline"):
            print(f"[compare] the best trial of {study.study_name} is the recipe itself: nothing to compare")
            return 0
        paths = study_paths(study.study_name, args.output_root)
        try:
            compare_with_recipe(
                args.experiment, args.profile, study.best_trial.number, paths["best"], paths["compare"],
                args.compare, tuple(overrides),
            )  # fmt: skip
        except (AblationError, ReportError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    return 0

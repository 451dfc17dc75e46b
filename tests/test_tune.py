"""Hyperparameter search: smoke studies through the fit code path, pruning, SIGKILL and resume, two processes on
one study, a best-trial config that `fit` accepts, and bad input."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from arclib.__main__ import main as arclib_main
from arclib.training import load_experiment
from arclib.training.tune import (
    FINISHED,
    SEARCH_SPACE,
    TuneError,
    available_profiles,
    best_vs_baseline,
    load_search_space,
    main,
    recipe_value,
    run_study,
    study_paths,
)

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "exp_3_champion"
# Smoke profile, 2 training batches an epoch, and no free generation: a trial is scored on heldout_loss, and
# generation is most of a smoke run's time.
FAST = ("--trainer.limit_train_batches=2", "--model.generate_per_task=0")


def space_file(tmp_path, edit) -> Path:
    spec = yaml.safe_load(SEARCH_SPACE.read_text())
    edit(spec)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def load(study: str, root: Path) -> optuna.Study:
    return optuna.load_study(study_name=study, storage=f"sqlite:///{study_paths(study, root)['storage']}")


def heldout_losses(trial: optuna.trial.FrozenTrial) -> dict[int, float]:
    """Epoch -> heldout_loss from the trial's own CSV log."""
    (path,) = Path(trial.user_attrs["output_dir"]).rglob("metrics.csv")
    with open(path) as f:
        return {int(r["epoch"]): float(r["heldout_loss"]) for r in csv.DictReader(f) if r.get("heldout_loss")}


def tune_cli(root: Path, study: str, trials: int) -> list[str]:
    return [
        sys.executable, "-m", "arclib", "tune", "--experiment", EXPERIMENT, "--trials", str(trials),
        "--profile", "smoke", "--study", study, "--output-root", str(root), *FAST,
    ]  # fmt: skip


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


# the search space -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", available_profiles())
def test_search_space_contains_the_recipe_of_every_profile(profile):
    space = load_search_space()
    assert {p.name for p in space.params} == {
        "lr", "beta1", "batch_size", "gradient_clip", "T_0", "eta_min", "dropout"
    }  # fmt: skip
    recipe = load_experiment(EXPERIMENT, profile)
    for p in space.params:
        assert p.contains(recipe_value(recipe, p.key)), (profile, p.name)
    assert recipe_value(recipe, "model.betas.0") == 0.95
    assert recipe_value(recipe, "model.model_overrides.dropout") == (0.0 if profile == "smoke" else 0.167)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s["params"]["lr"].update(low=0.1), "params.lr: low (0.1) must be below high"),
        (lambda s: s["params"]["eta_min"].update(low=0.0), "params.eta_min: log must be true or false"),
        (lambda s: s["params"]["lr"].update(type="loguniform"), "params.lr.type must be float, int or"),
        (lambda s: s["params"]["lr"].update(lo=1), "params.lr: unknown fields ['lo']"),
        (lambda s: s["params"]["lr"].update(key="lr"), "params.lr.key must be a dotted option"),
        (lambda s: s["params"]["T_0"].update(low=1.5), "params.T_0: low and high must be int"),
        (lambda s: s["params"]["batch_size"].update(choices=[]), "params.batch_size: a categorical"),
        (lambda s: s.pop("params"), "needs a non-empty 'params' mapping"),
        (lambda s: s.update(pruners={}), "unknown top-level entries ['pruners']"),
        (lambda s: s["sampler"].pop("seed"), "sampler.seed must be an integer"),
        (lambda s: s["sampler"].update(n_startup=3), "sampler: bad TPESampler arguments"),
        (lambda s: s["pruner"].update({"class": "Bogus"}), "pruner.class 'Bogus' is not a class"),
        (lambda s: s["pruner"].update(n_warmup=1), "pruner: bad MedianPruner arguments"),
    ],
)
def test_bad_search_space_is_named(tmp_path, edit, message):
    path = space_file(tmp_path, edit)
    with pytest.raises(TuneError) as error:
        load_search_space(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_unreadable_search_space_is_named(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("params: [unclosed\n")
    with pytest.raises(TuneError, match="cannot read the search space"):
        load_search_space(path)
    with pytest.raises(TuneError, match="cannot read the search space"):
        load_search_space(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--experiment", "exp_9_nope", "--trials", "2"], "unknown experiment 'exp_9_nope'; choose one of"),
        (["--experiment", EXPERIMENT, "--trials", "0"], "--trials must be a positive integer, got 0"),
        (["--experiment", EXPERIMENT, "--trials", "-3"], "--trials must be a positive integer, got -3"),
        (["--experiment", EXPERIMENT, "--trials", "2", "--profile", "tpu"], "unknown profile 'tpu'"),
        (["--experiment", EXPERIMENT, "--trials", "2", "--study", "a/b"], "--study 'a/b': use letters"),
        (["--experiment", EXPERIMENT, "--trials", "2", "stray"], "unrecognised arguments ['stray']"),
        ("key", "params.lr.key 'model.lrr': no config option model.lrr"),
        ("element", "params.beta1.key 'model.betas.5': model.betas has no element '5'"),
        ("field", "params.dropout.key 'model.model_overrides.dropit': the model config has no field"),
        ("range", "params.lr is [0.01, 0.1] (log), which does not contain the recipe's model.lr"),
    ],
)
def test_bad_input_fails_clearly_before_anything_is_written(tmp_path, capsys, args, message):
    edits = {
        "key": lambda s: s["params"]["lr"].update(key="model.lrr"),
        "element": lambda s: s["params"]["beta1"].update(key="model.betas.5"),
        "field": lambda s: s["params"]["dropout"].update(key="model.model_overrides.dropit"),
        "range": lambda s: s["params"]["lr"].update(low=0.01, high=0.1),
    }
    if isinstance(args, str):
        space = space_file(tmp_path, edits[args])
        args = ["--experiment", EXPERIMENT, "--trials", "2", "--profile", "smoke", "--space", str(space)]
    output = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--output-root", str(output)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err, err
    if "gpu" in args:
        assert f"configs/profiles has {', '.join(available_profiles())}" in err
    assert not output.exists()


# studies --------------------------------------------------------------------------------------------------


def test_smoke_study_trains_like_fit_and_writes_a_best_config_fit_accepts(tmp_path, capsys):
    study = run_study(EXPERIMENT, 2, "smoke", "s", output_root=tmp_path, overrides=FAST)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    recipe = load_experiment(EXPERIMENT, "smoke", *FAST)
    space = load_search_space()
    baseline, tuned = trials
    assert baseline.user_attrs["baseline"] and "baseline" not in tuned.user_attrs
    assert baseline.params == {p.name: recipe_value(recipe, p.key) for p in space.params}
    assert tuned.params["lr"] != baseline.params["lr"]

    dirs = {Path(t.user_attrs["output_dir"]) for t in trials}
    assert dirs == {tmp_path / "runs" / "hpo" / "s" / f"trial_{n}" for n in (0, 1)}
    for t in trials:
        out = Path(t.user_attrs["output_dir"])
        assert t.user_attrs["seed"] == 307 and t.user_attrs["sampler_seed"] == 307
        # the objective is the best epoch's heldout_loss of the trial's own log, reported every epoch (the
        # median pruner waits for 4 trials, so nothing was pruned: 2 epochs each)
        logged = heldout_losses(t)
        assert sorted(t.intermediate_values) == sorted(logged) == [0, 1]
        assert t.intermediate_values == pytest.approx(logged)
        assert t.value == pytest.approx(min(logged.values()))
        assert list((out / "checkpoints" / EXPERIMENT).glob("seed_*/*.ckpt"))
        # the sampled values reached the LightningModule, the datamodule and the trainer
        (hparams,) = out.rglob("hparams.yaml")
        (saved,) = (out / "runs").rglob("config.yaml")  # what LightningCLI saw
        config = yaml.safe_load(saved.read_text())
        assert yaml.safe_load((out / "config.yaml").read_text())["model"]["lr"] == t.params["lr"]
        assert yaml.safe_load(hparams.read_text())["lr"] == t.params["lr"]
        assert config["model"]["model_overrides"] == {"dropout": t.params["dropout"]}
        assert config["data"]["batch_size"] == t.params["batch_size"]
        assert config["trainer"]["gradient_clip_val"] == t.params["gradient_clip"]
        assert config["model"]["generate_per_task"] == 0

    best = study.best_trial
    best_path = study_paths("s", tmp_path)["best"]
    assert best_path.exists() and f"trial {best.number}" in best_path.read_text()
    rows = dict((name, (a, b)) for name, a, b in best_vs_baseline(study))
    assert rows["heldout_loss"] == (baseline.value, best.value)

    # `fit` (and so `ablation`, which passes extra options to fit) reads it after any experiment and profile
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        arclib_main(
            [
                "fit", "--config", "configs/exp_0_encoder_decoder.yaml", "--config", "configs/profiles/cpu.yaml",
                "--config", str(best_path), "--print_config",
            ]
        )  # fmt: skip
    assert exit_.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    p = best.params
    assert printed["model"]["model_name"] == "exp_0_encoder_decoder" and printed["monitor"] == "heldout_loss"
    assert (printed["model"]["lr"], printed["model"]["betas"][0]) == (p["lr"], p["beta1"])
    assert (printed["model"]["scheduler_t0"], printed["model"]["eta_min"]) == (p["T_0"], p["eta_min"])
    assert printed["model"]["model_overrides"] == {"dropout": p["dropout"]}
    assert printed["data"]["batch_size"] == p["batch_size"]
    assert printed["trainer"]["gradient_clip_val"] == p["gradient_clip"]
    assert printed["trainer"]["max_epochs"] == 6  # the profile's budget is kept

    # running it again finds the trials done; another experiment cannot reuse the study
    assert len(run_study(EXPERIMENT, 2, "smoke", "s", output_root=tmp_path, overrides=FAST).trials) == 2
    with pytest.raises(TuneError, match="study 's' was made for experiment 'exp_3_champion'"):
        run_study("exp_1_grid2d", 2, "smoke", "s", output_root=tmp_path, overrides=FAST)


def test_pruned_trials_stop_after_the_first_epoch(tmp_path):
    # every held-out loss is above 0: the threshold pruner stops each trial at its first report
    space = space_file(tmp_path, lambda s: s.update(pruner={"class": "ThresholdPruner", "upper": 0.0}))
    study = run_study(EXPERIMENT, 2, "smoke", "p", space_path=space, output_root=tmp_path, overrides=FAST)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.PRUNED] * 2
    for t in trials:
        assert list(t.intermediate_values) == [0]
        assert list(heldout_losses(t)) == [0]  # the second epoch never ran
    assert not study_paths("p", tmp_path)["best"].exists()  # no completed trial: no best config


def test_sigkill_then_resume_loses_no_finished_trial(tmp_path):
    process = subprocess.Popen(
        tune_cli(tmp_path, "k", 3), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    first_trial = study_paths("k", tmp_path)["trials"] / "trial_0"
    deadline = time.time() + 400
    try:
        while time.time() < deadline and process.poll() is None:
            time.sleep(0.3)
            if not first_trial.exists():  # the study is not made yet
                continue
            states = [t.state for t in load("k", tmp_path).get_trials()]
            if TrialState.COMPLETE in states and states[-1] == TrialState.RUNNING:
                process.send_signal(signal.SIGKILL)  # mid-trial: one finished trial, one running
                break
        assert process.wait(30) == -signal.SIGKILL, process.stderr.read()[-3000:]
    finally:
        process.kill()
    before = {t.number: (t.params, t.value) for t in load("k", tmp_path).get_trials(states=FINISHED)}
    assert before

    assert main(tune_cli(tmp_path, "k", 3)[4:]) == 0  # resumed in this process
    after = load("k", tmp_path).get_trials(states=FINISHED)
    assert len(after) == 3
    assert {t.number: (t.params, t.value) for t in after if t.number in before} == before
    # the resumed process sampled with another seed: its trials are not replays of the killed run's
    assert len({tuple(sorted(t.params.items())) for t in after}) == 3


def test_two_processes_share_one_study(tmp_path):
    log = open(tmp_path / "first.log", "w+")  # a file, not a pipe: nobody reads it while this process works
    first = subprocess.Popen(tune_cli(tmp_path, "par", 4), cwd=ROOT, env=ENV, stderr=log, text=True)
    # the second starts once the first has begun a trial, so that it seeds its sampler differently
    while first.poll() is None and not (study_paths("par", tmp_path)["trials"] / "trial_0").exists():
        time.sleep(0.3)
    assert main(tune_cli(tmp_path, "par", 4)[4:]) == 0  # the second process is this one
    assert first.wait(timeout=600) == 0, (log.seek(0), log.read()[-3000:])[1]
    finished = load("par", tmp_path).get_trials(states=FINISHED)
    assert 4 <= len(finished) <= 5  # the second process may finish the trial it had begun
    assert len({t.user_attrs["process"] for t in finished}) == 2
    assert len({t.user_attrs["output_dir"] for t in finished}) == len(finished)
    assert len({tuple(sorted(t.params.items())) for t in finished}) == len(finished)


def test_a_diverging_trial_is_stopped_and_recorded(tmp_path, monkeypatch):
    from arclib.training.module import ArcLitModule, NonFiniteLossError

    def diverge(self, batch, batch_idx):
        raise NonFiniteLossError(f"non-finite training loss nan at global step {self.global_step}")

    monkeypatch.setattr(ArcLitModule, "training_step", diverge)
    study = run_study(EXPERIMENT, 1, "smoke", "d", output_root=tmp_path, overrides=FAST)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.PRUNED and "non-finite training loss" in trial.user_attrs["diverged"]
    assert not list(Path(trial.user_attrs["output_dir"]).rglob("*.ckpt"))  # no weights saved from it


def test_compare_retrains_the_recipe_and_the_best_trial_and_states_the_interval(
    tmp_path, monkeypatch, capsys
):
    from arclib import ablation
    from arclib.training.study_compare import compare_with_recipe

    def train_here(experiments, profile, root, extra, jobs, seed_list):  # seconds, not a process per run
        ablation.train_here(experiments, profile, root, extra, seed_list)

    monkeypatch.setattr(ablation, "train_experiments", train_here)
    best_config = tmp_path / "best.yaml"
    best_config.write_text("model:\n  lr: 0.01\n")
    root = tmp_path / "compare"
    (root / "best_trial_4" / "checkpoints" / EXPERIMENT / "seed_307").mkdir(parents=True)
    stale = root / "best_trial_4" / "checkpoints" / EXPERIMENT / "seed_307" / "x-heldout_loss=0.0001.ckpt"
    stale.write_bytes(b"an earlier comparison's")  # must not be picked (nor read)
    result = compare_with_recipe(EXPERIMENT, "smoke", 4, best_config, root, 2, FAST, per_task=1)
    assert result["seeds"] == [307, 308] and result["queries"] == 14 and not stale.exists()
    for metric in ("loss", "exact"):
        diff, arms = result["difference"][metric], result["arms"][metric]
        assert (diff["n_seeds"], diff["n_tasks"]) == (2, 14) and diff["low"] <= diff["estimate"] <= diff[
            "high"
        ]
        assert diff["estimate"] == pytest.approx(arms["best"]["estimate"] - arms["recipe"]["estimate"])
    assert result["difference"]["loss"]["estimate"] != 0  # the arms really trained differently
    for folder, lr in (("best_trial_4", 0.01), ("recipe", 0.0018498849832733245)):
        for seed in (307, 308):
            (config,) = (root / folder / "runs" / EXPERIMENT / f"seed_{seed}").rglob("config.yaml")
            assert yaml.safe_load(config.read_text())["model"]["lr"] == lr
    assert "| loss |" in capsys.readouterr().out and (root / "comparison.md").exists()


@pytest.mark.parametrize(
    "low, estimate, high, words",
    [(-0.3, -0.2, -0.1, "best trial is better"), (0.1, 0.2, 0.3, "recipe is better"),
     (-0.1, 0.05, 0.2, "no detectable difference"), (0.0, 0.1, 0.2, "no detectable difference")],
)  # fmt: skip
def test_the_verdict_reads_a_loss_difference_best_minus_recipe(low, estimate, high, words):
    from arclib.training.study_compare import verdict

    assert words in verdict({"low": low, "estimate": estimate, "high": high})

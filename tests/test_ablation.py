"""The ablation job: N seeds per experiment, the same episode stream per seed for every arm, one folder per run,
failures named, and the report written from the runs."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from arclib import ablation
from arclib.evaluation import report as rp
from arclib.training import load_experiment

ARMS = ["exp_0_encoder_decoder", "exp_3_champion"]
QUICK = ["--trainer.max_epochs=1", "--model.generate_per_task=0"]


def episode_stream(experiment: str, seed: int, epochs: int = 2) -> list:
    """Every training episode plan of the first epochs, in order, as the run's sampler yields them."""
    exp = load_experiment(experiment, "smoke", f"--seed_everything={seed}")
    dm = exp.datamodule
    dm.setup("fit")
    sampler = (
        dm.train_dataloader().batch_sampler.batches
    )  # the per-epoch sampler inside the resumable wrapper
    stream = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        stream += [repr(plan) for batch in sampler for plan in batch]
    return stream


def test_a_seed_gives_every_arm_the_same_episodes():
    assert ablation.seeds(3) == [307, 308, 309]
    with pytest.raises(ValueError, match="--seeds must be at least 1"):
        ablation.seeds(0)
    champion = episode_stream("exp_3_champion", 308)
    assert champion and episode_stream("exp_-1_decoder_only", 308) == champion
    assert episode_stream("exp_3_champion", 309) != champion  # negative control: the seed matters


def test_ablation_trains_every_seed_side_by_side(tmp_path):
    done, began, handler = [], time.time(), signal.getsignal(signal.SIGTERM)
    seconds = ablation.train_experiments(
        ["exp_3_champion"], "smoke", tmp_path, QUICK, jobs=2, on_done=lambda *a: done.append(a[1]),
        seed_list=[307, 308],
    )  # fmt: skip
    assert signal.getsignal(signal.SIGTERM) is handler  # run in-process, it leaves SIGTERM as it found it
    runs = [("exp_3_champion", 307), ("exp_3_champion", 308)]
    assert (
        sorted(seconds) == sorted(runs)
        and sorted(done) == sorted(runs)
        and all(v > 0 for v in seconds.values())
    )
    for experiment, seed in runs:
        run_dir = tmp_path / "runs" / experiment / f"seed_{seed}"
        assert (run_dir / "ablation_smoke.log").exists()
        config = yaml.safe_load((run_dir / "version_0" / "config.yaml").read_text())
        assert config["seed_everything"] == seed and (run_dir / "version_0" / "metrics.csv").exists()
    running = {run: (None, None, began) for run in runs} | {("exp_1_grid2d", 307): (None, None, began)}
    status = ablation._status(tmp_path, running)
    assert "exp_3_champion/seed_307: epoch 1, heldout_loss" in status
    assert "exp_1_grid2d/seed_307: not validated yet" in status


def test_status_names_the_last_validated_epoch_when_not_every_epoch_is_validated(tmp_path):
    csv_dir = tmp_path / "runs" / "exp_3_champion" / "seed_307" / "version_0"
    csv_dir.mkdir(parents=True)
    rows = ["epoch,step,train_loss,heldout_loss", "0,50,2.0,", "1,122,,1.50", "2,150,1.2,", "3,244,,1.25"]
    (csv_dir / "metrics.csv").write_text("\n".join(rows) + "\n")
    status = ablation._status(tmp_path, {("exp_3_champion", 307): (None, None, 0.0)})
    assert status == "exp_3_champion/seed_307: epoch 4, heldout_loss 1.250"  # two validations, fourth epoch


def test_ablation_names_the_failed_run_and_its_log(tmp_path):
    with pytest.raises(
        ablation.AblationError, match=r"exp_1_grid2d seed 308 failed .*seed_308/ablation_smoke\.log"
    ) as err:
        ablation.train_experiments(
            ["exp_1_grid2d"], "smoke", tmp_path, ["--trainer.max_epochs=oops"], 1, seed_list=[308]
        )
    assert "max_epochs" in str(err.value)  # the end of the log says what was wrong


def test_ablation_writes_the_report_from_existing_runs(tmp_path, monkeypatch, capsys):
    from test_report import echo_predictor, save  # tests/ is on sys.path under pytest

    monkeypatch.setattr(rp, "model_predictor", echo_predictor)
    for arm in ARMS:
        for seed in ablation.seeds(3):
            save(
                tmp_path / "checkpoints" / arm / f"seed_{seed}" / f"{arm}-epoch=00-heldout_loss=1.0000.ckpt",
                arm,
            )
    argv = ["--profile", "smoke", "--output-root", str(tmp_path), "--skip-training", "--skip-notebook"]
    assert ablation.main(argv) == 0
    report = json.loads((tmp_path / "checkpoints" / "ablation_results.json").read_text())
    assert report["per_task"] == ablation.EVAL_PER_TASK["smoke"]
    assert all(len(report["seeds"][arm]) == 3 for arm in ARMS)
    for set_name in rp.EVAL_SETS:
        for metric in rp.STAT_METRICS:
            rows = report["statistics"]["comparisons"][set_name][metric]
            assert [(r["a"], r["b"], r["n_seeds"]) for r in rows] == [
                ("exp_0_encoder_decoder", "exp_3_champion", 3)
            ]
            assert all(np.isfinite([r["low"], r["high"], r["p_holm"]]).all() for r in rows)
    md = (tmp_path / "checkpoints" / "ablation_results.md").read_text()
    assert "exp_3_champion against exp_0_encoder_decoder" in md and md in capsys.readouterr().out


def test_ablation_rejects_zero_seeds(capsys):
    with pytest.raises(SystemExit):
        ablation.main(["--seeds", "0", "--skip-training", "--skip-notebook"])
    assert "--seeds must be at least 1" in capsys.readouterr().err


def test_gpu_slots_place_one_run_per_group_of_gpus(tmp_path, monkeypatch):
    assert ablation.gpu_slots(4, 1) == ["0", "1", "2", "3"] and ablation.gpu_slots(5, 2) == ["0,1", "2,3"]
    with pytest.raises(ValueError, match="between 1 and the 2 GPU"):
        ablation.gpu_slots(2, 3)
    launched = []

    class Finished:
        returncode = 0

        def poll(self):
            return 0

    def fake_start(run, profile, output_root, extra, threads, gpus=None):
        launched.append((run, gpus))
        return Finished(), tmp_path / "log", time.time()

    monkeypatch.setattr(ablation, "_start", fake_start)
    ablation.train_experiments(
        ARMS, "smoke", tmp_path, [], jobs=1, seed_list=[307, 308], gpu_slots=["0,1", "2,3"]
    )
    assert [g for _, g in launched] == ["0,1", "2,3", "0,1", "2,3"]


class FakeProcess:
    """Finishes at its second poll, with `returncode`."""

    def __init__(self, returncode: int = 0):
        self.returncode, self.polls = returncode, 0

    def poll(self):
        self.polls += 1
        return self.returncode if self.polls > 1 else None


def test_each_trained_run_is_evaluated_before_the_next_training_starts(tmp_path, monkeypatch):
    order, done = [], []
    monkeypatch.setattr(ablation.time, "sleep", lambda s: None)

    def fake_start(run, profile, output_root, extra, threads, gpus=None):
        order.append(("train", run[1]))
        return FakeProcess(), tmp_path / "train.log", time.time()

    def fake_evaluation(run, output_root, per_task, threads):
        order.append(("evaluate", run[1], per_task))
        return FakeProcess(returncode=1 if run[1] == 308 else 0), tmp_path / "eval.log", time.time()

    monkeypatch.setattr(ablation, "_start", fake_start)
    monkeypatch.setattr(ablation, "_start_evaluation", fake_evaluation)
    seeds = [307, 308, 309]

    def train(jobs, **kwargs):
        order.clear(), done.clear()
        return ablation.train_experiments(
            ["exp_0_encoder_decoder"], "smoke", tmp_path, [], jobs, lambda *a: done.append((a[0], a[1][1])),
            seeds, **kwargs,
        )  # fmt: skip

    seconds = train(2, evaluate_per_task=2)
    # Two slots: 307 and 308 train side by side, their evaluations (in order) go before 309's training.
    assert order == [("train", 307), ("train", 308), ("evaluate", 307, 2), ("evaluate", 308, 2), ("train", 309),
                     ("evaluate", 309, 2)]  # fmt: skip
    assert sorted(seconds) == [
        ("exp_0_encoder_decoder", s) for s in seeds
    ]  # 308's failed evaluation fails no run
    assert sorted(done) == sorted([("train", s) for s in seeds] + [("evaluate", 307), ("evaluate", 309)])
    train(1, evaluate_per_task=2)
    assert order == [x for s in seeds for x in (("train", s), ("evaluate", s, 2))]
    train(1)
    assert order == [("train", s) for s in seeds]  # no evaluation unless asked
    train(1, evaluate_per_task=2, gpu_slots=["0"])
    assert order == [("train", s) for s in seeds]  # evaluation is CPU work: on GPUs the report does it


def test_the_gpu_profile_puts_one_run_on_each_gpu_and_needs_one(tmp_path, monkeypatch, capsys):
    import torch

    placed = {}
    monkeypatch.setattr(ablation, "train_experiments", lambda *a, **k: placed.update(slots=k["gpu_slots"]))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    argv = ["--profile", "gpu", "--output-root", str(tmp_path), "--skip-notebook"]
    ablation.main(argv)
    assert placed["slots"] == ["0", "1", "2", "3"]
    ablation.main([*argv, "--gpus-per-run", "2"])
    assert placed["slots"] == ["0,1", "2,3"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(SystemExit):
        ablation.main(argv)
    assert "the gpu profile needs a CUDA GPU" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, abbreviation",
    [
        (["report", "--per", "1"], "--per"),
        (["bench", "--quic"], "--quic"),
        (["tune", "--experiment", "exp_3_champion", "--trials", "1", "--prof", "smoke"], "--prof"),
        (["evaluate", "--checkpoint", "x", "--task", "val"], "--task"),
    ],
)
def test_no_subcommand_takes_an_abbreviated_option(argv, abbreviation, capsys):
    from arclib.__main__ import main

    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and "unrecogni" in err and abbreviation in err


def test_ablation_passes_an_abbreviation_on_to_fit_instead_of_reading_it(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(ablation, "train_experiments", lambda exps, profile, root, extra, *a, **k: seen.update(
        extra=extra, seeds=a[-1]))  # fmt: skip
    ablation.main(["--seed", "5", "--output-root", str(tmp_path), "--skip-notebook"])
    assert seen == {"extra": ["--seed", "5"], "seeds": [307, 308, 309]}  # fit then refuses --seed itself


def test_a_run_on_a_gpu_slot_sees_only_its_gpus(tmp_path, monkeypatch):
    seen = {}

    def fake_popen(cmd, env, **kwargs):
        seen.update(cmd=cmd, env=env)

    monkeypatch.setattr(ablation.subprocess, "Popen", fake_popen)
    ablation._start(("exp_3_champion", 307), "gpu", tmp_path, [], 4, gpus="2,3")
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] == "2,3" and "--trainer.devices=2" in seen["cmd"]
    ablation._start(("exp_3_champion", 307), "cpu", tmp_path, [], 1)
    assert not any(a.startswith("--trainer.devices") for a in seen["cmd"])
    # the report generates; the runs do not, and an override given to the ablation still comes last
    assert "--model.generate_per_task=0" in seen["cmd"]
    ablation._start(("exp_3_champion", 307), "cpu", tmp_path, ["--model.generate_per_task=3"], 1)
    assert seen["cmd"][-1] == "--model.generate_per_task=3"


def test_the_recipes_cpu_runs_validate_every_other_epoch_and_always_the_last(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(
        ablation, "train_experiments", lambda exps, profile, root, extra, *a, **k: seen.append(extra)
    )
    for argv in (["--profile", "cpu"], ["--profile", "cpu", "--model.scheduler_t0=3"], ["--profile", "full"]):
        ablation.main([*argv, "--output-root", str(tmp_path), "--skip-notebook"])
    assert seen == [["--trainer.check_val_every_n_epoch=2"], ["--model.scheduler_t0=3"], []]
    # Measured for one cosine cycle that ends at the last epoch, and that last epoch is validated.
    recipe = yaml.safe_load((ablation.CONFIG_DIR / "base.yaml").read_text())
    cpu = yaml.safe_load((ablation.CONFIG_DIR / "profiles" / "cpu.yaml").read_text())
    max_epochs = cpu["trainer"]["max_epochs"]
    assert max_epochs == cpu.get("model", {}).get("scheduler_t0", recipe["model"]["scheduler_t0"])
    assert max_epochs % ablation.VALIDATE_EVERY_N_EPOCHS["cpu"] == 0


def test_the_evaluation_job_runs_the_report_on_that_run_alone(tmp_path, monkeypatch):
    from test_report import echo_predictor, save  # tests/ is on sys.path under pytest

    seen = {}
    with monkeypatch.context() as m:
        m.setattr(ablation.subprocess, "Popen", lambda cmd, env, **kwargs: seen.update(cmd=cmd, env=env))
        ablation._start_evaluation(("exp_1_grid2d", 308), tmp_path, ablation.EVAL_PER_TASK["smoke"], 1)
    assert seen["cmd"][1:4] == ["-m", "arclib", "report"] and seen["env"]["OMP_NUM_THREADS"] == "1"
    monkeypatch.setattr(rp, "model_predictor", echo_predictor)
    run_dir = tmp_path / "checkpoints" / "exp_1_grid2d" / "seed_308"
    save(run_dir / "exp_1_grid2d-epoch=00-heldout_loss=1.0000.ckpt", "exp_1_grid2d")
    assert rp.main(seen["cmd"][4:]) == 0  # the same arguments, in this process
    assert (run_dir / rp.EVALUATION_FILE).exists()
    assert not (tmp_path / "checkpoints" / "ablation_results.json").exists()
    # The ablation's own report finds that evaluation under its key: nothing is evaluated again.
    monkeypatch.setattr(rp, "evaluate_model", lambda *a: pytest.fail("evaluated again"))
    argv = ["--profile", "smoke", "--output-root", str(tmp_path), "--skip-training", "--skip-notebook"]
    assert ablation.main(argv) == 0 and (tmp_path / "checkpoints" / "ablation_results.json").exists()


def processes_mentioning(argument: str) -> list[int]:
    """Live processes with `argument` as one of their command-line arguments (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and argument.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                if (entry / "stat").read_text().rsplit(") ", 1)[1][0] != "Z":  # a zombie has ended
                    found.append(int(entry.name))
        except OSError:  # ended while we looked
            continue
    return found


@pytest.mark.timeout(120)
def test_sigterm_stops_the_runs_it_started(tmp_path):
    """`kill` or a scheduler stopping `ablation` stops its training runs too, instead of orphaning them."""
    ablation_cmd = [
        sys.executable, "-m", "arclib", "ablation", "--profile", "smoke", "--experiments", "exp_0_encoder_decoder",
        "--seeds", "1", "--jobs", "1", "--skip-notebook", "--output-root", str(tmp_path),
    ]  # fmt: skip
    parent = subprocess.Popen(ablation_cmd, cwd=ablation.REPO_ROOT, stdout=subprocess.DEVNULL)

    def runs() -> list[int]:
        return [p for p in processes_mentioning(str(tmp_path)) if p != parent.pid]

    try:
        deadline = time.time() + 60
        while time.time() < deadline and not runs():
            time.sleep(0.1)
        assert runs(), "no run started within 60 s"
        parent.send_signal(signal.SIGTERM)
        status = parent.wait(timeout=60)
        orphans = processes_mentioning(str(tmp_path))  # the ablation has ended: whatever is left is an orphan
        assert not orphans, "training runs outlived the ablation that started them"
        assert status == 128 + signal.SIGTERM
    finally:  # a failing check leaves nothing running either
        parent.kill()
        parent.wait()
        for pid in processes_mentioning(str(tmp_path)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

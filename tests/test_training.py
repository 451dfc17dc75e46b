"""Training: the Trial 69 recipe, CLI and notebook paths, resume, DDP, crash safety, determinism, bad input."""

import contextlib
import csv
import io
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from arclib.__main__ import main
from arclib.models import MODEL_NAMES
from arclib.training import load_checkpoint, load_experiment
from arclib.training.callbacks import AppendingCSVLogger
from arclib.training.checkpoints import AtomicCheckpointIO, DivergenceError, state_hash
from arclib.training.precision import resolve_precision

ROOT = Path(__file__).resolve().parents[1]


def fit_cli(tmp_path, experiment="exp_3_champion", *extra, check=True, process=False, popen=None):
    """`python -m arclib fit` on the smoke profile: in this process (the same `main`, without paying for a new
    interpreter and its imports), or in a real process with `process=True` (`popen`: started, not awaited)."""
    args = [
        "fit", "--config", str(ROOT / f"configs/{experiment}.yaml"), "--config", str(ROOT / "configs/profiles/smoke.yaml"),
        "--output_root", str(tmp_path), "--trainer.enable_progress_bar=false", *extra,
    ]  # fmt: skip
    if popen is not None:
        return subprocess.Popen(
            [sys.executable, "-m", "arclib", *args], cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, **popen,
        )  # fmt: skip
    if process:
        out = subprocess.run(
            [sys.executable, "-m", "arclib", *args], cwd=ROOT, capture_output=True, text=True
        )
    else:
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = main(args)
            except SystemExit as e:  # argparse and LightningCLI exit on bad input
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out = subprocess.CompletedProcess(args, code, stdout.getvalue(), stderr.getvalue())
    if check:
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def metrics_rows(run_dir: Path) -> list[dict]:
    with open(next(run_dir.rglob("metrics.csv"))) as f:
        return list(csv.DictReader(f))


def test_trial69_recipe_from_the_configs(tmp_path):
    exp = load_experiment("exp_3_champion", "full", "--output_root", str(tmp_path))
    trainer, module = exp.trainer, exp.model
    optimizer_config = module.configure_optimizers()
    opt, sched = optimizer_config["optimizer"], optimizer_config["lr_scheduler"]["scheduler"]
    assert type(opt) is torch.optim.Adam
    group = opt.param_groups[0]
    assert (
        group["lr"] == 0.0018498849832733245
        and group["betas"] == (0.95, 0.999)
        and group["weight_decay"] == 0
    )
    assert type(sched) is torch.optim.lr_scheduler.CosineAnnealingWarmRestarts
    assert (sched.T_0, sched.T_mult, sched.eta_min) == (6, 1, 1.6816632143867157e-06)
    assert trainer.gradient_clip_val == 1.0 and trainer.max_epochs == 100
    assert exp.datamodule.hparams.batch_size == 32 and exp.datamodule.hparams.seed == 307
    callbacks = {type(c): c for c in trainer.callbacks}
    stop = callbacks[EarlyStopping]
    assert stop.patience == 7 and stop.monitor == "heldout_loss"
    best = next(c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.save_top_k == 3)
    assert (
        best.monitor == "heldout_loss"
        and best.save_last
        and best.dirpath == str(tmp_path / "checkpoints/exp_3_champion/seed_307")
    )
    assert callbacks[LearningRateMonitor].logging_interval == "epoch"
    assert {type(lg) for lg in trainer.loggers} == {TensorBoardLogger, AppendingCSVLogger}
    assert all("exp_3_champion/seed_307" in lg.log_dir for lg in trainer.loggers)
    assert trainer.precision == resolve_precision("auto")
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


class _StepLearningRates(Callback):
    def __init__(self):
        self.lrs = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.lrs.append(optimizer.param_groups[0]["lr"])


def step_learning_rates(
    tmp_path, warmup: int, epochs: int, ckpt_path=None
) -> tuple[list[float], list[float]]:
    """The rate of each optimiser step of a smoke run (2 steps an epoch, cosine restarting every 2 epochs), and
    what the recipe's schedule gives for 6 steps: base, base, halfway, halfway, base, base."""
    exp = load_experiment(
        "exp_3_champion", "smoke", "--output_root", str(tmp_path), f"--trainer.max_epochs={epochs}",
        "--model.scheduler_t0=2", f"--model.warmup_steps={warmup}", "--model.generate_per_task=0",
        "--trainer.enable_progress_bar=false",
    )  # fmt: skip
    record = _StepLearningRates()
    exp.trainer.callbacks.append(record)
    exp.trainer.fit(exp.model, datamodule=exp.datamodule, ckpt_path=ckpt_path)
    base, low = exp.model.hparams.lr, exp.model.hparams.eta_min
    mid = low + (base - low) / 2
    return record.lrs, [base, base, mid, mid, base, base]


@pytest.mark.parametrize("warmup", [0, 4])
def test_warmup_scales_the_cosine_per_step_and_then_leaves_it_alone(tmp_path, warmup):
    """A 4-step warm-up crosses an epoch boundary, where it must scale the cosine's new value rather than the
    base rate; with 0 the recipe's schedule is unchanged."""
    lrs, recipe = step_learning_rates(tmp_path, warmup, epochs=3)
    scale = [1 / 4, 2 / 4, 3 / 4, 1, 1, 1] if warmup else [1] * 6
    assert lrs == pytest.approx([s * lr for s, lr in zip(scale, recipe)], rel=1e-12)


def test_warmup_resumes_where_it_stopped(tmp_path):
    step_learning_rates(tmp_path, 4, epochs=1)  # stops after 2 of the 4 warm-up steps
    lrs, recipe = step_learning_rates(tmp_path, 4, epochs=3, ckpt_path="last")
    assert lrs == pytest.approx([3 / 4 * recipe[2], *recipe[3:]], rel=1e-12)


def test_monitor_can_be_the_heldout_loss(tmp_path):
    exp = load_experiment(
        "exp_0_encoder_decoder", "smoke", "--monitor", "heldout_loss", "--output_root", str(tmp_path)
    )
    monitored = [
        c.monitor
        for c in exp.trainer.callbacks
        if isinstance(c, (EarlyStopping, ModelCheckpoint)) and c.monitor
    ]
    assert monitored == ["heldout_loss", "heldout_loss"]


@pytest.mark.parametrize("experiment", MODEL_NAMES)
def test_every_experiment_trains_from_the_cli(tmp_path, experiment):
    fit_cli(tmp_path, experiment)
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints" / experiment / "seed_307").glob("*.ckpt"))
    assert "last.ckpt" in ckpts
    assert any(n.startswith(f"{experiment}-epoch=01-val_loss=") for n in ckpts), ckpts
    rows = metrics_rows(tmp_path / "runs" / experiment / "seed_307")
    val = [float(r["val_loss"]) for r in rows if r.get("val_loss")]
    assert len(val) == 2 and all(math.isfinite(v) for v in val)
    columns = set(rows[0])
    for name in ("heldout_loss", "val_gen_exact", "heldout_gen_shape", "val/a9f96cdd_loss", "lr-Adam"):
        assert name in columns, name
    assert (tmp_path / "runs" / experiment / "seed_307" / "version_0").is_dir()


def test_resume_continues_from_last_checkpoint(tmp_path):
    no_generation = "--model.generate_per_task=0"  # not under test, and most of a smoke run's time
    fit_cli(tmp_path, "exp_1_grid2d", "--trainer.max_epochs=1", no_generation)
    last = tmp_path / "checkpoints/exp_1_grid2d/seed_307/last.ckpt"
    step = load_checkpoint(last)["global_step"]
    assert step > 0
    fit_cli(tmp_path, "exp_1_grid2d", "--trainer.max_epochs=2", "--ckpt_path", "last", no_generation)
    resumed = load_checkpoint(last)
    assert resumed["epoch"] == 1 and resumed["global_step"] == 2 * step


def test_kill_mid_epoch_then_resume_matches_the_uninterrupted_run(tmp_path):
    """SIGKILL a real training process mid-epoch (dropout on), resume from
    last.ckpt: the final weights and validation loss equal those of a run that was never killed."""
    args = (
        "--checkpoint_every_n_steps=2", "--trainer.max_epochs=3", "--data.train_per_task=12",
        "--model.generate_per_task=0", '--model.model_overrides={"dropout": 0.1}',
    )  # fmt: skip
    steps_per_epoch = 14 * 12 // 8  # 14 training tasks, batch 8 in the smoke profile
    killed_root, whole_root = tmp_path / "killed", tmp_path / "whole"
    proc = fit_cli(killed_root, "exp_0_encoder_decoder", *args, popen={"start_new_session": True})
    ckpt_dir = killed_root / "checkpoints/exp_0_encoder_decoder/seed_307"

    def mid_second_epoch() -> bool:
        last = ckpt_dir / "last.ckpt"
        if not list(ckpt_dir.glob("*epoch=00*")) or not last.exists():
            return False
        return load_checkpoint(last)["global_step"] >= steps_per_epoch + 4

    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not mid_second_epoch():
        time.sleep(0.1)
    assert proc.poll() is None, "training ended before it could be killed:\n" + proc.stdout.read()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = {p.name: p.read_bytes() for p in ckpt_dir.glob("*.ckpt")}
    for name in saved:  # every file on disk is complete and loads
        load_checkpoint(ckpt_dir / name)
    killed_at = load_checkpoint(ckpt_dir / "last.ckpt")
    assert killed_at["global_step"] % steps_per_epoch != 0  # the kill came mid-epoch
    epoch_ckpt = next(n for n in saved if "epoch=00" in n)
    out = fit_cli(killed_root, "exp_0_encoder_decoder", *args, "--ckpt_path", "last", process=True)
    assert "Restoring states from the checkpoint" in out.stdout + out.stderr
    fit_cli(whole_root, "exp_0_encoder_decoder", *args)

    def final(root):
        last = load_checkpoint(root / "checkpoints/exp_0_encoder_decoder/seed_307/last.ckpt")
        val = [r["val_loss"] for r in metrics_rows(root / "runs") if r.get("val_loss")]
        return last["global_step"], state_hash(last["state_dict"]), val[-1]

    assert final(killed_root) == final(whole_root)
    assert final(whole_root)[0] == 3 * steps_per_epoch
    # The epoch-0 checkpoint saved before the kill is untouched unless top-3 replaced it with a better one.
    if (ckpt_dir / epoch_ckpt).exists():
        assert (ckpt_dir / epoch_ckpt).read_bytes() == saved[epoch_ckpt]


def test_two_process_ddp_on_cpu(tmp_path):
    out = fit_cli(
        tmp_path, "exp_2_perminv", "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp",
        "--trainer.max_epochs=1", process=True,  # DDP launches its workers by re-running the command line
    )  # fmt: skip
    assert "distributed_backend=gloo" in out.stdout + out.stderr
    assert (tmp_path / "checkpoints/exp_2_perminv/seed_307/last.ckpt").exists()


def test_same_seed_same_metrics(tmp_path):
    def run(folder):
        exp = load_experiment("exp_3_champion", "smoke", "--output_root", str(tmp_path / folder))
        exp.trainer.fit(exp.model, datamodule=exp.datamodule)
        return {k: float(v) for k, v in exp.trainer.callback_metrics.items()}

    first, second = run("a"), run("b")
    assert first == second and "val_loss" in first


def test_non_finite_loss_stops_training_naming_the_step(tmp_path):
    exp = load_experiment("exp_0_encoder_decoder", "smoke", "--output_root", str(tmp_path))
    model = exp.model.model
    original = model.forward
    calls = {"n": 0}

    def poisoned(batch):
        calls["n"] += 1
        logits = original(batch)
        return logits * float("nan") if calls["n"] >= 3 else logits

    model.forward = poisoned
    exp.model.hparams.generate_per_task = 0
    with pytest.raises(DivergenceError, match="global step"):  # the first validation already sees NaN
        exp.trainer.fit(exp.model, datamodule=exp.datamodule)
    for ckpt in (tmp_path / "checkpoints").rglob("*.ckpt"):
        state = load_checkpoint(ckpt)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model.model_name", "exp_9_nonsense"], "exp_9_nonsense"),
        (["--data.split", "bogus"], "data.split: 'bogus' is not one of"),
        (["--data.data_dir", "/nonexistent/arc"], "/nonexistent/arc"),
        (["--model.preset", "huge"], "huge"),
        (["--data.batch_size", "many"], "batch_size"),
        (["--model.warmup_steps=-1"], "model.warmup_steps: -1 must be a number >= 0"),
    ],
)
def test_bad_config_values_get_clear_errors(tmp_path, args, message):
    out = fit_cli(tmp_path, "exp_3_champion", *args, check=False)
    assert out.returncode != 0
    assert message in out.stdout + out.stderr
    assert not list((tmp_path / "checkpoints").rglob("*.ckpt"))

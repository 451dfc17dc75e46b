"""The robustness table (issue 13): one test per case a hostile user tried. The README's Robustness section
counts these cases.

Groups: divergence, run folders and log versions, exact resume, early config errors, held-out files,
checkpoint integrity, data file errors, checkpoint hyperparameters and files, command line.
"""

import csv
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import lightning as L
import pytest
import torch

from arclib.__main__ import main
from arclib.data.grids import MAX_TASK_FILE_BYTES, GridError, load_task
from arclib.evaluation import cli as evaluate_cli
from arclib.training import load_checkpoint, load_experiment, load_model
from arclib.training.callbacks import RunLockedError, acquire_run_lock, release_run_lock
from arclib.training.checkpoints import (
    AtomicCheckpointIO,
    CheckpointError,
    DivergenceError,
    state_hash,
)
from arclib.training.cli import make_cli
from arclib.training.module import ArcLitModule
from arclib.training.validation import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "exp_0_encoder_decoder"
FAST = ("--model.generate_per_task=0", "--trainer.enable_progress_bar=false")


def ckpt_dir(root: Path, experiment: str = EXPERIMENT, seed: int = 307) -> Path:
    return root / "checkpoints" / experiment / f"seed_{seed}"


def run_dir(root: Path, experiment: str = EXPERIMENT, seed: int = 307) -> Path:
    return root / "runs" / experiment / f"seed_{seed}"


def experiment(root: Path, *args: str):
    return load_experiment(EXPERIMENT, "smoke", "--output_root", str(root), *FAST, *args)


def fit(root: Path, *args: str, callbacks=(), ckpt_path=None) -> dict:
    """Train in this process; returns the final metrics and a hash of the final weights."""
    exp = experiment(root, *args)
    exp.trainer.callbacks.extend(callbacks)
    try:
        exp.trainer.fit(exp.model, datamodule=exp.datamodule, ckpt_path=ckpt_path)
    except Stop:
        pass
    metrics = {k: float(v) for k, v in exp.trainer.callback_metrics.items()}
    return {"metrics": metrics, "weights": state_hash(exp.model.state_dict()), "log_dir": exp.trainer.log_dir}


def fit_main(root: Path, *args: str, experiment_name: str = EXPERIMENT) -> int:
    return main(
        [
            "fit", "--config", f"configs/{experiment_name}.yaml", "--config", "configs/profiles/smoke.yaml",
            "--output-root", str(root), *FAST, *args,
        ]
    )  # fmt: skip


def files_under(folder: Path) -> list[str]:
    return (
        sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        if folder.exists()
        else []
    )


class Stop(Exception):
    """Stands in for a kill: raised by StopAt once the checkpoint to resume from is on disk."""


class StopAt(L.Callback):
    def __init__(self, step: int | None = None, epoch_start: int | None = None):
        self.step, self.epoch_start = step, epoch_start

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:  # after PeriodicCheckpoint wrote last.ckpt at this step
            raise Stop

    def on_train_epoch_start(self, trainer, *args) -> None:
        if trainer.current_epoch == self.epoch_start:  # last.ckpt is the previous epoch's end
            raise Stop


def good_checkpoint(**hparams) -> dict:
    module = ArcLitModule("exp_0_encoder_decoder", "tiny")
    return {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams) | hparams,
        "global_step": 3,
        "epoch": 0,
    }


# 1. Divergence -----------------------------------------------------------------------------------------------


def test_divergence_command_exits_nonzero_and_saves_no_nan_checkpoint(tmp_path):
    """The issue's command (without free generation, which plays no part): one batch per epoch at lr 1e6; the
    weights explode at the last step of an epoch."""
    cmd = [
        sys.executable, "-m", "arclib", "fit", "--config", f"configs/{EXPERIMENT}.yaml",
        "--config", "configs/profiles/smoke.yaml", "--output-root", str(tmp_path),
        "--trainer.enable_progress_bar=false", "--model.lr", "1e6", "--data.batch_size", "64",
        "--model.generate_per_task=0",
    ]  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    error = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert error and "diverged" in error[0] and "global step" in error[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    saved = list(tmp_path.rglob("*.ckpt"))
    assert not [p for p in saved if "nan" in p.name]
    for path in saved:  # whatever was saved holds finite weights (load_checkpoint refuses others)
        load_checkpoint(path)


def test_divergence_keeps_the_last_finite_last_ckpt(tmp_path):
    """Saving every step: last.ckpt must keep the last finite weights, so a resume does not restart from NaN.
    (Several batches an epoch: no mid-epoch last.ckpt is written at an epoch's last batch.)"""
    args = (
        "--model.lr=1e6",
        "--data.batch_size=8",
        "--data.train_per_task=4",
        "--checkpoint_every_n_steps=1",
    )
    with pytest.raises(DivergenceError, match="global step"):
        fit(tmp_path, *args)
    last = load_checkpoint(ckpt_dir(tmp_path) / "last.ckpt")  # refuses non-finite weights
    assert last["global_step"] >= 1
    assert not [p for p in tmp_path.rglob("*.ckpt") if "nan" in p.name]


def test_checkpoint_io_refuses_to_write_non_finite_weights(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(good_checkpoint(), path)
    before = path.read_bytes()
    bad = good_checkpoint()
    next(iter(bad["state_dict"].values())).view(-1)[0] = float("inf")
    with pytest.raises(DivergenceError, match="global step 3"):
        AtomicCheckpointIO().save_checkpoint(bad, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["last.ckpt"]


def test_non_finite_gradient_norm_stops_before_the_step():
    module = ArcLitModule("exp_0_encoder_decoder", "tiny")
    for p in module.parameters():
        p.grad = torch.zeros_like(p)
    module.on_before_optimizer_step(None)  # finite: no error
    next(module.parameters()).grad.view(-1)[0] = float("inf")
    with pytest.raises(DivergenceError, match="gradient norm"):
        module.on_before_optimizer_step(None)


# 2. One run, one folder --------------------------------------------------------------------------------------


def test_log_version_is_resolved_on_the_real_output_path(tmp_path):
    (run_dir(tmp_path) / "version_0").mkdir(parents=True)
    (run_dir(tmp_path) / "version_3").mkdir()
    exp = experiment(tmp_path)
    assert {lg.log_dir for lg in exp.trainer.loggers} == {str(run_dir(tmp_path) / "version_4")}


def test_second_run_gets_version_1_and_both_logs_survive(tmp_path):
    first = fit(tmp_path, "--trainer.max_epochs=1")
    second = fit(tmp_path, "--trainer.max_epochs=1")
    assert Path(first["log_dir"]).name == "version_0" and Path(second["log_dir"]).name == "version_1"
    for version in ("version_0", "version_1"):
        with open(run_dir(tmp_path) / version / "metrics.csv") as f:
            assert any(row.get("val_loss") for row in csv.DictReader(f))


def test_concurrent_fit_of_the_same_run_is_refused_before_writing(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from arclib.training.callbacks import acquire_run_lock; "
         "acquire_run_lock(sys.argv[1]); print('locked', flush=True); time.sleep(120)", str(ckpt_dir(tmp_path))],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env=os.environ | {"PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = files_under(tmp_path)
        with pytest.raises(RunLockedError, match=f"another fit .*pid {holder.pid}"):
            make_cli(["fit", "--config", f"configs/{EXPERIMENT}.yaml", "--output_root", str(tmp_path), *FAST])
        assert files_under(tmp_path) == before  # no log, config or checkpoint of the refused run
    finally:
        holder.kill()
        holder.wait()
    acquire_run_lock(ckpt_dir(tmp_path))  # the lock died with its holder
    release_run_lock(ckpt_dir(tmp_path))


# 3. Exact resume ---------------------------------------------------------------------------------------------

# Dropout on (the tiny preset has none), so the randomness of training steps is part of what must replay; a
# DataLoader worker prefetching (Lightning then builds the resumed epoch's iterator twice).
RESUME_ARGS = (
    "--data.num_workers=1",
    "--data.train_per_task=4",
    "--trainer.max_epochs=3",
    "--checkpoint_every_n_steps=2",
    '--model.model_overrides={"dropout": 0.1}',
)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return fit(tmp_path_factory.mktemp("uninterrupted"), *RESUME_ARGS)


@pytest.mark.parametrize(
    "stop, resume_step",
    [(StopAt(step=10), 10), (StopAt(epoch_start=1), 7), (StopAt(step=14), 12)],
    ids=["mid_epoch", "epoch_boundary", "after_an_epochs_last_batch"],
)
def test_resume_ends_with_the_uninterrupted_metrics(tmp_path, uninterrupted, stop, resume_step):
    # 7 steps an epoch (14 tasks x 4 queries, batch 8), last.ckpt every 2 steps. Killed after an epoch's last
    # batch but before its validation, the run resumes from the step before: a checkpoint there would resume
    # into an epoch with no batches left and no validation metric.
    fit(tmp_path, *RESUME_ARGS, callbacks=[stop])
    last = ckpt_dir(tmp_path) / "last.ckpt"
    assert load_checkpoint(last)["global_step"] == resume_step
    resumed = fit(tmp_path, *RESUME_ARGS, ckpt_path=str(last))
    assert resumed["metrics"] == uninterrupted["metrics"] and "val_loss" in resumed["metrics"]
    assert resumed["weights"] == uninterrupted["weights"]


def test_resume_from_the_cli_appends_to_its_own_logs(tmp_path):
    assert fit_main(tmp_path, "--trainer.max-epochs=1") == 0
    assert fit_main(tmp_path, "--trainer.max-epochs=2", "--ckpt-path", "last") == 0
    assert [p.name for p in run_dir(tmp_path).iterdir()] == ["version_0"]
    assert load_checkpoint(ckpt_dir(tmp_path) / "last.ckpt")["epoch"] == 1
    with open(run_dir(tmp_path) / "version_0" / "metrics.csv") as f:
        epochs = [row["epoch"] for row in csv.DictReader(f) if row.get("val_loss")]
    assert epochs == ["0", "1"]  # the first run's row kept, the resumed run's appended


# 4. Bad values fail early, before anything is written -----------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data.batch_size", "-4"], "data.batch_size: -4 must be a number >= 1"),
        (["--data.batch_size", "0"], "data.batch_size: 0 must be"),
        (["--data.n_context", "0"], "data.n_context: 0 must be"),
        (["--data.split", "bogus"], "data.split: 'bogus' is not one of seed, random, by_example"),
        (["--model.lr", "-1"], "model.lr: -1.0 must be a finite number > 0"),
        (["--data.num_workers", "-1"], "data.num_workers: -1 must be"),
        (["--data.train_per_task", "-5"], "data.train_per_task: -5 must be"),
        (["--data.curriculum_epochs", "-1"], "data.curriculum_epochs: -1 must be a number >= 0"),
        (["--data.curriculum_epochs", "3", "--data.train_per_task", "null"], "needs data.train_per_task"),
        (["--trainer.max_epochs", "0"], "trainer.max_epochs: 0 must be"),
        (["--checkpoint_every_n_steps", "0"], "checkpoint_every_n_steps: 0 must be"),
        (["--model.preset", "huge"], "model.preset: 'huge' is not one of matched, tiny"),
        (["--model.model_overrides", '{"d_modle": 64}'], "unknown key 'd_modle'"),
        (["--model.model_overrides", '{"d_model": 16384}'], "the limit is"),
        (["--ckpt_path", "last"], "no checkpoint at"),
        (["--ckpt_path", "/nonexistent/x.ckpt"], "no checkpoint at /nonexistent/x.ckpt"),
    ],
    ids=lambda v: v[0].lstrip("-") if isinstance(v, list) else None,
)
def test_bad_values_fail_before_anything_is_written(tmp_path, capsys, args, message):
    assert fit_main(tmp_path, *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1], err
    assert files_under(tmp_path) == []


def test_unwritable_checkpoint_folder_fails_at_start(tmp_path, capsys):
    (tmp_path / "checkpoints").write_text("a file where the folder should be")
    assert fit_main(tmp_path) == 2
    assert "checkpoints: cannot write to" in capsys.readouterr().err
    assert files_under(tmp_path) == ["checkpoints"]


def test_bad_data_leaves_no_run_folder(tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data", data)
    (data / "tasks" / "1190e5a7.json").write_text('{"train": [{"input": [[1, 2], [3]], "output": [[0]]}]}')
    out = tmp_path / "out"
    assert fit_main(out, "--data.data_dir", str(data)) == 2
    err = capsys.readouterr().err
    assert "1190e5a7.json: train pair 0 input: ragged grid" in err and "Traceback" not in err
    assert files_under(out) == []  # no TensorBoard events file, no config.yaml


# 5. Held-out files ------------------------------------------------------------------------------------------


def test_missing_heldout_file_is_an_error_unless_allowed(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data", data)
    (data / "heldout" / "1190e5a7.json").unlink()
    exp = experiment(tmp_path, "--data.data_dir", str(data))
    with pytest.raises(FileNotFoundError, match=r"missing held-out file\(s\) 1190e5a7.json"):
        exp.datamodule.setup("fit")
    exp = experiment(tmp_path, "--data.data_dir", str(data), "--data.heldout_optional=true")
    exp.datamodule.setup("fit")
    assert len(exp.datamodule.examples["heldout"]) == 13


def test_heldout_validation_uses_the_select_half(tmp_path):
    from arclib.data.split import heldout_slice

    exp = experiment(tmp_path)
    exp.datamodule.setup("fit")
    full = load_task(ROOT / "data" / "heldout" / "05269061.json").train
    chosen = exp.datamodule.examples["heldout"]["05269061"]
    expected = heldout_slice(full, "select")
    assert len(chosen) == len(expected) < len(full)
    assert all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(chosen, expected))


# 6. Checkpoint integrity ------------------------------------------------------------------------------------


def test_damaged_tensor_bytes_are_caught_by_the_hash(tmp_path):
    path = tmp_path / "a.ckpt"
    AtomicCheckpointIO().save_checkpoint(good_checkpoint(), path)
    load_checkpoint(path)
    with zipfile.ZipFile(path) as z:  # torch stores tensors uncompressed: flip one byte of the largest
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    header = info.header_offset  # local file header: 30 bytes, then its own name and extra field
    start = header + 30 + int.from_bytes(data[header + 26 : header + 28], "little")
    start += int.from_bytes(data[header + 28 : header + 30], "little")
    data[start + info.file_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="a.ckpt: damaged checkpoint"):
        load_checkpoint(path)


def test_nan_weights_are_refused_on_load(tmp_path):
    checkpoint = good_checkpoint()
    next(iter(checkpoint["state_dict"].values())).view(-1)[0] = float("nan")
    torch.save(checkpoint, tmp_path / "nan.ckpt")  # written behind the safe writer's back
    with pytest.raises(CheckpointError, match="nan.ckpt: refused: non-finite weights"):
        load_model(tmp_path / "nan.ckpt")


# 7. Data file errors ----------------------------------------------------------------------------------------


def test_non_utf8_task_file_is_named(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(b'{"train": [{"input": [[1]], "output": [[2]]}], "x": "\xff\xfe"}')
    with pytest.raises(GridError, match="bad.json: not UTF-8 text"):
        load_task(path)


def test_deeply_nested_task_file_is_named(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(GridError, match="deep.json: JSON nested too deeply"):
        load_task(path)


def test_nested_cell_value_is_reported_briefly(tmp_path):
    path = tmp_path / "cell.json"
    cell = "[" * 500 + "1" + "]" * 500  # parses, but its repr would be 1,000 characters
    path.write_text('{"train": [{"input": [[' + cell + ']], "output": [[1]]}]}')
    with pytest.raises(
        GridError, match=r"cell.json: train pair 0 input: cell \(0, 0\) is \[\[\[\.\.\.\]\]\]"
    ) as e:
        load_task(path)
    assert len(str(e.value)) < len(str(path)) + 80


def test_oversized_task_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.json"
    with open(path, "wb") as f:
        f.truncate(MAX_TASK_FILE_BYTES + 1)  # sparse: no need to write 16 MB
    with pytest.raises(GridError, match="big.json: 16,777,217 bytes, more than"):
        load_task(path)


def test_evaluate_reports_a_bad_grid_as_an_error_line(tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data" / "tasks", data / "tasks")
    (data / "tasks" / "a9f96cdd.json").write_text('{"train": [{"input": [[1, 12]], "output": [[0]]}]}')
    code = evaluate_cli.main(
        ["--checkpoint", str(tmp_path / "none.ckpt"), "--tasks", "val", "--data-dir", str(data)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: ") and "a9f96cdd.json: train pair 0 input: cell (0, 1) has colour 12" in err


# 8. Checkpoint hyperparameters and files -------------------------------------------------------------------


def test_huge_model_in_a_checkpoint_is_refused_before_it_is_built(tmp_path):
    path = tmp_path / "huge.ckpt"
    torch.save(good_checkpoint(model_overrides={"d_model": 16384}), path)
    with pytest.raises(
        CheckpointError, match="huge.ckpt: hyper_parameters: about .* parameters .* the limit is"
    ):
        load_model(path)


@pytest.mark.parametrize(
    "hparams, message",
    [
        ({"model_overrides": {"colour": 3}}, "unknown key 'colour'"),
        ({"surprise": 1}, "unknown key(s) 'surprise'"),
        ({"model_name": "exp_9"}, "model_name: 'exp_9' is not one of"),
        ({"model_overrides": {"n_heads": 3}}, "not divisible by n_heads 3"),
    ],
    ids=["override_key", "module_key", "model_name", "heads"],
)
def test_bad_checkpoint_hyperparameters_are_named(tmp_path, hparams, message):
    path = tmp_path / "bad.ckpt"
    torch.save(good_checkpoint(**hparams), path)
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    assert "bad.ckpt" in str(e.value) and message in str(e.value)


def test_stale_temporary_checkpoint_is_removed_at_the_next_start(tmp_path):
    folder = ckpt_dir(tmp_path)
    folder.mkdir(parents=True)
    stale = folder / ".last.ckpt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    keep = folder / "last.ckpt"
    keep.write_bytes(b"not touched")
    acquire_run_lock(folder)
    release_run_lock(folder)
    assert not stale.exists() and keep.exists()


def test_checkpoints_are_readable_by_group_and_others(tmp_path):
    path = tmp_path / "a.ckpt"
    old = os.umask(0o022)
    try:
        AtomicCheckpointIO().save_checkpoint(good_checkpoint(), path)
    finally:
        os.umask(old)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_unknown_override_key_on_the_command_line_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="model.model_overrides: unknown key 'd_modle'; known: d_model"):
        experiment(tmp_path, '--model.model_overrides={"d_modle": 8}')


# 10 (issue 16). Command line --------------------------------------------------------------------------------


def test_fit_help_is_short_and_lists_the_choices(capsys):
    assert main(["fit", "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: python -m arclib fit") and len(text.splitlines()) < 40
    for choice in (
        "exp_3_champion",
        "smoke,cpu,full",
        "seed | random | by_example",
        "val_loss | heldout_loss",
    ):
        assert choice in text
    assert "python -m arclib fit --help-full" in text


def test_full_fit_help_says_python_m_arclib(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help-full"])
    text = capsys.readouterr().out
    assert text.startswith("usage: python -m arclib [options] fit") and "__main__" not in text


def test_abbreviated_options_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        fit_main(tmp_path, "--trainer.max_epoch", "1")
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "unrecognized arguments: --trainer.max_epoch" in err[0]
    with pytest.raises(SystemExit):
        evaluate_cli.build_parser().parse_args(["--checkpoint", "x", "--view", "2"])


def test_bad_type_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        fit_main(tmp_path, "--data.batch_size", "many")
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        e.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and "data.batch_size" in err[0]
    )


def test_fit_takes_dashed_flags_and_prints_its_folders(tmp_path, capsys):
    assert fit_main(tmp_path, "--trainer.max-epochs=1", "--checkpoint-every-n-steps", "3") == 0
    out = capsys.readouterr().out
    assert f"checkpoints:     {ckpt_dir(tmp_path)}" in out
    assert f"logs:            {run_dir(tmp_path) / 'version_0'}" in out
    best = next(line for line in out.splitlines() if line.startswith("best checkpoint:")).split(": ", 1)[1]
    assert Path(best).parent == ckpt_dir(tmp_path) and Path(best).is_file()


def test_evaluate_table_names_its_columns_in_words():
    scores = {"n": 2, "top1": 0.5, "pass2": 1.0, "shape": 1.0, "cell": 0.75}
    table = evaluate_cli.format_table({"no_voting": {"6d0aefbc": scores}, "voting": {"6d0aefbc": scores}})
    header = table.splitlines()[0]
    assert "solved 2 tries" in header and "voted 2 tries" in header and " v " not in header
    legend = table.split("columns")[1].splitlines()[1:]
    assert len(legend) == len(evaluate_cli.TABLE_COLUMNS)  # one line per column
    assert all(line.strip() for line in legend)


def test_evaluate_prints_its_table_on_its_own_lines(capsys, tmp_path):
    path = tmp_path / "a.ckpt"
    AtomicCheckpointIO().save_checkpoint(good_checkpoint(), path)
    code = evaluate_cli.main(
        ["--checkpoint", str(path), "--tasks", "6d0aefbc", "--views", "1", "--device", "cpu"]
    )
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("\ntask ")

"""The analysis report: best-checkpoint choice, evaluation on shared episodes, report files; and the bench command."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from arclib.evaluation.cli import Problem
from arclib.evaluation.report import (
    best_checkpoint,
    evaluate_model,
    exact_heatmap_data,
    format_markdown,
    write_report,
)
from arclib.training.checkpoints import AtomicCheckpointIO
from arclib.training.module import ArcLitModule

ROOT = Path(__file__).resolve().parents[1]


def save(path: Path, epoch: int, model_name: str = "exp_0_encoder_decoder") -> None:
    module = ArcLitModule(model_name, "tiny")
    AtomicCheckpointIO().save_checkpoint(
        {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "epoch": epoch}, path
    )


def test_best_checkpoint_is_the_lowest_monitored_loss(tmp_path):
    d = tmp_path / "exp_0_encoder_decoder"
    save(d / "exp_0_encoder_decoder-epoch=03-val_loss=0.9000.ckpt", 3)
    save(d / "exp_0_encoder_decoder-epoch=05-val_loss=0.4000.ckpt", 5)
    save(d / "exp_0_encoder_decoder-epoch=07-val_loss=0.7000.ckpt", 7)
    save(d / "last.ckpt", 9)
    run = best_checkpoint(d)
    assert run.best_epoch == 5 and run.monitor_value == 0.4 and run.monitor == "val_loss"
    assert best_checkpoint(tmp_path / "nothing") is None


class FlatLogits(torch.nn.Module):
    """Uniform logits for the teacher-forced loss; generation comes from the patched predictor."""

    def forward(self, batch):
        return torch.zeros(*batch.tgt_in.shape, 16)


def test_evaluate_model_scores_free_generation(monkeypatch):
    from arclib.evaluation import report

    def echo_predictor(model, *args, **kwargs):
        return lambda episodes: [(e.query_input.copy(), -1.0) for e in episodes]

    monkeypatch.setattr(report, "model_predictor", echo_predictor)
    same = np.ones((2, 2), np.int8)
    problems = [
        Problem("a", [(same, same)], [same], [same]),  # target == input: echo is right
        Problem("b", [(same, same)], [same], [np.zeros((1, 3), np.int8)]),  # shape changes: echo is wrong
    ]
    metrics = evaluate_model(FlatLogits(), problems)["metrics"]
    assert metrics["a"]["exact"] == 1 and metrics["b"]["exact"] == 0 and metrics["b"]["shape"] == 0
    assert metrics["all"]["exact"] == 0.5 and metrics["all"]["pass2"] == 0.5 and metrics["all"]["copy"] == 1.0
    assert np.isfinite(metrics["all"]["loss"])


def test_report_files_and_heatmap(tmp_path):
    sets = {
        s: {
            "all": {
                "exact": 0.5,
                "pass2": 0.5,
                "shape": 1.0,
                "cell": 0.9,
                "change_recall": None,
                "loss": 0.1,
            },
            "t1": {"exact": 0.25},
        }
        for s in ("val", "heldout", "real18")
    }
    report = {"arc_dataset": "ARC-AGI-1", "per_task": 2, "views": 1, "missing": ["exp_-1_decoder_only"],
              "experiments": {"exp_0_encoder_decoder": {"parameters": 1000, "best_epoch": 2, "monitor": "val_loss", "monitor_value": 0.25, "sets": sets}}, "_predictions": {}}  # fmt: skip
    json_path, md_path = write_report(report, tmp_path)
    assert json.loads(json_path.read_text())["experiments"]["exp_0_encoder_decoder"]["best_epoch"] == 2
    md = md_path.read_text()
    assert (
        "| exp_0_encoder_decoder | 1,000 | 2 | val_loss 0.2500 | 0.500 | 0.500 | 1.000 | 0.900 | n/a | 0.100 |"
        in md
    )
    assert "Missing (no checkpoint): exp_-1_decoder_only" in md and md == format_markdown(report) + "\n"
    names, tasks, matrix = exact_heatmap_data(report, "val")
    assert names == ["exp_0_encoder_decoder"] and tasks == ["t1"] and matrix[0, 0] == 0.25


def test_bench_quick_prints_the_table(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "arclib", "bench", "--quick", "--profile", "smoke", "--experiments", "exp_0_encoder_decoder",
         "exp_3_champion", "--out", str(tmp_path / "bench.json")],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert (
        "device: CPU" in out.stdout and "float32 matmul peak" in out.stdout and "exp_3_champion" in out.stdout
    )
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    for row in rows:
        assert (
            row["train_tokens_per_s"] > 0
            and 0 <= row["padding_fraction"] < 1
            and row["model_flops_per_s"] > 0
        )
        assert row["generation_grids_per_s"] > 0 and row["peak_rss_mb"] > 0

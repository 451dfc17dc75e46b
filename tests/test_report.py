"""The multi-seed report: checkpoint choice by monitor, the report slice, statistics and sentences from known
inputs, cached rebuilds, the `report` command; and the bench command."""

import json
from pathlib import Path

import numpy as np
import pytest

from arclib.__main__ import main as arclib_main
from arclib.data.generate import DATA_DIR, load_examples
from arclib.data.split import heldout_slice, task_split
from arclib.evaluation import report as rp
from arclib.evaluation.cli import Problem
from arclib.models import ABLATION_ARMS, MODEL_NAMES
from arclib.training.checkpoints import AtomicCheckpointIO
from arclib.training.module import ArcLitModule


def save(path: Path, model_name: str = "exp_0_encoder_decoder", epoch: int = 1) -> None:
    module = ArcLitModule(model_name, "tiny")
    AtomicCheckpointIO().save_checkpoint(
        {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "epoch": epoch}, path
    )


def test_best_checkpoint_uses_only_its_monitor(tmp_path):
    d = tmp_path / "exp_0_encoder_decoder" / "seed_1"
    for name in ("epoch=03-heldout_loss=0.9000", "epoch=05-heldout_loss=0.4000", "epoch=06-heldout_loss=nan",
                 "epoch=01-val_loss=0.1000"):  # fmt: skip
        d.mkdir(parents=True, exist_ok=True)
        (d / f"exp_0_encoder_decoder-{name}.ckpt").write_bytes(b"")
    run = rp.best_checkpoint(d, "heldout_loss")
    assert (run.best_epoch, run.monitor_value, run.monitor) == (5, 0.4, "heldout_loss")
    assert rp.best_checkpoint(d, "val_loss").monitor_value == 0.1
    assert rp.best_checkpoint(tmp_path / "nothing", "val_loss") is None
    # one folder (or two runs) named after two monitors: no silent choice
    with pytest.raises(
        rp.ReportError, match="several monitors.*heldout_loss: exp_0_encoder_decoder/seed_1.*--monitor"
    ):
        rp.find_runs(tmp_path)
    runs, monitor, missing = rp.find_runs(tmp_path, "heldout_loss")
    assert monitor == "heldout_loss" and runs["exp_0_encoder_decoder"][1].monitor_value == 0.4
    assert "exp_3_champion" in missing and "exp_0_encoder_decoder" not in missing


def test_heldout_problems_come_from_the_report_slice_only():
    problems = rp.evaluation_problems(per_task=None)
    examples = load_examples(DATA_DIR / "heldout", task_split()["train"])

    def key(task_id, x, y):
        return (task_id, x.shape, x.tobytes(), y.shape, y.tobytes())

    queries = sorted(key(p.task_id, p.test_inputs[0], p.test_outputs[0]) for p in problems["heldout"])
    report = sorted(key(t, x, y) for t, ex in examples.items() for x, y in heldout_slice(ex, "report"))
    select = sorted(key(t, x, y) for t, ex in examples.items() for x, y in heldout_slice(ex, "select"))
    assert queries == report and queries != select  # each report example is a query once; select is not used
    demos = {key(p.task_id, x, y) for p in problems["heldout"] for x, y in p.demos}
    assert demos <= set(report)
    assert sorted({p.task_id for p in problems["val"]}) == task_split()["val"]
    assert len({p.task_id for p in problems["real18"]}) == 18


def test_comparisons_each_arm_against_previous_and_baseline():
    assert rp.comparisons(list(MODEL_NAMES)) == [
        ("exp_-1_decoder_only", "exp_0_encoder_decoder"),
        ("exp_0_encoder_decoder", "exp_1_grid2d"),
        ("exp_1_grid2d", "exp_2_perminv"),
        ("exp_2_perminv", "exp_3_champion"),
        ("exp_0_encoder_decoder", "exp_2_perminv"),
        ("exp_0_encoder_decoder", "exp_3_champion"),
    ]
    assert "d_ff 640" in rp.comparison_label("exp_2_perminv", "exp_3_champion")


def test_the_control_splits_exp_2_to_exp_3_into_its_two_changes():
    pairs = rp.comparisons(list(ABLATION_ARMS))
    assert ("exp_2_perminv", "exp_2_perminv_dff640") in pairs
    assert ("exp_2_perminv_dff640", "exp_3_champion") in pairs
    assert ("exp_2_perminv", "exp_3_champion") in pairs  # the step as the study names it is still compared
    assert rp.comparison_label("exp_2_perminv_dff640", "exp_3_champion").startswith(
        "The context-pair encoder and bridge alone"
    )
    assert ("exp_0_encoder_decoder", "exp_2_perminv_dff640") not in pairs  # the control is no study arm
    # a missing arm breaks its chain links; the baseline comparisons remain
    assert rp.comparisons(["exp_0_encoder_decoder", "exp_2_perminv"]) == [
        ("exp_0_encoder_decoder", "exp_2_perminv")
    ]


def fake_runs(shift: dict[str, float], seeds=(1, 2, 3), tasks=8, rng_seed=0) -> dict:
    """Runs whose loss per (seed, task) is a shared seed and task effect plus noise, shifted per arm; exact
    accuracy is 0.5 - shift (n = 4 queries per task)."""
    rng = np.random.default_rng(rng_seed)
    seed_effect, task_effect = rng.normal(0, 0.1, len(seeds)), rng.normal(1, 0.3, tasks)
    runs = {}
    for arm, delta in shift.items():
        for i, s in enumerate(seeds):
            sets = {}
            for set_name in rp.EVAL_SETS:
                sets[set_name] = {
                    f"t{j}": {
                        "loss": float(seed_effect[i] + task_effect[j] + delta + rng.normal(0, 0.02)),
                        "exact": 0.5 - delta if delta <= 0.5 else 0.0,
                        "shape": 1.0,
                        "cell": 0.9,
                        "n": 4,
                    }
                    for j in range(tasks)
                }
            runs.setdefault(arm, {})[str(s)] = {"sets": sets}
    return runs


def test_statistics_and_conclusions_from_known_runs():
    arms = {"exp_0_encoder_decoder": 0.0, "exp_1_grid2d": -0.25, "exp_2_perminv": -0.25}
    stats = rp.compute_statistics(fake_runs(arms))
    rows = {(r["a"], r["b"]): r for r in stats["comparisons"]["heldout"]["loss"]}
    grid2d = rows[("exp_0_encoder_decoder", "exp_1_grid2d")]
    perminv = rows[("exp_1_grid2d", "exp_2_perminv")]
    assert (
        grid2d["estimate"] == pytest.approx(-0.25, abs=0.02)
        and grid2d["high"] < 0
        and grid2d["p_holm"] < 0.05
    )
    assert perminv["low"] < 0 < perminv["high"] and perminv["seeds"] == [1, 2, 3]
    assert len(rows) == 3  # 0->1, 1->2 and the baseline's 0->2
    adjusted = sorted(r["p_holm"] for r in rows.values())
    assert adjusted[0] == pytest.approx(min(1, 3 * min(r["p_value"] for r in rows.values())))
    arm = stats["arms"]["heldout"]["loss"]["exp_1_grid2d"]
    assert arm["n_seeds"] == 3 and arm["n_tasks"] == 8 and arm["low"] <= arm["estimate"] <= arm["high"]
    grids = stats["exact_grids"]["heldout"]["exp_1_grid2d"]
    assert (grids["k"], grids["n"]) == (0.75 * 4 * 8 * 3, 4 * 8 * 3)  # 0.75 of 96 queries
    cell = stats["per_task"]["heldout"]["exact"]["exp_0_encoder_decoder"]["t0"]
    assert cell == {"mean": 0.5, "sd": 0.0}

    sentences = rp.conclusions(stats)["heldout"]
    assert any(
        s.startswith(
            "Grid2D positions (exp_1_grid2d against exp_0_encoder_decoder) lowers held-out (report slice) loss by 0.2"
        )
        for s in sentences
    )
    assert any(
        s.startswith(
            "Colour-permutation equivariance (exp_2_perminv against exp_1_grid2d): no detectable difference in held-out (report slice) loss"
        )
        for s in sentences
    )
    assert any("raises held-out (report slice) exact accuracy by 0.250" in s for s in sentences)


def test_unpaired_seeds_are_left_out_of_a_comparison():
    runs = fake_runs({"exp_0_encoder_decoder": 0.0, "exp_1_grid2d": 0.0})
    del runs["exp_1_grid2d"]["3"]
    stats = rp.compute_statistics(runs)
    row = stats["comparisons"]["val"]["loss"][0]
    assert row["seeds"] == [1, 2] and row["n_seeds"] == 2
    assert stats["arms"]["val"]["loss"]["exp_0_encoder_decoder"]["n_seeds"] == 3


def echo_predictor(model, *args, **kwargs):
    """Generation that echoes the query input (fast, deterministic)."""
    return lambda episodes: [(e.query_input.copy(), -1.0) for e in episodes]


@pytest.fixture
def echo(monkeypatch):
    """Echoed generation; the loss is still the tiny model's own."""
    monkeypatch.setattr(rp, "model_predictor", echo_predictor)


def test_evaluate_model_scores_each_task(echo):
    same = np.ones((2, 2), np.int8)
    problems = [
        Problem("a", [(same, same)], [same, same], [same, same]),  # target == input: echo is right
        Problem("b", [(same, same)], [same], [np.zeros((1, 3), np.int8)]),  # shape changes: echo is wrong
    ]
    metrics = rp.evaluate_model(ArcLitModule("exp_0_encoder_decoder", "tiny").model, problems)["metrics"]
    assert metrics["a"]["exact"] == 1 and metrics["a"]["n"] == 2 and metrics["b"]["exact"] == 0
    assert metrics["b"]["shape"] == 0 and "all" not in metrics
    assert all(np.isfinite(m["loss"]) and m["loss"] > 0 for m in metrics.values())


def test_evaluate_run_caches_one_run_that_the_report_then_reuses(tmp_path, echo, monkeypatch, capsys):
    checkpoints = tmp_path / "checkpoints"
    for arm in ("exp_0_encoder_decoder", "exp_1_grid2d"):
        save(checkpoints / arm / "seed_1" / f"{arm}-epoch=02-heldout_loss=0.5000.ckpt", arm)
    argv = ["--output-root", str(tmp_path), "--per-task", "1"]
    assert rp.main([*argv, "--evaluate-run", "exp_1_grid2d/1"]) == 0
    assert (checkpoints / "exp_1_grid2d" / "seed_1" / rp.EVALUATION_FILE).exists()
    assert not (checkpoints / "exp_0_encoder_decoder" / "seed_1" / rp.EVALUATION_FILE).exists()
    assert not (checkpoints / "ablation_results.json").exists()  # no report from one run
    evaluated = []
    original = rp.evaluate_model
    monkeypatch.setattr(rp, "evaluate_model", lambda m, p, v: evaluated.append(1) or original(m, p, v))
    assert rp.main([*argv, "--no-figures"]) == 0
    assert len(evaluated) == 3  # only the run not evaluated before, x 3 sets
    for bad, says in (("exp_9/1", "EXPERIMENT one of"), ("exp_1_grid2d/x", "EXPERIMENT/SEED"),
                      ("exp_1_grid2d/2", "seed_2/ folder")):  # fmt: skip
        assert rp.main([*argv, "--evaluate-run", bad]) == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1, err


def test_report_command_rebuilds_from_runs_and_reuses_evaluations(tmp_path, echo, monkeypatch):
    arms = ("exp_0_encoder_decoder", "exp_1_grid2d")
    for arm in arms:
        for seed in (1, 2):
            save(
                tmp_path / "checkpoints" / arm / f"seed_{seed}" / f"{arm}-epoch=02-heldout_loss=0.5000.ckpt",
                arm,
            )
        csv = tmp_path / "runs" / arm / "seed_1" / "version_0" / "metrics.csv"
        csv.parent.mkdir(parents=True)
        csv.write_text("epoch,step,heldout_loss\n0,5,1.5\n1,10,1.2\n")
    argv = ["--output-root", str(tmp_path), "--per-task", "1"]
    assert rp.main(argv) == 0
    report = json.loads((tmp_path / "checkpoints" / "ablation_results.json").read_text())
    assert report["seeds"] == {arm: [1, 2] for arm in arms} and report["monitor"] == "heldout_loss"
    assert report["heldout_slice"] == {"name": "report", "queries": 14}  # 1 query per task
    row = report["statistics"]["comparisons"]["heldout"]["loss"][0]
    assert (row["a"], row["b"], row["n_seeds"], row["n_tasks"]) == (*arms, 2, 14)
    md = (tmp_path / "checkpoints" / "ablation_results.md").read_text()
    assert "Grid2D positions (exp_1_grid2d against exp_0_encoder_decoder)" in md and "'report' half" in md
    assert (
        "| 85c4e7cd | 196 | 24 | 24 | yes |" in md and "| 05269061 | 400 | 50 | 50 |  |" in md
    )  # key counts
    assert "![curves_heldout_loss](ablation_figures/curves_heldout_loss.png)" in md
    assert (tmp_path / "checkpoints" / "ablation_figures" / "forest_heldout_loss.png").stat().st_size > 0

    # a new seed: only that run is evaluated; the others come from their evaluation.json
    evaluated = []
    original = rp.evaluate_model
    monkeypatch.setattr(rp, "evaluate_model", lambda m, p, v: evaluated.append(1) or original(m, p, v))
    save(
        tmp_path / "checkpoints" / arms[1] / "seed_3" / f"{arms[1]}-epoch=01-heldout_loss=0.6000.ckpt",
        arms[1],
    )
    assert rp.main([*argv, "--no-figures"]) == 0
    assert len(evaluated) == 3  # one run x 3 sets
    report = json.loads((tmp_path / "checkpoints" / "ablation_results.json").read_text())
    assert report["seeds"][arms[1]] == [1, 2, 3] and report["statistics"]["comparisons"]["val"]["loss"][0][
        "seeds"
    ] == [1, 2]
    # other evaluation settings do not reuse the cache
    evaluated.clear()
    assert rp.main(["--output-root", str(tmp_path), "--per-task", "2", "--no-figures"]) == 0
    assert len(evaluated) == 5 * 3


def test_report_command_errors(tmp_path, capsys):
    assert rp.main(["--output-root", str(tmp_path)]) == 2
    assert "no runs to report" in capsys.readouterr().err
    assert rp.main(["--output-root", str(tmp_path), "--per-task", "0"]) == 2
    assert "--per-task must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints" / "ablation_results.json").exists()


def test_report_subcommand_is_registered(capsys):
    assert arclib_main(["report", "--help"]) == 0
    out = capsys.readouterr().out
    assert "rebuild" in out.lower() and "--per-task" in out


def test_bench_quick_prints_the_table(tmp_path, capsys):
    code = arclib_main(
        ["bench", "--quick", "--profile", "smoke", "--experiments", "exp_0_encoder_decoder", "exp_3_champion",
         "--out", str(tmp_path / "bench.json")]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "device: CPU" in out and "float32 matmul peak" in out and "exp_3_champion" in out
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    for row in rows:
        assert (
            row["train_tokens_per_s"] > 0
            and 0 <= row["padding_fraction"] < 1
            and row["model_flops_per_s"] > 0
        )
        assert row["generation_grids_per_s"] > 0 and row["peak_rss_mb"] > 0
        assert row["generation_grids_per_s_fp32"] == row["generation_grids_per_s"]  # fp32 already on a CPU


def test_seed_band_curves_span_the_seeds(tmp_path):
    from arclib.viz.statistics import plot_seed_band_curves, seed_curves

    for seed, values in {1: (2.0, 1.0, 0.5), 2: (3.0, 2.0)}.items():  # seed 2 stopped an epoch early
        csv = tmp_path / "exp_1_grid2d" / f"seed_{seed}" / "version_0" / "metrics.csv"
        csv.parent.mkdir(parents=True)
        csv.write_text("epoch,step,heldout_loss\n" + "".join(f"{e},{e},{v}\n" for e, v in enumerate(values)))
    curves = seed_curves(tmp_path, {"exp_1_grid2d": [1, 2, 3]}, "heldout_loss")  # seed 3 has no log
    assert len(curves["exp_1_grid2d"]) == 2
    ax = plot_seed_band_curves(curves).axes[0]
    line = ax.get_lines()[0]
    assert list(line.get_xdata()) == [0, 1] and list(line.get_ydata()) == [
        2.5,
        1.5,
    ]  # epochs both seeds reached
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == 1.0 and band[:, 1].max() == 3.0
    assert "2 seeds" in line.get_label()

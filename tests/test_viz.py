"""Pictures are checked by their pixels: palette colours, orientation and the wrong-cell mask."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from arclib.data.arc import load_arc_task
from arclib.data.tokens import BOS, EOS, PAD, ROW, SEP_IN, SEP_OUT, grid_tokens, tokens_to_grid
from arclib.evaluation.predict import generate_tokens, predict_grids
from arclib.viz import browser as browser_module
from arclib.viz.browser import IN_MEMORY, REAL_ARC, TaskBrowser, context_indices
from arclib.viz.grids import (
    ARC_COLOURS,
    draw_grid,
    gallery_rows,
    invalid_reason,
    new_figure,
    plot_episode,
    plot_gallery,
    plot_prediction,
    plot_task,
    prediction_status,
    wrong_cells,
)
from arclib.viz.live import (
    KNOWN_WARNINGS,
    LivePlotCallback,
    fit_summary,
    plot_learning_curves,
    progress_line,
    quiet_lightning,
    read_metrics_csv,
)
from arclib.viz.statistics import plot_task_heatmap
from arclib.viz.stats import model_table

matplotlib.use("Agg")  # pixel tests need the same raster backend everywhere

# helpers ---------------------------------------------------------------------------------------------------


def render(fig: Figure) -> np.ndarray:
    canvas = FigureCanvasAgg(fig)  # figures come back closed in pyplot, with a bare canvas
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def cell_pixel(image: np.ndarray, ax, shape: tuple[int, int], row: int, col: int) -> tuple[int, ...]:
    """RGBA at the centre of cell (row, col), located from the axes box alone (not the data transform),
    so a flipped or rescaled image would show up as a wrong colour."""
    h, w = shape
    box = ax.get_window_extent()
    x = box.x0 + (col + 0.5) * box.width / w
    y = box.y1 - (row + 0.5) * box.height / h  # display y grows upwards; row 0 is the top of the box
    return tuple(image[image.shape[0] - 1 - int(round(y)), int(round(x))])


def rgba255(colour: str) -> tuple[int, ...]:
    return tuple(int(round(c * 255)) for c in to_rgba(colour))


def panel_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


class FakeModel(torch.nn.Module):
    """Writes the same token sequence for every episode, like a model that always answers `grid`."""

    def __init__(self, grid: np.ndarray | None, tokens=None, on_generate=None):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # predict_grids reads the device from a parameter
        if tokens is None:  # ROW with no cells is not a valid grid
            tokens = np.concatenate([grid_tokens(grid)[0], [EOS]]) if grid is not None else [ROW, ROW, EOS]
        self.tokens = np.asarray(tokens)
        self.on_generate = on_generate

    def generate(self, batch, max_len=None):
        if self.on_generate:
            self.on_generate()
        tokens = torch.as_tensor(self.tokens).expand(len(batch), -1)
        return tokens, torch.full((len(batch),), -1.5)


# grids -----------------------------------------------------------------------------------------------------


def test_colormap_maps_each_colour_to_its_palette_entry():
    grid = np.arange(10).reshape(2, 5)
    for values in (grid, grid[:, :1] * 0 + 3):  # also a one-colour grid: no rescaling to its own min..max
        fig, axes = new_figure(1, 1, panel_inches=5)
        draw_grid(axes[0, 0], values)
        image = render(fig)
        for r in range(values.shape[0]):
            for c in range(values.shape[1]):
                got = cell_pixel(image, axes[0, 0], values.shape, r, c)
                assert got == rgba255(ARC_COLOURS[values[r, c]]), (r, c, values[r, c])


def test_row_zero_is_drawn_at_the_top_and_column_zero_at_the_left():
    grid = np.zeros((4, 3), dtype=np.int8)
    grid[0, 0] = 2  # red top-left
    grid[3, 2] = 1  # blue bottom-right
    fig, axes = new_figure(1, 1, panel_inches=5)
    draw_grid(axes[0, 0], grid, "g")
    image = render(fig)
    assert cell_pixel(image, axes[0, 0], grid.shape, 0, 0) == rgba255(ARC_COLOURS[2])
    assert cell_pixel(image, axes[0, 0], grid.shape, 3, 2) == rgba255(ARC_COLOURS[1])
    assert cell_pixel(image, axes[0, 0], grid.shape, 3, 0) == rgba255(ARC_COLOURS[0])
    assert axes[0, 0].get_title() == "g  4x3"


def test_wrong_cell_mask_marks_exactly_the_wrong_cells():
    target = np.arange(12).reshape(3, 4) % 10
    prediction = target.copy()
    wrong = {(0, 1), (2, 3), (1, 0)}
    for r, c in wrong:
        prediction[r, c] = (prediction[r, c] + 1) % 10
    mask = wrong_cells(prediction, target)
    assert {tuple(map(int, rc)) for rc in np.argwhere(mask)} == wrong
    assert prediction_status(prediction, target) == "wrong: 3 cells"
    assert prediction_status(target, target) == "exact match"

    fig = plot_prediction(target, target, prediction, "t")
    mask_ax = fig.axes[3]
    image = render(fig)
    for r in range(3):
        for c in range(4):
            red = cell_pixel(image, mask_ax, mask.shape, r, c) == rgba255("#FF0000")
            assert red == ((r, c) in wrong), (r, c)
    assert mask_ax.get_title() == "wrong: 3 cells"


def test_shape_mismatch_and_invalid_prediction_are_labelled():
    target = np.zeros((3, 3), dtype=np.int8)
    fig = plot_prediction(target, target, np.zeros((3, 4), dtype=np.int8))
    pred_ax, diff_ax = fig.axes[2], fig.axes[3]
    assert pred_ax.get_title() == "SHAPE MISMATCH 3x4 vs target 3x3"
    assert to_rgba(pred_ax.title.get_color())[:3] != (0, 0, 0)  # drawn in the alert colour
    assert to_rgba(pred_ax.spines["top"].get_edgecolor()) == to_rgba("#D00000")
    assert any("shape mismatch" in t for t in panel_texts(diff_ax))
    assert prediction_status(np.zeros((3, 4)), target) == "shape mismatch 3x4 vs target 3x3"

    fig = plot_prediction(target, target, None)
    assert "no valid grid" in panel_texts(fig.axes[2])
    assert not fig.axes[2].images  # an empty panel, no picture
    assert prediction_status(None, target) == "no valid grid"


def test_task_episode_and_gallery_figures_have_the_expected_panels():
    task = load_arc_task("05269061")
    fig = plot_task(task)
    assert len(fig.axes) == 2 * (len(task.train) + len(task.test))
    assert fig.axes[0].get_title() == "demo 0 in  7x7"
    assert len(plot_task(task.train, "pairs").axes) == 2 * len(task.train)

    ep = browser_module.Episode("t", task.train[:2], task.test[0][0], None)
    fig = plot_episode(ep)
    assert len(fig.axes) == 6 and "?" in panel_texts(fig.axes[5])

    x = np.zeros((2, 2), dtype=np.int8)
    fig = plot_gallery([(x, x, x, "a"), (x, x, None), (x, x, np.zeros((1, 2)))])
    assert len(fig.axes) == 12
    assert fig.axes[0].get_title() == "a\ninput  2x2"


# live curves -----------------------------------------------------------------------------------------------


def fake_trainer(epoch: int, metrics: dict, sanity: bool = False):
    return SimpleNamespace(
        sanity_checking=sanity,
        is_global_zero=True,
        current_epoch=epoch,
        global_step=10 * (epoch + 1),
        callback_metrics={k: torch.tensor(v) for k, v in metrics.items()},
    )


def test_live_callback_records_history_and_draws_nothing_outside_a_notebook(capsys):
    cb = LivePlotCallback()
    cb.on_validation_end(fake_trainer(0, {"val_loss": 9.0}, sanity=True), None)  # sanity check: not recorded
    cb.on_validation_end(fake_trainer(0, {"train_loss": 2.0, "val_loss": 1.5, "other": 3.0}), None)
    cb.on_validation_end(fake_trainer(1, {"train_loss": 1.0, "val_loss": 1.2, "val_gen_exact": 0.25}), None)
    assert cb.history == [
        {"epoch": 0, "step": 10, "train_loss": 2.0, "val_loss": 1.5},
        {"epoch": 1, "step": 20, "train_loss": 1.0, "val_loss": pytest.approx(1.2), "val_gen_exact": 0.25},
    ]
    assert cb._output is None and capsys.readouterr().out == ""
    fig = cb.figure()
    labels = {line.get_label() for ax in fig.axes for line in ax.lines}
    assert labels == {"train_loss", "val_loss", "val_gen_exact"}


class _TinyModule(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.layer(batch[0]).pow(2).mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_live_callback_in_a_real_trainer_records_one_entry_per_epoch():
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=4)
    cb = LivePlotCallback()
    trainer = L.Trainer(
        max_epochs=3,
        callbacks=[cb],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(_TinyModule(), data, data)
    assert [h["epoch"] for h in cb.history] == [0, 1, 2]
    assert all({"train_loss", "val_loss"} <= h.keys() for h in cb.history)


def test_plot_learning_curves_reads_sparse_csvlogger_files(tmp_path):
    csv_a = tmp_path / "a.csv"
    csv_a.write_text(
        "epoch,step,train_loss,val_loss,val_gen_exact\n"
        "0,4,2.0,,\n"
        "0,9,1.0,,\n"
        "0,9,,1.4,0.0\n"
        "1,14,0.5,,\n"
        "1,19,,1.1,0.5\n"
    )
    csv_b = tmp_path / "b.csv"
    csv_b.write_text("epoch,step,val_loss,heldout_loss\n0,9,2.0,\n0,9,,2.5\n")
    curves = read_metrics_csv(csv_a)
    np.testing.assert_allclose(curves["train_loss"][1], [1.5, 0.5])  # per-step values averaged per epoch
    np.testing.assert_array_equal(curves["val_loss"][0], [0, 1])
    assert "heldout_loss" not in curves
    fig = plot_learning_curves({"a": csv_a, "b": csv_b})
    labels = {line.get_label() for ax in fig.axes for line in ax.lines}
    assert labels == {"a: train_loss", "a: val_loss", "a: val_gen_exact", "b: val_loss", "b: heldout_loss"}


# browser ---------------------------------------------------------------------------------------------------

TASK = "05269061"


@pytest.fixture(scope="module")
def examples():
    """Six examples with distinct random inputs (the output: the input flipped upside down)."""
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 10, size=(3 + k % 3, 4), dtype=np.int8) for k in range(6)]
    return {"train": {TASK: [(x, x[::-1].copy()) for x in inputs]}}


def test_context_never_contains_the_query():
    for query in range(5):
        for seed in range(20):
            ctx = context_indices(5, query, 2, seed)
            assert query not in ctx and len(set(ctx)) == 2 and all(0 <= i < 5 for i in ctx)
    with pytest.raises(ValueError):
        context_indices(2, 0, 2, 0)


def test_browser_episodes_take_context_from_other_examples(examples, tmp_path):
    browser = TaskBrowser(examples=examples, checkpoint_dir=tmp_path, models={"fake": FakeModel(None)})
    pairs = examples["train"][TASK]
    assert browser.index.max == len(pairs) - 1
    for index in range(len(pairs)):
        ep = browser.select(split="train", task=TASK, index=index).episode()
        assert np.array_equal(ep.query_input, pairs[index][0])
        assert len(ep.context) == 2
        assert not any(np.array_equal(x, ep.query_input) for x, _ in ep.context)

    ep = browser.select(split=REAL_ARC, task=TASK, index=0).episode()
    task = load_arc_task(TASK)
    assert np.array_equal(ep.query_input, task.test[0][0]) and np.array_equal(
        ep.query_output, task.test[0][1]
    )
    assert len(ep.context) == len(task.train) > 2  # all real demos, as `evaluate` shows them
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(ep.context, task.train))
    with pytest.raises(ValueError, match="out of range"):
        browser.select(index=5)


def test_browser_predict_shows_the_result(examples, tmp_path):
    browser = TaskBrowser(examples=examples, checkpoint_dir=tmp_path)
    browser.select(split="train", task=TASK, index=3)
    target = browser.episode().query_output
    wrong = target.copy()
    wrong[0, 0], wrong[-1, -1] = (wrong[0, 0] + 1) % 10, (wrong[-1, -1] + 1) % 10
    cases = {
        "exact": (target, "exact match"),
        "two_wrong": (wrong, "wrong: 2 cells"),
        "too_wide": (np.zeros((target.shape[0], target.shape[1] + 1), np.int8), "shape mismatch"),
        "invalid": (None, "no valid grid"),
    }
    browser.models = {name: FakeModel(grid) for name, (grid, _) in cases.items()}
    browser.refresh_experiments()
    for name, (_, status) in cases.items():
        browser.select(experiment=name)
        assert browser.checkpoint.value == IN_MEMORY
        result = browser.predict()
        assert result.status.startswith(status)
        assert status in browser.status.value
        assert "log-probability -1.50" in browser.status.value
        pred_ax, mask_ax = browser.last_figure.axes[2:4]
        shown = (
            pred_ax.get_title() + mask_ax.get_title() + " ".join(panel_texts(pred_ax) + panel_texts(mask_ax))
        )
        assert status in shown.lower() or status in shown
    assert browser.button.description == "Predict"
    assert "arclib-prediction" in browser.output._dom_classes


def test_browser_lists_checkpoints_and_reports_problems_in_the_status(tmp_path):
    (tmp_path / "exp_1").mkdir()
    for name in ("exp_1-epoch=03-val_loss=0.5.ckpt", "last.ckpt", "exp_1-epoch=01-val_loss=0.9.ckpt"):
        (tmp_path / "exp_1" / name).write_bytes(b"")
    (tmp_path / "empty_experiment").mkdir()
    browser = TaskBrowser(checkpoint_dir=tmp_path, data_dir=tmp_path / "no_data")
    assert browser.experiments() == ["exp_1"]
    # the best (lowest monitored loss) first and chosen by default, last.ckpt at the end
    assert browser.checkpoint.options == (
        "exp_1-epoch=03-val_loss=0.5.ckpt",
        "exp_1-epoch=01-val_loss=0.9.ckpt",
        "last.ckpt",
    )
    assert browser.checkpoint.value == "exp_1-epoch=03-val_loss=0.5.ckpt"
    assert "missing" in browser.status.value  # no data files: said in the status, not raised in a callback
    browser._on_click(browser.button)  # the button's handler shows the failure instead of losing it
    assert "FileNotFoundError" in browser.status.value


def test_browser_loads_a_lightning_checkpoint_and_predicts(examples, tmp_path):
    from arclib.training.module import ArcLitModule

    module = ArcLitModule("exp_3_champion", preset="tiny")
    (tmp_path / "exp_3_champion").mkdir()
    torch.save(
        {
            "state_dict": module.state_dict(),
            ArcLitModule.CHECKPOINT_HYPER_PARAMS_KEY: dict(module.hparams),
            "pytorch-lightning_version": L.__version__,
        },
        tmp_path / "exp_3_champion" / "last.ckpt",
    )
    browser = TaskBrowser(examples=examples, checkpoint_dir=tmp_path)
    browser.select(experiment="exp_3_champion", checkpoint="last.ckpt")
    loaded = browser.model()
    assert type(loaded) is type(module.model) and browser.model() is loaded  # loaded once, then cached
    for name, value in module.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    result = browser.predict()
    assert result.status.split()[0] in ("exact", "wrong:", "shape", "no")
    assert result.status in browser.status.value


def test_key_count_plot_marks_closed_world_tasks():
    from arclib.viz.stats import plot_key_counts

    figures = {
        "a": {"train_keys": 400, "select_keys": 50, "report_keys": 50},
        "b": {"train_keys": 105, "select_keys": 0, "report_keys": 0},
    }
    fig = plot_key_counts(figures, {"b": True})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b  (closed world)"]
    assert sorted(round(p.get_width()) for p in ax.patches) == [0, 0, 50, 50, 105, 400]
    matplotlib.pyplot.close(fig)


# why a prediction is no grid ---------------------------------------------------------------------------------

R = ROW


@pytest.mark.parametrize(
    "tokens, reason",
    [
        ([1, 2, R, 3, 4, R, EOS], None),
        ([1, 2, R, 3, 4], "no EOS within the budget"),  # the budget ran out mid-row
        ([1, 2, R, 3, R, EOS], "ragged rows: row 1 has 1 cells, row 0 has 2"),
        ([1, 2, R, 3, SEP_IN, R, EOS], "special token SEP_IN mid-grid"),
        ([1, BOS], "special token BOS mid-grid"),
        ([R, EOS], "empty row 0"),
        ([1, 2, R, 3, EOS], "EOS mid-row"),
        ([EOS], "no rows"),
    ],
)
def test_invalid_reason_names_the_problem(tokens, reason):
    got = invalid_reason(tokens)
    assert (got is None) == (reason is None) and (reason is None or reason in got), got
    assert (tokens_to_grid(tokens) is None) == (reason is not None)


def test_invalid_reason_agrees_with_the_decoder_on_random_sequences():
    rng = np.random.default_rng(0)
    alphabet = [0, 1, 2, R, R, EOS, PAD, BOS, SEP_OUT]
    counts = {True: 0, False: 0}
    for _ in range(3000):
        tokens = [
            int(t)
            for t in rng.choice(alphabet, size=rng.integers(1, 14), p=[0.2] * 3 + [0.12] * 2 + [0.04] * 4)
        ]
        valid = tokens_to_grid(tokens) is not None
        assert (invalid_reason(tokens) is None) == valid, tokens
        counts[valid] += 1
    assert min(counts.values()) > 50  # both outcomes were exercised


def test_missing_grid_panel_says_why_and_shows_the_raw_tokens():
    x = np.zeros((2, 2), dtype=np.int8)
    tokens = [1, 2, R, 3, R, EOS]
    fig = plot_gallery([(x, x, None, "q", tokens)])
    assert any("ragged rows" in t for t in panel_texts(fig.axes[2]))
    strip = fig.axes[3]
    assert strip.images and strip.get_title() == "raw tokens (6)"
    assert {"↵", "E"} <= set(panel_texts(strip))
    long = [1] * 200
    fig = plot_prediction(x, x, None, tokens=long)
    assert "last 96 of 200" in fig.axes[3].get_title()
    assert any("no EOS within the budget" in " ".join(t.split()) for t in panel_texts(fig.axes[2]))  # wrapped


def test_generated_tokens_stop_at_the_padding_and_decode_like_predict_grids(examples):
    grid = np.array([[1, 2], [3, 4]], dtype=np.int8)
    pairs = examples["train"][TASK]
    episodes = [browser_module.Episode(TASK, pairs[1:3], *pairs[0])]
    model = FakeModel(None, tokens=[*grid_tokens(grid)[0], EOS, PAD, PAD])
    ((tokens, logprob),) = generate_tokens(model, episodes)
    assert tokens == [1, 2, R, 3, 4, R, EOS] and logprob == -1.5
    ((decoded, _),) = predict_grids(model, episodes)
    assert np.array_equal(decoded, grid)
    (row,) = gallery_rows(model, episodes, "heldout")
    assert row[3] == f"heldout {TASK}" and row[4] == tokens and np.array_equal(row[2], grid)


# browser behaviour -------------------------------------------------------------------------------------------


def test_browser_is_busy_while_predicting_and_clears_on_a_new_selection(examples, tmp_path):
    seen = []
    browser = TaskBrowser(examples=examples, checkpoint_dir=tmp_path)
    browser.models = {
        "fake": FakeModel(
            None, on_generate=lambda: seen.append((browser.button.disabled, browser.button.description))
        )
    }
    browser.refresh_experiments()
    browser.select(split="train", task=TASK, index=1)
    browser._on_click(browser.button)
    assert seen == [(True, "Predicting…")]  # disabled while generating: a second click cannot queue a run
    assert not browser.button.disabled and browser.button.description == "Predict"
    assert browser.last_figure is not None and "no valid grid: empty row" in browser.status.value
    browser.select(index=2)
    assert browser.last_figure is None and browser.last_result is None and browser.status.value == ""


def test_browser_finds_checkpoints_in_seed_folders_and_falls_back_to_the_experiment_folder(tmp_path):
    seeded = tmp_path / "exp_a" / "seed_307"
    seeded.mkdir(parents=True)
    for name in (
        "last.ckpt",
        "exp_a-epoch=04-heldout_loss=0.3000.ckpt",
        "exp_a-epoch=02-heldout_loss=0.7000.ckpt",
    ):
        (seeded / name).write_bytes(b"")
    (tmp_path / "exp_b").mkdir()
    (tmp_path / "exp_b" / "last.ckpt").write_bytes(b"")
    browser = TaskBrowser(
        checkpoint_dir=tmp_path, examples={"train": {TASK: [(np.zeros((1, 1), np.int8),) * 2] * 3}}
    )
    assert browser.experiments() == ["exp_a", "exp_b"]
    assert browser.checkpoint.value == "seed_307/exp_a-epoch=04-heldout_loss=0.3000.ckpt"
    assert browser.checkpoint.options[-1] == "seed_307/last.ckpt"
    browser.select(experiment="exp_b")
    assert browser.checkpoint.options == ("last.ckpt",)


def test_browser_without_checkpoints_says_so(tmp_path, examples):
    browser = TaskBrowser(examples=examples, checkpoint_dir=tmp_path / "none")
    assert "no checkpoints under" in browser.status.value
    assert browser.button.disabled  # nothing to predict with


# plots ---------------------------------------------------------------------------------------------------------


def _boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_overlaid_learning_curves_keep_legends_outside_and_encode_run_and_metric(tmp_path):
    paths = {}
    for k in range(5):
        paths[f"exp_{k}"] = tmp_path / f"{k}.csv"
        paths[f"exp_{k}"].write_text(
            "epoch,step,train_loss,val_loss,heldout_loss,val_gen_exact\n0,1,2,1.5,1.4,0\n1,2,1,1.2,1.1,0.5\n"
        )
    fig = plot_learning_curves(paths)
    render(fig)
    assert all(ax.get_legend() is None for ax in fig.axes)  # nothing inside the axes
    assert len(fig.legends) == 2
    assert sum(len(lg.get_texts()) for lg in fig.legends) == 5 + 4  # runs + metrics, not runs x metrics
    renderer = fig.canvas.get_renderer()
    for legend in fig.legends:
        for ax in fig.axes:
            assert not _boxes_overlap(legend.get_window_extent(renderer), ax.get_window_extent(renderer))
    loss_ax = fig.axes[0]
    by_run = {}
    for line in loss_ax.lines:
        run, metric = line.get_label().split(": ")
        by_run.setdefault(run, set()).add(line.get_color())
        assert line.get_linestyle() == {"train_loss": ":", "val_loss": "-", "heldout_loss": "--"}[metric]
    assert (
        all(len(colours) == 1 for colours in by_run.values())
        and len({c for v in by_run.values() for c in v}) == 5
    )


def test_live_plot_has_integer_epoch_ticks_and_the_experiment_as_title():
    cb = LivePlotCallback()
    cb.on_fit_start(SimpleNamespace(max_epochs=2), SimpleNamespace(hparams={"model_name": "exp_1_grid2d"}))
    cb.on_validation_end(fake_trainer(0, {"val_loss": 1.5}), None)
    fig = cb.figure()
    render(fig)
    assert fig._suptitle.get_text() == "exp_1_grid2d"
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        assert ax.get_xlim()[1] >= 1  # the axis already spans the run's 2 epochs


def test_progress_line_reads_like_a_status():
    trainer = SimpleNamespace(max_epochs=3, current_epoch=1, global_step=9,
                              callback_metrics={"train_loss": torch.tensor(2.3141), "val_loss": torch.tensor(1.0)})  # fmt: skip
    assert progress_line(trainer) == "training · epoch 2/3 · step 9 · train_loss 2.314"
    assert "val_loss 1.000" in progress_line(trainer, "validated")


def _report(values: dict[str, dict[str, float]], metric: str = "exact") -> dict:
    """A report's per-task block: arms x tasks with the given means over seeds (sd over two seeds 0.1)."""
    rows = {arm: {t: {"mean": v, "sd": 0.1} for t, v in per_task.items()} for arm, per_task in values.items()}
    return {"statistics": {"per_task": {"heldout": {metric: rows}}}}


def _all_texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_heatmap_of_18_tasks_puts_tasks_in_rows_with_readable_numbers():
    from arclib.data.tasks import TASK_IDS

    report = _report({f"exp_{k}": {t: (k * j % 3) / 2 for j, t in enumerate(TASK_IDS)} for k in range(5)})
    fig = plot_task_heatmap(report, "heldout")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == sorted(TASK_IDS)
    numbers = [t for t in ax.texts if t.get_text() != "all 0.000"]
    assert len(numbers) == 18 * 5 and min(t.get_fontsize() for t in numbers) >= 9
    assert numbers[0].get_text() == "0.00 (0.10)"  # the mean and the seeds' spread
    render(fig)
    cell_height_px = ax.get_window_extent().height / 18
    assert cell_height_px >= 1.5 * numbers[0].get_fontsize()  # a row is taller than its text
    cell_width_px = ax.get_window_extent().width / 5
    assert all(t.get_window_extent().width < cell_width_px for t in numbers)  # no number spills over
    assert "all 0.000" not in _all_texts(fig)  # negative control


def test_all_zero_heatmap_says_so():
    zero = _report({"exp_a": {"t1": 0.0, "t2": 0.0}, "exp_b": {"t1": 0.0, "t2": 0.0}})
    assert "all 0.000" in _all_texts(plot_task_heatmap(zero))
    assert "all 0.000" not in _all_texts(plot_task_heatmap(_report({"exp_a": {"t1": 0.0, "t2": 0.5}})))
    assert "all 0.000" not in _all_texts(
        plot_task_heatmap(_report({"exp_a": {"t1": 0.0}}, "loss"), "heldout", "loss")
    )


# quiet notebooks -----------------------------------------------------------------------------------------------


def test_quiet_lightning_hides_banners_and_known_warnings_but_not_others():
    import logging
    import warnings

    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quiet_lightning()
            warnings.warn(
                "`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1
            )
            warnings.warn("something else is wrong", UserWarning, stacklevel=1)
        assert [str(w.message) for w in caught] == ["something else is wrong"]
        assert (
            logging.getLogger("lightning.pytorch.utilities.rank_zero").getEffectiveLevel() == logging.WARNING
        )
        assert logging.getLogger("lightning.fabric.utilities.seed").getEffectiveLevel() == logging.WARNING
        assert len(KNOWN_WARNINGS) >= 1
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def test_fit_command_drops_only_the_banners():
    import logging
    import warnings

    root, lightning_logger = logging.getLogger(), logging.getLogger("lightning.pytorch")
    own, roots = logging.StreamHandler(), logging.StreamHandler()
    saved = {h: list(h.filters) for h in root.handlers}

    def shown(handler, message: str) -> bool:
        record = logging.LogRecord(
            "lightning.pytorch.utilities.rank_zero", logging.INFO, "", 0, message, (), None
        )
        return bool(handler.filter(record))

    try:
        with warnings.catch_warnings():
            lightning_logger.addHandler(own)  # Lightning's own handler, when the root logger has none (`fit`)
            quiet_lightning(keep_info=True)
            quiet_lightning(keep_info=True)  # twice adds no second filter
            lightning_logger.removeHandler(own)
            root.addHandler(roots)  # otherwise Lightning logs through the root's handlers
            quiet_lightning(keep_info=True)
        for handler in (own, roots):
            assert not shown(handler, "GPU available: False, used: False")
            assert not shown(handler, "`weights_only` was not set, defaulting to `False`.")
            assert shown(handler, "Seed set to 307")
            assert shown(handler, "Restoring states from the checkpoint path at last.ckpt")
        assert len(own.filters) == 1
    finally:
        lightning_logger.removeHandler(own)
        root.removeHandler(roots)
        for handler, filters in saved.items():
            handler.filters[:] = filters


def test_fit_summary_gives_metrics_best_checkpoint_and_log_paths(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=4)
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss")],
        logger=CSVLogger(tmp_path / "runs", name="tiny"),
    )  # fmt: skip
    trainer.fit(_TinyModule(), data, data)
    summary = fit_summary(trainer)
    best = trainer.checkpoint_callback.best_model_path
    assert best and f"`{best}`" in summary and "best checkpoint (val_loss" in summary
    assert f"`{trainer.logger.log_dir}`" in summary
    assert "| loss (teacher-forced) | " in summary and "n/a" in summary  # val logged, heldout not

    idle = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False)
    text = fit_summary(idle)
    assert "No validation finished" in text and "no checkpoint written" in text and "no logs written" in text


def test_model_table_lists_sizes_and_the_ratio_to_the_champion():
    table = model_table()
    header = table.splitlines()[0]
    for column in ("d_model", "heads", "layers", "d_ff", "parameters", "ratio to champion"):
        assert column in header
    champion = next(line for line in table.splitlines() if line.startswith("| exp_3_champion | matched"))
    assert champion.endswith("| 1.000 |") and "1 encoder + 3 decoder" in champion
    assert "| exp_-1_decoder_only | seed | 128 |" in table
    assert (
        "| exp_2_perminv_dff640 | matched | 160 | 4 | 1 encoder + 3 decoder | 640 |" in table
    )  # the control


def test_seed_band_curves_keep_the_legend_outside_and_ticks_whole_with_one_epoch():
    from arclib.viz.statistics import plot_seed_band_curves

    one_epoch = {f"arm_{k}": [(np.array([0]), [2.6 + k / 100])] for k in range(6)}
    fig = plot_seed_band_curves(one_epoch)
    ax = fig.axes[0]
    renderer = FigureCanvasAgg(fig).get_renderer()
    assert not _boxes_overlap(ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer))
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks

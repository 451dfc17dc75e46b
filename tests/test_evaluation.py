"""ARC scoring, augmentation voting, test-time training and the `evaluate` command."""

import json

import numpy as np
import pytest
import torch

from arclib.data.arc import load_arc_task
from arclib.data.augment import Augmentation
from arclib.data.grids import Task
from arclib.data.tokens import Episode
from arclib.evaluation import cli
from arclib.evaluation.arc_score import overall_score, pass_at_2, score_output, task_scores
from arclib.evaluation.ttt import TTTConfig, inputs_only, leave_one_out_episode, ttt_fine_tune, ttt_predict
from arclib.evaluation.voting import Candidate, predict_with_voting, view_augmentations, vote

# --- scoring -------------------------------------------------------------------------------------------


def test_shape_mismatch_never_counts():
    target = np.arange(6, dtype=np.int8).reshape(2, 3)
    same_cells_other_shape = target.reshape(3, 2)
    assert not pass_at_2([same_cells_other_shape], target)
    assert not pass_at_2([np.zeros((2, 3), np.int8)[:, :2]], np.zeros((2, 3), np.int8))  # a matching prefix
    assert not pass_at_2([None, None], target)
    assert not pass_at_2([], target)
    assert pass_at_2([target.copy()], target)


def test_second_attempt_counts_and_at_most_two():
    target = np.eye(3, dtype=np.int8)
    wrong = np.zeros((3, 3), np.int8)
    assert pass_at_2([wrong, target], target)
    assert pass_at_2([None, target], target)
    with pytest.raises(ValueError, match="at most 2"):
        pass_at_2([wrong, wrong, target], target)


def test_task_score_is_fraction_of_outputs_and_tasks_weigh_equally():
    x = np.zeros((2, 2), np.int8)
    y = np.ones((2, 2), np.int8)
    scores = [
        score_output("a", [y], y, x),  # task a: 1 of 2 solved
        score_output("a", [x, x], y, x),
        score_output("b", [x, y], y, x),  # task b: solved by attempt 2, but top-1 wrong
    ]
    per_task = task_scores(scores)
    assert per_task["a"] == {"n": 2, "pass2": 0.5, "top1": 0.5, "shape": 1.0, "cell": 0.5}
    assert per_task["b"]["pass2"] == 1.0 and per_task["b"]["top1"] == 0.0
    overall = overall_score(per_task)
    assert overall["pass2"] == pytest.approx(0.75)  # mean of 0.5 and 1.0, not 2 of 3 outputs
    assert overall["n_tasks"] == 2 and overall["n_outputs"] == 3


# --- voting --------------------------------------------------------------------------------------------


def tile_rule(x):
    """A rule that commutes with every augmentation (dihedral and colour), and changes the shape."""
    return np.tile(x, (2, 2))


def episode(seed=0, n_context=2):
    rng = np.random.default_rng(seed)
    grids = [rng.integers(0, 10, (2, 3)).astype(np.int8) for _ in range(n_context + 1)]
    return Episode("t", [(g, tile_rule(g)) for g in grids[:-1]], grids[-1])


def test_views_start_with_identity_and_are_seeded():
    views = view_augmentations(5, 2, np.random.default_rng(3))
    assert views[0] == Augmentation() and len(views) == 5
    assert views == view_augmentations(5, 2, np.random.default_rng(3))
    assert all(v != Augmentation() for v in views[1:])


def test_predictions_are_mapped_back_to_the_original_frame():
    eps = [episode(0), episode(1)]
    seen_frames = set()

    def truthful(views):  # answers the true output *in each view's frame*
        seen_frames.update(v.query_input.tobytes() + bytes(v.query_input.shape) for v in views)
        return [(tile_rule(v.query_input), -1.0) for v in views]

    results = predict_with_voting(truthful, eps, n_views=8, seed=0)
    assert len(seen_frames) > 2  # the views really were transformed
    for ep, r in zip(eps, results):
        assert len(r.candidates) == 1 and r.candidates[0].votes == 8  # all 8 views agree once inverted
        assert np.array_equal(r.voted_attempts[0], tile_rule(ep.query_input))
        assert np.array_equal(r.identity[0], tile_rule(ep.query_input))


def test_voting_recovers_the_answer_when_a_minority_of_views_is_wrong():
    n_views = 5
    eps = [episode(s) for s in range(3)]

    def flaky(views):
        # Views 0 and 1 of every episode copy the input (wrong); views 2..4 apply the rule (right).
        return [
            (v.query_input if i % n_views < 2 else tile_rule(v.query_input), -float(i % n_views))
            for i, v in enumerate(views)
        ]

    for ep, r in zip(eps, predict_with_voting(flaky, eps, n_views=n_views, seed=1)):
        right, wrong = tile_rule(ep.query_input), ep.query_input
        assert not pass_at_2(r.identity_attempts, right)  # no voting: the identity view is wrong
        assert [c.votes for c in r.candidates] == [3, 2]
        assert np.array_equal(r.voted_attempts[0], right) and np.array_equal(r.voted_attempts[1], wrong)


def test_vote_ties_broken_by_summed_loglikelihood_and_invalid_ignored():
    a, b = np.zeros((1, 1), np.int8), np.ones((1, 1), np.int8)
    ranked = vote([(a, -5.0), (b, -1.0), (None, 0.0), (a, -5.0), (b, -2.0)])
    assert [(c.votes, c.logprob) for c in ranked] == [(2, -3.0), (2, -10.0)]
    assert isinstance(ranked[0], Candidate) and np.array_equal(ranked[0].grid, b)
    assert vote([(None, 0.0)]) == []


# --- evaluation sets -----------------------------------------------------------------------------------


def test_generated_problems_use_other_examples_as_context(tmp_path):
    from arclib.data.grids import save_task
    from arclib.data.split import task_split

    rng = np.random.default_rng(0)
    for task_id in task_split()["val"]:  # stand-in examples: only their identity matters here
        pairs = [
            (rng.integers(0, 10, (3, 4)).astype(np.int8), rng.integers(0, 10, (2, 2)).astype(np.int8))
            for _ in range(5)
        ]
        save_task(Task(task_id, pairs), tmp_path / "tasks" / f"{task_id}.json")
    problems = cli.load_problems("val", tmp_path, context=None, limit_per_task=3)
    assert len(problems) == 4 * 3
    for p in problems:
        assert len(p.demos) == 2 and len(p.test_inputs) == len(p.test_outputs) == 1
        assert all(not np.array_equal(x, p.test_inputs[0]) for x, _ in p.demos)  # the query is not a demo
    again = cli.load_problems("val", tmp_path, context=None, limit_per_task=3)
    assert all(np.array_equal(a.demos[0][0], b.demos[0][0]) for a, b in zip(problems, again))  # fixed seed


def test_real_problems_show_all_demos_and_unknown_ids_are_rejected():
    (p,) = cli.load_problems("6d0aefbc", None, context=None, limit_per_task=None)
    task = load_arc_task("6d0aefbc")
    assert len(p.demos) == len(task.train) and len(p.test_inputs) == len(task.test)
    assert len(cli.load_problems("real18", None, None, limit_per_task=1)) == 18
    with pytest.raises(cli.EvaluationError, match="not an ARC-AGI-1 task id"):
        cli.load_problems("6d0aefbc,00000000", None, None, None)
    with pytest.raises(cli.EvaluationError, match="8-hex-digit"):
        cli.load_problems("nonsense", None, None, None)


def test_an_oracle_scores_one_and_a_copier_scores_zero():
    from arclib.evaluation.voting import VoteResult

    problems = cli.load_problems("6d0aefbc,8be77c9e", None, None, None)
    outputs = [y for p in problems for y in p.test_outputs]
    inputs = [x for p in problems for x in p.test_inputs]
    oracle = [VoteResult((y, 0.0), [Candidate(y, 1, 0.0)]) for y in outputs]
    copier = [VoteResult((x, 0.0), [Candidate(x, 1, 0.0)]) for x in inputs]
    for results, expected in ((oracle, 1.0), (copier, 0.0)):
        per_task, rows = cli.score(problems, results)
        for scores in per_task.values():
            assert overall_score(scores)["pass2"] == expected and overall_score(scores)["top1"] == expected
        assert len(rows) == len(outputs)


# --- test-time training (real tiny models) -------------------------------------------------------------


class Poison:
    """Stands in for a test output: any use of it at all fails the test."""

    def __getattribute__(self, name):
        raise AssertionError(f"a test output was read (.{name})")

    def _fail(self, *args, **kwargs):
        raise AssertionError("a test output was read")

    __array__ = __len__ = __iter__ = __getitem__ = __eq__ = __bool__ = __hash__ = __repr__ = _fail


def tiny_model(name=None):
    from arclib.models import MODEL_NAMES, build_model

    torch.manual_seed(0)
    return build_model(name or MODEL_NAMES[-1], "tiny")


def test_ttt_never_reads_test_outputs_and_leaves_the_model_untouched():
    real = load_arc_task("6d0aefbc")
    task = Task(real.task_id, real.train, [(x, Poison()) for x, _ in real.test])
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    results = ttt_predict(
        model, task.task_id, task.train, inputs_only(task.test), TTTConfig(steps=3, lr=1e-2), n_views=2
    )
    assert len(results) == len(real.test)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def demo_loss(model, demos):
    """Mean loss over the unaugmented leave-one-out episodes of the demos."""
    from arclib.data.tokens import collate

    eps = [Episode("t", [d for j, d in enumerate(demos) if j != i][:2], *demos[i]) for i in range(len(demos))]
    batch = collate(eps)
    model.eval()
    with torch.no_grad():
        return model.loss(model(batch), batch.tgt_out).item()


def test_ttt_reduces_the_loss_on_the_demos():
    demos = load_arc_task("6d0aefbc").train
    model = tiny_model()
    tuned, losses = ttt_fine_tune(model, "6d0aefbc", demos, TTTConfig(steps=30, lr=3e-3, seed=0))
    assert len(losses) == 30 and all(np.isfinite(losses))
    assert demo_loss(tuned, demos) < 0.8 * demo_loss(model, demos)


def test_leave_one_out_episodes_never_show_the_query_as_context():
    demos = load_arc_task("8be77c9e").train
    rng = np.random.default_rng(0)
    for _ in range(20):
        ep = leave_one_out_episode("8be77c9e", demos, rng, n_context=2)
        assert len(ep.context) == 2
        assert all(not np.array_equal(x, ep.query_input) for x, _ in ep.context)


def test_ttt_fine_tunes_every_model():
    from arclib.models import MODEL_NAMES

    demos = load_arc_task("6d0aefbc").train
    for name in MODEL_NAMES:
        model = tiny_model(name)
        tuned, losses = ttt_fine_tune(model, "6d0aefbc", demos, TTTConfig(steps=2, lr=1e-2))
        assert len(losses) == 2 and all(np.isfinite(losses)), name
        changed = [
            not torch.equal(a, b) for a, b in zip(model.state_dict().values(), tuned.state_dict().values())
        ]
        assert any(changed), name


# --- command line --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint written by a Lightning Trainer after 40 steps of a tiny model on one task's demos.

    The steps teach the model to stop writing early, which keeps generation in the CLI tests short.
    """
    import lightning as L
    from torch.utils.data import DataLoader

    from arclib.data.tokens import collate
    from arclib.models import MODEL_NAMES
    from arclib.training.module import ArcLitModule

    demos = load_arc_task("6d0aefbc").train
    eps = [Episode("6d0aefbc", demos[:2], *demos[2])] * 2
    module = ArcLitModule(model_name=MODEL_NAMES[-1], preset="tiny", generate_per_task=0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    trainer = L.Trainer(
        max_steps=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=path.parent,
    )
    trainer.fit(module, train_dataloaders=DataLoader(eps, batch_size=2, collate_fn=collate))
    trainer.save_checkpoint(path)
    return path


def test_cli_scores_a_checkpoint_and_writes_json(checkpoint, tmp_path, capsys):
    out = tmp_path / "results.json"
    rc = cli.main(
        ["--checkpoint", str(checkpoint), "--tasks", "6d0aefbc,8be77c9e", "--views", "2", "--out", str(out)]
    )
    assert rc == 0
    summary = json.loads(out.read_text())
    assert summary["arc_dataset"].startswith("ARC-AGI-1") and summary["checkpoint"] == str(
        checkpoint.resolve()
    )
    assert summary["settings"]["views"] == 2 and summary["settings"]["ttt"] is False
    assert set(summary["per_task"]["voting"]) == {"6d0aefbc", "8be77c9e"}
    assert 0.0 <= summary["pass2"] <= 1.0 and summary["overall"]["voting"]["n_outputs"] == 2
    table = capsys.readouterr().out
    assert "6d0aefbc" in table and "pass@2" in table


def test_cli_with_ttt_and_two_context_pairs(checkpoint, tmp_path):
    out = tmp_path / "ttt.json"
    args = [
        "--checkpoint",
        str(checkpoint),
        "--tasks",
        "8be77c9e",
        "--ttt",
        "--ttt-steps",
        "2",
        "--views",
        "2",
    ]
    assert cli.main([*args, "--context", "2", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["settings"]["context"] == 2 and summary["settings"]["ttt_config"]["steps"] == 2


@pytest.mark.parametrize("problem", ["missing", "corrupt", "unknown_id"])
def test_cli_errors_exit_2_without_traceback(problem, checkpoint, tmp_path, capsys):
    path, tasks = checkpoint, "6d0aefbc"
    if problem == "missing":
        path = tmp_path / "nope.ckpt"
    elif problem == "corrupt":
        path = tmp_path / "bad.ckpt"
        path.write_bytes(b"not a checkpoint")
    else:
        tasks = "6d0aefbc,00000000"
    assert cli.main(["--checkpoint", str(path), "--tasks", tasks]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err


# --- generation budget -----------------------------------------------------------------------------------


def test_every_evaluated_output_fits_its_own_generation_budget():
    from arclib.evaluation.predict import generation_budget
    from arclib.evaluation.report import evaluation_problems

    n = 0
    for problems in evaluation_problems(None).values():
        for p in problems:
            for x, y in zip(p.test_inputs, p.test_outputs):
                needed = y.shape[0] * (y.shape[1] + 1) + 1  # rows, each ended by ROW, then EOS
                assert needed <= generation_budget(Episode(p.task_id, p.demos, x)), p.task_id
                n += 1
    assert n > 1000


def test_what_an_episode_generates_does_not_depend_on_its_batch():
    from arclib.evaluation.predict import generate_tokens, generation_budget
    from arclib.models import build_model

    torch.manual_seed(0)
    model = build_model("exp_0_encoder_decoder", "tiny").eval()
    with torch.no_grad():
        model.head.bias[0] = 100.0  # always colour 0: only the caps and the budget end an output
    small = Episode("t", [(np.zeros((2, 3), np.int8), np.ones((2, 3), np.int8))], np.zeros((3, 3), np.int8))
    big = Episode(
        "t", [(np.zeros((20, 20), np.int8), np.ones((20, 20), np.int8))], np.zeros((20, 20), np.int8)
    )
    ((alone, _),) = generate_tokens(model, [small])
    together, _ = generate_tokens(model, [small, big])
    assert alone == together[0] and len(alone) == generation_budget(small) == 2 * 3 * 4 + 1

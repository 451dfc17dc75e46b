from fractions import Fraction

import numpy as np
import pytest
import torch

from arclib.data.episodes import (
    NO_AUGMENT,
    AugmentConfig,
    EpisodeBatchSampler,
    EpisodeDataset,
    EpisodePlanner,
)
from arclib.data.tokens import (
    BOS,
    EOS,
    PAD,
    ROW,
    SEP_IN,
    Episode,
    collate,
    decoder_positions,
    grid_tokens,
    tokens_to_grid,
)


def make_examples(n_tasks=3, n=12, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for t in range(n_tasks):
        pairs = []
        for i in range(n):
            h, w = rng.integers(1, 6, 2)
            x = rng.integers(0, 10, (h, w)).astype(np.int8)
            x[0, 0] = i % 10  # ties each example to its index for the tests below
            pairs.append((x, np.flipud(x).copy()))
        out[f"task{t}"] = pairs
    return out


def test_query_never_in_its_own_context():
    ex = make_examples()
    planner = EpisodePlanner(ex, n_context=2)
    for seed in range(20):
        for plan in planner.plans(np.random.default_rng(seed), AugmentConfig()):
            assert plan.query not in plan.context and len(set(plan.context)) == 2


def test_context_from_same_task_and_dataset_builds_planned_episode():
    ex = make_examples()
    planner = EpisodePlanner(ex)
    plan = planner.plan("task1", 3, np.random.default_rng(0), NO_AUGMENT)
    ep = EpisodeDataset(ex)[plan]
    assert ep.task_id == "task1" and np.array_equal(ep.query_input, ex["task1"][3][0])
    assert all(np.array_equal(c[0], ex["task1"][i][0]) for c, i in zip(ep.context, plan.context))


def test_planned_length_matches_tokens():
    ex = make_examples()
    planner = EpisodePlanner(ex)
    for plan in planner.plans(np.random.default_rng(1), AugmentConfig())[:20]:
        ep = EpisodeDataset(ex)[plan]
        b = collate([ep])
        assert plan.length == int(b.src_mask.sum()) + int((b.tgt_out != PAD).sum())


def test_too_few_examples_is_a_clear_error():
    with pytest.raises(ValueError, match="needs 3"):
        EpisodePlanner({"t": make_examples(1, 2)["task0"]})


def test_training_fresh_each_epoch_validation_fixed():
    planner = EpisodePlanner(make_examples())
    train = EpisodeBatchSampler(planner, 4, seed=1, augment=AugmentConfig(), train=True)
    first = list(train)
    train.set_epoch(0)
    assert list(train) == first  # deterministic for (seed, epoch)
    train.set_epoch(1)
    assert list(train) != first
    val = EpisodeBatchSampler(planner, 4, seed=1, train=False)
    assert list(val) == list(val) == list(EpisodeBatchSampler(planner, 4, seed=1, train=False))
    assert all(p.augmentation.dihedral == 0 for b in val for p in b)


def test_ranks_shard_disjoint_batches():
    planner = EpisodePlanner(make_examples())
    shards = [list(EpisodeBatchSampler(planner, 4, seed=1, rank=r, world_size=2)) for r in range(2)]
    assert (
        len(shards[0]) == len(shards[1]) == len(EpisodeBatchSampler(planner, 4, seed=1, rank=0, world_size=2))
    )
    keys = [{(p.task_id, p.query) for b in s for p in b} for s in shards]
    assert not keys[0] & keys[1]


def test_bucketing_reduces_padding():
    planner = EpisodePlanner(make_examples(3, 200))
    bucketed = EpisodeBatchSampler(planner, 16, seed=0)

    def waste(batches):
        return 1 - sum(p.length for b in batches for p in b) / sum(
            max(p.length for p in b) * len(b) for b in batches
        )

    rng = np.random.default_rng(0)
    plans = planner.plans(rng, NO_AUGMENT)
    random_batches = [plans[i : i + 16] for i in range(0, len(plans), 16)]
    assert waste(list(bucketed)) < 0.5 * waste(random_batches)


def test_grid_tokens_round_trip_and_positions():
    g = np.arange(21, dtype=np.int8).reshape(3, 7) % 10
    tokens, rows, cols = grid_tokens(g)
    assert len(tokens) == 3 * 8 and (tokens[7::8] == ROW).all()
    assert np.array_equal(tokens_to_grid(list(tokens) + [EOS]), g)
    assert rows.max() == 2 and cols[tokens != ROW].max() == 6
    assert tokens_to_grid([1, 2, ROW, 3, ROW, EOS]) is None  # ragged
    assert tokens_to_grid([EOS]) is None


def test_decoder_positions_follow_row_ends_for_any_width():
    g = np.arange(21, dtype=np.int8).reshape(3, 7) % 10
    tokens = torch.tensor([[BOS, *grid_tokens(g)[0]]])
    row, col = decoder_positions(tokens)
    # position t predicts grid token t: rows 0..2 and cols 0..6 for cells, col 7 for each ROW
    _, rows, cols = grid_tokens(g)
    assert row[0, :-1].tolist() == rows.tolist() and col[0, :-1].tolist() == cols.tolist()
    assert (row[0, -1].item(), col[0, -1].item()) == (3, 0)  # after the last ROW: where EOS goes


def test_collate_targets_start_with_bos_and_end_with_eos():
    ep = Episode(
        "t",
        [(np.ones((1, 1), np.int8), np.ones((1, 1), np.int8))] * 2,
        np.zeros((1, 1), np.int8),
        np.full((1, 1), 4, np.int8),
    )
    b = collate([ep])
    assert b.tgt_in[0].tolist() == [BOS, 4, ROW] and b.tgt_out[0].tolist() == [4, ROW, EOS]
    assert b.src.shape == (1, 2 * 2 * 3 + 3) and b.query.tolist() == [[SEP_IN, 0, ROW]] and b.src_mask.all()


def test_task_statistics():
    from arclib.data.stats import format_statistics, task_statistics

    ex = {
        "t": [
            (np.zeros((2, 3), np.int8), np.ones((4, 3), np.int8)),
            (np.zeros((5, 1), np.int8), np.zeros((5, 1), np.int8)),
        ]
    }
    (row,) = task_statistics(ex)
    assert row["input_h"] == (2, 5) and row["output_h"] == (4, 5) and row["shape_changes"] == 0.5
    assert row["colour_share"][0] == pytest.approx((6 + 5 + 5) / 28) and row[
        "colour_share"
    ].sum() == pytest.approx(1)
    assert "t" in format_statistics([row])


def copies_examples(n_base=4, copies=5, seed=0):
    """Each base example with recoloured and rotated copies: index-distinct, key-equal."""
    from arclib.data.augment import Augmentation

    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n_base):
        x = rng.integers(0, 4, (3, 4)).astype(np.int8)
        pairs += [
            (a.grid(x), a.grid(np.flipud(x).copy()))
            for a in (Augmentation.random(rng, order=False) for _ in range(copies))
        ]
    return {"t": pairs}


def test_context_differs_by_key_from_the_query_and_each_other():
    from arclib.data.canonical import example_keys

    ex = copies_examples()
    keys = example_keys(ex["t"])
    planner = EpisodePlanner(ex, n_context=2)
    for seed in range(30):
        for plan in planner.plans(np.random.default_rng(seed), NO_AUGMENT):
            assert len({keys[plan.query], *(keys[i] for i in plan.context)}) == 3
    # negative control: choosing context by index alone (the old rule) shows the query's own copies
    rng = np.random.default_rng(0)
    old = [
        tuple(int(i + (i >= q)) for i in rng.choice(19, 2, replace=False))
        for q in range(20)
        for _ in range(5)
    ]
    queries = [q for q in range(20) for _ in range(5)]
    assert any(keys[q] in {keys[i] for i in c} for q, c in zip(queries, old))


def test_too_few_distinct_keys_is_a_clear_error():
    with pytest.raises(ValueError, match="2 distinct examples .* in 10"):
        EpisodePlanner(copies_examples(n_base=2), n_context=2)


def test_training_queries_rotate_through_every_example_over_epochs():
    planner = EpisodePlanner(make_examples(n_tasks=2, n=12))
    sampler = EpisodeBatchSampler(planner, 4, seed=3, per_task=5)
    seen, epochs = {}, []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        queries = {(p.task_id, p.query) for b in sampler for p in b}
        assert len(queries) == 2 * 5 == len(sampler) * 4 - 2  # 10 queries in 3 batches
        epochs.append(queries)
        for t, i in queries:
            seen.setdefault(t, set()).add(i)
    assert epochs[0] != epochs[1] and not epochs[0] & epochs[1]  # 5 + 5 of 12: no repeat yet
    assert all(s == set(range(12)) for s in seen.values())  # 15 draws of 12 cover them all
    sampler.set_epoch(1)
    assert {(p.task_id, p.query) for b in sampler for p in b} == epochs[1]  # a pure function of (seed, epoch)


def test_curriculum_starts_on_the_smallest_examples_and_ends_on_all():
    rng = np.random.default_rng(0)
    # outputs of their own size, so a pool ranked by inputs alone would differ from one by input plus output
    ex = {
        f"task{t}": [
            (
                rng.integers(0, 10, rng.integers(1, 8, 2)).astype(np.int8),
                rng.integers(0, 10, rng.integers(1, 8, 2)).astype(np.int8),
            )
            for _ in range(40)
        ]
        for t in range(2)
    }
    planner = EpisodePlanner(ex)
    sampler = EpisodeBatchSampler(planner, 4, seed=3, per_task=10, curriculum_epochs=4)
    plain = EpisodeBatchSampler(planner, 4, seed=3, per_task=10)

    def epoch_plans(s, epoch):
        s.set_epoch(epoch)
        return [p for b in s for p in b]

    first = []
    for epoch in range(6):
        plans = epoch_plans(sampler, epoch)
        first.append(plans)
        assert len(plans) == 2 * 10 == len(epoch_plans(plain, epoch))  # an epoch keeps its length
        if epoch < 4:  # the smallest ceil((epoch + 1) / 4 * 40) of each task, queries and contexts alike
            for t, pairs in ex.items():
                size = [x.size + y.size for x, y in pairs]
                pool = set(sorted(range(40), key=lambda i: size[i])[: 10 * (epoch + 1)])
                assert planner.smallest_pool(t, Fraction(epoch + 1, 4)).nonzero()[0].tolist() == sorted(pool)
                assert all(i in pool for p in plans if p.task_id == t for i in (p.query, *p.context))
        else:  # after it, exactly the plain recipe's plans
            assert plans == epoch_plans(plain, epoch)
    assert first[0] != epoch_plans(plain, 0)  # negative control: the curriculum did change epoch 0
    assert epoch_plans(sampler, 0) == first[0]  # a pure function of (seed, epoch), so a resume redraws it


def test_curriculum_pool_widens_to_enough_distinct_examples():
    # 4 base examples x 5 copies of one size, copies adjacent: the smallest 5% would be one key.
    planner = EpisodePlanner(copies_examples(n_base=4, copies=5), n_context=2)
    pool = planner.smallest_pool("t", Fraction(1, 20))
    assert pool.sum() == 11 and len(set(planner.keys["t"][pool])) == 3
    sampler = EpisodeBatchSampler(planner, 2, seed=0, per_task=4, curriculum_epochs=20)
    for plan in (p for b in sampler for p in b):
        assert pool[plan.query] and all(pool[i] for i in plan.context)


@pytest.mark.parametrize("kwargs", [{"per_task": None}, {"per_task": 4, "train": False}])
def test_curriculum_is_for_training_with_a_number_of_queries(kwargs):
    planner = EpisodePlanner(make_examples())
    with pytest.raises(ValueError, match="curriculum"):
        EpisodeBatchSampler(planner, 2, seed=0, curriculum_epochs=3, **kwargs)


def test_leave_one_out_asks_for_every_example_of_each_episode():
    rng = np.random.default_rng(1)
    # outputs of their own size, so a rotation that took a length from the wrong grid would show
    ex = {
        f"task{t}": [
            tuple(rng.integers(0, 10, rng.integers(1, 7, 2)).astype(np.int8) for _ in range(2))
            for _ in range(12)
        ]
        for t in range(2)
    }
    planner = EpisodePlanner(ex)
    augment = AugmentConfig(dihedral=True, colours=True, context_order=True)
    loo = EpisodeBatchSampler(planner, 4, seed=3, augment=augment, per_task=5, leave_one_out=True)
    plain = EpisodeBatchSampler(planner, 4, seed=3, augment=augment, per_task=5)
    for epoch in range(2):
        loo.set_epoch(epoch)
        plain.set_epoch(epoch)
        for batch, base in zip(loo, plain, strict=True):
            assert len(batch) == 3 * len(base)  # negative control: the plain sampler has no rotations
            for k, plan in enumerate(base):
                rotations = batch[3 * k : 3 * k + 3]
                assert rotations[0] == plan  # the episode itself first, then its rotations
                members = {plan.query, *plan.context}
                assert [r.query for r in rotations] == [plan.query, *plan.context]  # each example a query
                assert len({r.length for r in rotations}) == 1  # the same grids, split differently
                for r in rotations:
                    assert {r.query, *r.context} == members and r.query not in r.context
                    assert r.augmentation == plan.augmentation and r.task_id == plan.task_id
                    ep = EpisodeDataset(ex)[r]
                    assert np.array_equal(ep.query_output, r.augmentation.grid(ex[r.task_id][r.query][1]))
                    b = collate([ep])  # the planned length, which bucketing sorts by, is the built one
                    assert r.length == int(b.src_mask.sum()) + int((b.tgt_out != PAD).sum())


def test_leave_one_out_is_for_training():
    with pytest.raises(ValueError, match="leave-one-out"):
        EpisodeBatchSampler(EpisodePlanner(make_examples()), 2, seed=0, train=False, leave_one_out=True)


def test_leave_one_out_reaches_the_training_loader_only():
    from arclib.training.datamodule import ArcDataModule

    dm = ArcDataModule(batch_size=2, train_per_task=2, val_per_task=1, leave_one_out=True, num_workers=0)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert len(batch) == 3 * 2  # two episodes and their rotations
    assert all(len(b) == 2 for loader in dm.val_dataloader() for b in loader)  # validation as planned

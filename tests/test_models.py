"""The five models: masks, caches, invariances, sizes, and that each can learn a few episodes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from arclib.data import tokens as tk
from arclib.data.tokens import Episode, collate
from arclib.models import MODEL_NAMES, build_model, count_parameters, parameter_table
from arclib.models.base import novel_colour_targets
from arclib.models.base import select_rows as real_select_rows
from arclib.models.champion import segment_positions, task_code
from arclib.models.layers import (
    PADDING,
    QUERY,
    Block,
    ColourCanon,
    Dropout,
    Grid2D,
    RoPE,
    Segments,
    gather_rows,
    pair_segments,
    sinusoidal,
)

ATOL = 1e-5


def grid(rng, h, w, colours=range(10)):
    return rng.choice(np.asarray(list(colours)), size=(h, w)).astype(np.int8)


def episode(rng, n_pairs=2, side=(2, 4), colours=range(10), task_id="t"):
    def g():
        return grid(rng, *rng.integers(side[0], side[1] + 1, size=2), colours)

    return Episode(task_id, [(g(), g()) for _ in range(n_pairs)], g(), g())


def tiny(name, seed=0, **overrides):
    """A tiny model in eval mode with unit-gain random weights: at the training init (std 0.02) the encoder
    barely moves the logits, so invariance checks at atol 1e-5 could not tell a broken model from a sound one."""
    torch.manual_seed(seed)
    model = build_model(name, "tiny", **overrides).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.2)
    return model


pytestmark = pytest.mark.usefixtures("one_thread")


def with_tgt_in(batch, tgt_in):
    return replace(batch, tgt_in=tgt_in)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# masks and caches ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_causality(name, rng):
    model = tiny(name)
    batch = collate([episode(rng, side=(3, 4)) for _ in range(2)])
    k = 5
    changed = batch.tgt_in.clone()
    changed[:, k] = torch.where(changed[:, k] == tk.ROW, 0, tk.ROW)
    with torch.no_grad():
        a, b = model(batch), model(with_tgt_in(batch, changed))
    torch.testing.assert_close(a[:, :k], b[:, :k], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, k:], b[:, k:], atol=1e-4)  # the change is seen from position k on


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_padding_invariance(name, rng):
    model = tiny(name)
    short = episode(rng, n_pairs=2, side=(1, 3))
    long = episode(rng, n_pairs=4, side=(6, 9))  # more pairs, longer grids, longer target
    alone = collate([short])
    T = alone.tgt_in.shape[1]
    with torch.no_grad():
        ref = model(alone)[0]
        for batch, i in ((collate([short, long]), 0), (collate([long, short]), 1)):
            assert batch.src.shape[1] > alone.src.shape[1] and batch.tgt_in.shape[1] > T
            torch.testing.assert_close(model(batch)[i, :T], ref, atol=ATOL, rtol=0)
        tokens, logprob = model.generate(alone, max_len=10)
        tokens_b, logprob_b = model.generate(collate([long, short]), max_len=10)
    assert torch.equal(tokens_b[1, : tokens.shape[1]], tokens[0])
    torch.testing.assert_close(logprob_b[1], logprob[0], atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_batch_independence(name, rng):
    model = tiny(name)
    first = episode(rng, side=(3, 3))
    other = episode(rng, side=(3, 3))
    other2 = Episode(
        "t", [(9 - x, 9 - y) for x, y in other.context], 9 - other.query_input, 9 - other.query_output
    )
    with torch.no_grad():
        a, b = model(collate([first, other])), model(collate([first, other2]))
    torch.testing.assert_close(a[0], b[0], atol=1e-6, rtol=0)
    assert not torch.allclose(a[1], b[1], atol=1e-4)


def check_generation_matches_teacher_forcing(model, batch, max_len):
    """Greedy KV-cache tokens equal the teacher-forced argmax on those tokens up to and including EOS (except
    where the 30-cell cap forced ROW/EOS), PAD follows EOS, and the summed log-probability is the teacher-forced
    one. Returns the tokens."""
    tokens, logprob = model.generate(batch, max_len=max_len, stop_invalid=False)
    B, n = tokens.shape
    tgt_in = torch.cat([torch.full((B, 1), tk.BOS), tokens[:, :-1]], 1)
    with torch.no_grad():
        lp = model(with_tgt_in(batch, tgt_in)).log_softmax(-1)  # (B, n, V)
    is_eos = (tokens == tk.EOS).long()
    after_eos = is_eos.cumsum(1) - is_eos > 0
    live = ~after_eos
    row, col = tk.decoder_positions(tgt_in)
    free = live & (row < tk.MAX_SIDE) & (col < tk.MAX_SIDE)
    assert torch.equal(lp.argmax(-1)[free], tokens[free])
    assert (tokens[after_eos] == tk.PAD).all()
    chosen = lp.gather(2, tokens[..., None]).squeeze(2)
    torch.testing.assert_close(logprob, (chosen * live).sum(1), atol=1e-4, rtol=0)
    return tokens


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_generate_matches_teacher_forcing(name, rng):
    # Random weights rarely choose EOS; the overfit test covers stopping, this one long cached sequences.
    model = tiny(name)
    check_generation_matches_teacher_forcing(model, collate([episode(rng) for _ in range(4)]), max_len=40)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_stopping_invalid_samples_never_changes_the_decoded_grid(name, rng):
    model = tiny(name)
    batch = collate([episode(rng) for _ in range(6)])
    fast, _ = model.generate(batch, max_len=200)
    full, _ = model.generate(batch, max_len=200, stop_invalid=False)
    assert fast.shape[1] <= full.shape[1]
    for a, b in zip(fast, full):
        ga, gb = tk.tokens_to_grid(a), tk.tokens_to_grid(b)
        assert (ga is None and gb is None) or np.array_equal(ga, gb)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_dropping_finished_samples_from_the_state_changes_no_output(name, monkeypatch):
    # Where samples stop at different steps (random weights often stop all at once, so several weight seeds
    # are tried), the batch's state is compacted; each sample must still get exactly what it gets alone.
    import arclib.models.base as base

    calls = []
    monkeypatch.setattr(
        base, "select_rows", lambda state, keep: calls.append(len(keep)) or real_select_rows(state, keep)
    )
    for seed in range(8):
        if calls:
            break
        rng = np.random.default_rng(seed)
        model, episodes = tiny(name, seed=seed), [episode(rng) for _ in range(8)]
        tokens, logprob = model.generate(collate(episodes), max_len=60)
        for ep, got, got_lp in zip(episodes, tokens, logprob):
            alone, alone_lp = model.generate(collate([ep]), max_len=60)
            n = alone.shape[1]
            assert torch.equal(got[:n], alone[0]) and (got[n:] == tk.PAD).all()
            torch.testing.assert_close(got_lp, alone_lp[0], atol=1e-4, rtol=0)
    assert calls, "no sample finished before the others: nothing was compacted"


@pytest.mark.parametrize("name", ["exp_-1_decoder_only", "exp_3_champion"])
def test_generation_capped_at_30x30(name, rng):
    model = tiny(name)
    with torch.no_grad():
        model.head.bias[0] = 100.0  # always colour 0: only the caps can end rows and the grid
    tokens, logprob = model.generate(collate([episode(rng)]))
    assert tokens.shape[1] == 30 * 31 + 1 and tokens[0, -1] == tk.EOS
    assert np.array_equal(tk.tokens_to_grid(tokens[0]), np.zeros((30, 30), np.int8))
    assert logprob[0] < -100  # the forced ROW and EOS tokens were unlikely, and count


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_one_by_one_output_has_finite_loss(name, rng):
    model = tiny(name).train()
    ep = episode(rng)
    ep.query_output = np.array([[7]], np.int8)
    batch = collate([ep])
    assert batch.tgt_in.tolist() == [[tk.BOS, 7, tk.ROW]] and batch.tgt_out.tolist() == [[7, tk.ROW, tk.EOS]]
    loss = model.loss(model(batch), batch.tgt_out)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_novel_colour_targets():
    ep = Episode("t", [(np.array([[1, 2]], np.int8), np.array([[2]], np.int8))], np.array([[3]], np.int8),
                 np.array([[3, 5], [0, 5]], np.int8))  # fmt: skip
    short = Episode("t", ep.context, ep.query_input, np.array([[4]], np.int8))
    batch = collate([ep, short])
    # tgt_out: 3 5 ROW 0 5 ROW EOS; 5 and 0 are absent from the source, but 0 keeps its id and is never
    # novel; padding and special tokens never count
    assert novel_colour_targets(batch).tolist() == [
        [False, True, False, False, True, False, False],
        [True, False, False, False, False, False, False],
    ]


# sizes --------------------------------------------------------------------------------------------------


def test_parameter_counts():
    counts = {name: count_parameters(build_model(name)) for name in MODEL_NAMES}
    champion = counts["exp_3_champion"]
    assert 1.5e6 < champion < 1.9e6
    for name, n in counts.items():
        assert abs(n / champion - 1) < 0.03, (name, n, champion)
    assert abs(count_parameters(build_model("exp_-1_decoder_only", "seed")) / 530e3 - 1) < 0.03
    for name in MODEL_NAMES:
        assert 1e4 < count_parameters(build_model(name, "tiny")) < 1e5
    table = parameter_table()
    assert all(name in table for name in MODEL_NAMES) and "seed" in table


def config_changes(a: str, b: str) -> dict:
    ca, cb = build_model(a).config, build_model(b).config
    return {k: (getattr(ca, k), v) for k, v in vars(cb).items() if getattr(ca, k, None) != v}


def test_each_arm_is_one_named_change_from_the_last():
    assert config_changes("exp_0_encoder_decoder", "exp_1_grid2d") == {"grid2d": (False, True)}
    assert config_changes("exp_1_grid2d", "exp_2_perminv") == {"perm_inv": (False, True)}
    # Exp 3 adds the pair encoder and bridge (its class); d_ff is the parameter matching, and the control
    # is Exp 2 with that d_ff alone.
    assert config_changes("exp_2_perminv", "exp_3_champion") == {"d_ff": (704, 640)}
    assert config_changes("exp_2_perminv", "exp_2_perminv_dff640") == {"d_ff": (704, 640)}
    assert config_changes("exp_2_perminv_dff640", "exp_3_champion") == {}  # the class alone: encoder + bridge
    assert type(build_model("exp_2_perminv_dff640")) is type(build_model("exp_2_perminv"))
    champion, exp2 = build_model("exp_3_champion"), build_model("exp_2_perminv")
    extra = {k: v.shape for k, v in champion.state_dict().items() if k not in exp2.state_dict()}
    assert set(extra) == {"bridge.weight", "bridge.bias"}
    n_bridge = sum(p.numel() for p in champion.bridge.parameters())
    d_ff_saving = count_parameters(exp2) - count_parameters(build_model("exp_2_perminv_dff640"))
    assert abs(n_bridge - d_ff_saving) / n_bridge < 0.1  # what the bridge costs, the smaller d_ff pays


def test_config_overrides_and_errors():
    model = build_model("exp_3_champion", "tiny", dropout=0.25, d_model=48)
    assert model.config.dropout == 0.25 and model.config.d_model == 48 and model.config.perm_inv
    with pytest.raises(ValueError):
        build_model("exp_9")
    with pytest.raises(ValueError):
        build_model("exp_0_encoder_decoder", "seed")


# learning -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_overfits_four_episodes(name, rng):
    # Output = input rotated: every output colour occurs in the source, which PermInv needs to name it.
    def pair(h, w):
        x = grid(rng, h, w)
        return x, np.rot90(x).copy()

    episodes = [Episode("t", [pair(3, 3), pair(3, 3)], *pair(*hw)) for hw in ((3, 3), (2, 3), (3, 2), (3, 3))]
    batch = collate(episodes)
    torch.manual_seed(0)
    model = build_model(name, "tiny", d_model=48).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(200):
        loss = model.loss(model(batch), batch.tgt_out)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])
    model.eval()
    tokens = check_generation_matches_teacher_forcing(model, batch, max_len=tk.MAX_TARGET_LEN)
    assert (tokens == tk.PAD).any()  # outputs of different sizes: the shorter ones stopped and padded
    for row, ep in zip(tokens, episodes):
        assert np.array_equal(tk.tokens_to_grid(row), ep.query_output)


# invariances --------------------------------------------------------------------------------------------


def permute_colours(ep: Episode, perm: np.ndarray) -> Episode:
    def p(g):
        return perm[g].astype(np.int8)

    return Episode(ep.task_id, [(p(x), p(y)) for x, y in ep.context], p(ep.query_input), p(ep.query_output))


@pytest.mark.parametrize("name", ["exp_2_perminv", "exp_3_champion", "exp_1_grid2d"])
def test_colour_permutation_equivariance(name, rng):
    model = tiny(name)
    perm = np.concatenate([[0], rng.permutation(np.arange(1, 10))])  # perm[c]: the new label of colour c
    # Colours 6..9 are absent from the source and appear in the target: the "novel" path is exercised too.
    ep = episode(rng, side=(3, 4), colours=range(6))
    ep.query_output = grid(rng, 3, 3, colours=range(10))
    ep2 = permute_colours(ep, perm)
    vocab_perm = torch.as_tensor(np.concatenate([perm, np.arange(10, tk.VOCAB_SIZE)]))
    with torch.no_grad():
        lp = model(collate([ep])).log_softmax(-1)
        lp2 = model(collate([ep2])).log_softmax(-1)
    equivariant = torch.allclose(lp2[..., vocab_perm], lp, atol=ATOL)
    assert equivariant == (name != "exp_1_grid2d")  # the control model without PermInv must fail

    # Generation: with every colour in the source (no tied novel colours), grids map through the permutation.
    full = episode(rng, side=(4, 5))
    full.query_input[0, :9] = np.arange(1, 10)[: full.query_input.shape[1]]
    full.context[0][0][0, :] = np.arange(1, 10)[: full.context[0][0].shape[1]]
    full.context[0][1][:] = 9 - full.context[0][1]
    full.context[1][0].flat[:9] = np.arange(1, 10)[: full.context[1][0].size]
    tokens, logprob = model.generate(collate([full]), max_len=20)
    tokens2, logprob2 = model.generate(collate([permute_colours(full, perm)]), max_len=20)
    if name != "exp_1_grid2d":
        assert torch.equal(tokens2, vocab_perm[tokens])
        torch.testing.assert_close(logprob2, logprob, atol=1e-4, rtol=0)


def test_colour_canon_labels():
    # query input: 5 first, then 3; source counts: 7 four times, 2 twice; 1, 4, 6, 8, 9 absent from the source.
    ep = Episode("t", [(np.array([[2, 7, 7], [7, 7, 2]], np.int8), np.zeros((1, 1), np.int8))],
                 np.array([[0, 5, 3]], np.int8), np.array([[8, 8, 1, 8]], np.int8))  # fmt: skip
    batch = collate([ep])
    canon = ColourCanon(batch)
    source = dict(zip(batch.src[0].tolist(), canon.source(batch.src)[0].tolist()))
    assert (source[5], source[3], source[7], source[2], source[0]) == (1, 2, 3, 4, 0)
    assert all(source[t] == t for t in (tk.SEP_IN, tk.SEP_OUT, tk.ROW))
    assert canon.start[0, [0, 3, 5, 7, 8]].tolist() == [5] * 5  # unseen: one group, labels 5..9
    # The target's novel colours get the group's labels in order of first appearance: 8 -> 5, then 1 -> 6.
    assert batch.tgt_in[0].tolist() == [tk.BOS, 8, 8, 1, 8, tk.ROW]
    assert canon.target(batch.tgt_in)[0].tolist() == [tk.BOS, 5, 5, 6, 5, tk.ROW]
    logits = torch.randn(1, 6, tk.VOCAB_SIZE)
    back = canon.logits_back(logits, batch.tgt_in)[0]

    def shared(t, label, n):  # the label's logit, split evenly among n colours
        return logits[0, t, label] - np.log(n) + torch.zeros(n)

    unseen = [1, 4, 6, 8, 9]
    # after BOS: every unseen colour shares the next novel label, 5, and together they carry all its mass
    torch.testing.assert_close(back[0, unseen], shared(0, 5, 5))
    torch.testing.assert_close(back[0, unseen].logsumexp(0), logits[0, 0, 5])
    # after 8 is written it has its own label; the 4 others share the next one, 6
    assert back[1, 8] == logits[0, 1, 5]
    torch.testing.assert_close(back[1, [1, 4, 6, 9]], shared(1, 6, 4))
    # after 8 8 1: 8 and 1 keep their labels, the 3 others share label 7
    assert back[3, 8] == logits[0, 3, 5] and back[3, 1] == logits[0, 3, 6]
    torch.testing.assert_close(back[3, [4, 6, 9]], shared(3, 7, 3))
    assert back[3, 5] == logits[0, 3, 1] and back[3, 0] == logits[0, 3, 0]
    assert back[3, tk.EOS] == logits[0, 3, tk.EOS]
    # a step's (B, V) logits after a prefix are the teacher-forced ones at that prefix's last position
    torch.testing.assert_close(canon.logits_back(logits[:, 3], batch.tgt_in[:, :4]), back[3][None])


def test_novel_colour_written_once_is_then_predicted_with_its_own_label(rng):
    # The source holds colours 0..3 only; the query output is one other colour, repeated. Under one shared
    # "novel" label (the previous rule) the repeats could never get more than 1/6 of the probability.
    def ep(colour):
        pairs = [(grid(rng, 3, 3, range(4)), grid(rng, 3, 3, range(4))) for _ in range(2)]
        pairs[0][0][0] = [1, 2, 3]
        return Episode("t", pairs, grid(rng, 3, 3, range(4)), np.full((2, 3), colour, np.int8))

    train = collate([ep(c) for c in (4, 5, 6, 7, 8, 9, 4, 5)])
    torch.manual_seed(0)
    model = build_model("exp_2_perminv", "tiny").train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = model.loss(model(train), train.tgt_out)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    batch = collate([ep(c) for c in (9, 6, 7)])  # fresh episodes
    with torch.no_grad():
        p = model.eval()(batch).softmax(-1)  # (B, T, V)
    colour = batch.tgt_out[:, :1]
    p_colour = p.gather(2, colour[:, None].expand(-1, p.shape[1], 1)).squeeze(2)  # (B, T)
    cells = batch.tgt_out == colour
    assert cells.sum() == 3 * 6 and cells[:, 0].all()
    assert (p_colour[:, 0] <= 1 / 6 + 1e-6).all()  # not yet written: a sixth of the novel label at most
    assert (p_colour[:, 1:][cells[:, 1:]] > 0.9).all(), p_colour


def test_task_code_aggregator():
    torch.manual_seed(0)
    states = torch.randn(2, 9, 4)
    # episode 0: pair 0 (3 tokens), pair 1 (2 tokens), query (2), padding; episode 1: only pair 0, query
    segment = torch.tensor(
        [[0, 0, 0, 1, 1, QUERY, QUERY, PADDING, PADDING], [0, 0, QUERY, QUERY] + [PADDING] * 5]
    )
    code = task_code(states, segment, n_pairs=2)
    expected0 = (states[0, :3].mean(0) + states[0, 3:5].mean(0)) / 2  # the query and padding are left out
    torch.testing.assert_close(code, torch.stack([expected0, states[1, :2].mean(0)]))
    swapped = torch.tensor([[1, 1, 1, 0, 0, QUERY, QUERY, PADDING, PADDING], segment[1].tolist()])
    torch.testing.assert_close(task_code(states, swapped, n_pairs=2), code)  # pair order does not matter
    garbage = torch.where((segment >= 0)[..., None], states, torch.full_like(states, 1e3))
    torch.testing.assert_close(task_code(garbage, segment, n_pairs=2), code)


def test_pair_segments_and_block_diagonal_mask():
    rng = np.random.default_rng(0)
    ep = Episode("t", [(rng.integers(0, 3, (2, 2)).astype(np.int8), rng.integers(0, 3, (1, 2)).astype(np.int8))] * 2,
                 rng.integers(0, 3, (2, 1)).astype(np.int8))  # fmt: skip
    b = collate([ep])
    segment = pair_segments(b.src, b.src_role, b.src_mask)[0]
    pair_len = 1 + 2 * 3 + 1 + 1 * 3  # SEP_IN, 2 rows of 2 cells + ROW, SEP_OUT, 1 row
    assert segment.tolist() == [0] * pair_len + [1] * pair_len + [QUERY] * (1 + 2 * 2)
    # 1D positions restart in every pair and in the query input, so they say nothing about pair order
    positions = segment_positions(segment[None])[0].tolist()
    assert positions == [*range(pair_len), *range(pair_len), *range(1 + 2 * 2)]
    segments = Segments(segment[None], b.src_mask)
    assert segments.lengths == [[pair_len, pair_len, 1 + 2 * 2]]
    mask = segments.mask[0, 0]
    assert mask[0, :pair_len].all() and not mask[0, pair_len:].any()


def test_attention_run_by_segment_equals_the_block_diagonal_mask():
    """The CPU path (one attention call per segment) against one call with the block-diagonal mask, values and
    gradients, at real tokens: segments of unequal length, an episode with one pair fewer, one with no pair
    (the query input alone), padding, and a one-token segment. Segments whose boundary is one token off give
    different outputs (the negative control)."""
    torch.manual_seed(0)
    segment = torch.tensor(
        [[0, 0, 0, 1, 1, 1, 1, QUERY, QUERY, PADDING], [0, 1, 1, QUERY, QUERY, QUERY] + [PADDING] * 4,
         [0, 0, 0, 0, QUERY, QUERY] + [PADDING] * 4, [QUERY] * 3 + [PADDING] * 7]
    )  # fmt: skip
    real = segment != PADDING
    segments = Segments(segment, real)
    assert segments.lengths == [[3, 4, 2], [1, 2, 3], [4, 2], [3]]
    q, k, v = (torch.randn(4, 2, 10, 8, requires_grad=True) for _ in range(3))
    by_segment = segments.attend(q, k, v)
    masked = F.scaled_dot_product_attention(q, k, v, attn_mask=segments.mask)
    keep = real[:, None, :, None].float()
    torch.testing.assert_close(by_segment * keep, masked * keep)
    assert (by_segment * (1 - keep) == 0).all()
    grads = torch.autograd.grad((by_segment * keep).square().sum(), (q, k, v))
    for got, expected in zip(grads, torch.autograd.grad((masked * keep).square().sum(), (q, k, v))):
        torch.testing.assert_close(got, expected)
    off_by_one = segment.clone()
    off_by_one[0, 2] = 1
    assert not torch.allclose(Segments(off_by_one, real).attend(q, k, v) * keep, masked * keep)


def test_champion_encodes_the_same_per_segment_as_with_the_mask(monkeypatch, rng):
    """The whole champion encoder (matched preset) on episodes whose pairs differ in size, per segment (the
    CPU path) and with the block-diagonal mask (the GPU path), at every real source token."""
    model = build_model("exp_3_champion", preset="matched").eval()
    episodes = [
        Episode("t", [(grid(rng, h, w), grid(rng, w, h)) for h, w in sizes], grid(rng, 3, 4))
        for sizes in ([(2, 3), (5, 4)], [(6, 6), (1, 2)], [(3, 3)])
    ]
    batch = collate(episodes)
    per_segment = model.encode(batch, model.canon(batch))
    monkeypatch.setattr(
        Segments, "attend", lambda self, q, k, v: F.scaled_dot_product_attention(q, k, v, self.mask)
    )
    masked = model.encode(batch, model.canon(batch))
    real = torch.cat([torch.ones_like(batch.src_mask[:, :1]), batch.src_mask], 1)
    for (got, _), (expected, _) in zip(per_segment, masked):
        torch.testing.assert_close(got[real], expected[real], atol=ATOL, rtol=ATOL)


def test_dropout_keeps_the_expected_share_and_scale_and_is_off_in_eval():
    torch.manual_seed(0)
    x = torch.ones(200_000, requires_grad=True)
    drop = Dropout(0.25)
    y = drop(x)
    assert y.unique().tolist() == [0.0, pytest.approx(4 / 3)]
    assert abs((y == 0).float().mean().item() - 0.25) < 0.005
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # gradient flows through kept units only, with the same scale
    torch.manual_seed(1)
    first = drop(x)
    torch.manual_seed(1)
    assert torch.equal(drop(x), first)  # masks are a function of the RNG state
    assert drop.eval()(x) is x and Dropout(0.0)(x) is x


# positions ----------------------------------------------------------------------------------------------


def test_grid2d_positions_of_a_narrow_grid(rng):
    g = grid(rng, 3, 7)
    ep = Episode("t", [(g, g)], g, g)
    batch = collate([ep])
    expected_rows = [r for r in range(3) for _ in range(8)]
    expected_cols = list(range(8)) * 3  # cells at 0..6, ROW at 7
    # decoder: position t predicts tgt_out[t], and gets that token's (row, col)
    row, col = tk.decoder_positions(batch.tgt_in)
    assert row[0, :24].tolist() == expected_rows and col[0, :24].tolist() == expected_cols
    assert batch.tgt_out[0, 7] == tk.ROW and col[0, 7] == 7
    # encoder: the query input is the last segment of the source (after its separator)
    assert (
        batch.src_row[0, -24:].tolist() == expected_rows and batch.src_col[0, -24:].tolist() == expected_cols
    )
    # the embedding is the sum of the row and col tables at those indices, not a flat-index lookup
    g2d = Grid2D(8)
    emb = g2d(row, col)[0, :24]
    torch.testing.assert_close(emb, g2d.row.weight[expected_rows] + g2d.col.weight[expected_cols])
    # the model's decoder input adds exactly these embeddings
    model = tiny("exp_1_grid2d")
    plain = tiny("exp_0_encoder_decoder")
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("grid.")})
    with torch.no_grad():
        diff = model.embed_target(batch.tgt_in, None) - plain.embed_target(batch.tgt_in, None)
        torch.testing.assert_close(
            diff[0, :24], model.grid.row.weight[expected_rows] + model.grid.col.weight[expected_cols]
        )


def test_rope_depends_on_relative_position_only():
    rope = RoPE(8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(pq, pk):
        return (rope(q, torch.tensor([[pq]])) * rope(k, torch.tensor([[pk]]))).sum()

    torch.testing.assert_close(score(3, 1), score(103, 101))
    assert not torch.allclose(score(3, 1), score(3, 2))


@pytest.mark.parametrize("name", ["exp_0_encoder_decoder", "exp_3_champion"])
def test_token_identity_is_not_drowned_by_positions_at_init(name):
    # Regression: embeddings at std 0.02 beside a unit-amplitude sinusoid left token identity ~3% of the
    # decoder input, and the models barely learned in a CPU budget.
    model = build_model(name, "matched")
    token_norm = model.tok_emb.weight.norm(dim=-1).mean()
    position_norm = sinusoidal(torch.arange(100), model.config.d_model).norm(dim=-1).mean()
    assert token_norm > position_norm


def test_kv_cache_grows_and_keeps_every_entry():
    from arclib.models.layers import _append_to_cache

    cache, keys, values = {}, [], []
    for t in (70, 1, 1, 5, *[1] * 150):  # crosses several doublings of the buffer
        k, v = torch.randn(2, 3, t, 4), torch.randn(2, 3, t, 4)
        keys.append(k), values.append(v)
        got_k, got_v = _append_to_cache(cache, k, v)
        torch.testing.assert_close(got_k, torch.cat(keys, 2), rtol=0, atol=0)
        torch.testing.assert_close(got_v, torch.cat(values, 2), rtol=0, atol=0)
    assert cache["kv"].shape[3] >= cache["length"] == 227


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_attention_never_runs_on_cudnn(name, rng, monkeypatch):
    # cuDNN's SDPA plans each new shape anew, which made GPU training several times slower (README, On a GPU).
    cudnn_enabled = []
    sdpa = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        cudnn_enabled.append(torch.backends.cuda.cudnn_sdp_enabled())
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    was_enabled = torch.backends.cuda.cudnn_sdp_enabled()
    torch.backends.cuda.enable_cudnn_sdp(True)  # as torch enables it by default: the models must turn it off
    try:
        model, batch = tiny(name), collate([episode(rng) for _ in range(2)])
        with torch.no_grad():
            model(batch)
            model.generate(batch, max_len=5)
        assert torch.backends.cuda.cudnn_sdp_enabled()  # negative control: still on outside the models' calls
    finally:
        torch.backends.cuda.enable_cudnn_sdp(was_enabled)
    assert cudnn_enabled and not any(cudnn_enabled)


@pytest.mark.parametrize("causal", [True, False])
def test_a_block_computed_at_some_rows_equals_the_whole_block_at_those_rows(causal):
    # The decoder-only model runs its last block at the target positions only; each sample has its own.
    torch.manual_seed(0)
    block, rope = Block(d_model=16, n_heads=2, d_ff=32, dropout=0.0).eval(), RoPE(8)
    x = torch.randn(3, 12, 16)
    pos = torch.arange(12).expand(3, -1)
    rows = torch.tensor(
        [[0, 4, 2], [5, 6, 7], [11, 9, 10]]
    )  # unsorted; the first and last positions included
    with torch.no_grad():
        whole = gather_rows(block(x, causal=causal, rope=rope, pos=pos), rows)
        torch.testing.assert_close(block(x, causal=causal, rope=rope, pos=pos, rows=rows), whole)
        # negative control: the other masking gives other outputs at the rows that can tell them apart
        other = gather_rows(block(x, causal=not causal, rope=rope, pos=pos), rows)
    assert not torch.allclose(other[:, 1:], whole[:, 1:], atol=1e-4)

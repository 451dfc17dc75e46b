"""Precision resolution for cpu, cuda and mps, and bf16 autocast: finite, and close to fp32 (CUDA when present)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from arclib.data import tokens as tk
from arclib.data.tokens import Episode, collate
from arclib.evaluation.report import task_losses
from arclib.models import MODEL_NAMES, build_model
from arclib.training import precision
from arclib.training.precision import resolve_precision
from arclib.training.time_to_accuracy import score

HAS_CUDA = torch.cuda.is_available()


def fake_devices(monkeypatch, cuda=False, bf16=False, mps=False):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


def test_precision_resolves_per_device(monkeypatch):
    fake_devices(monkeypatch)
    assert resolve_precision("auto") == resolve_precision("cpu") == "32-true"
    fake_devices(monkeypatch, mps=True)
    assert precision.detect_accelerator() == "mps" and resolve_precision() == "32-true"
    fake_devices(monkeypatch, cuda=True, bf16=True)
    assert resolve_precision() == resolve_precision("gpu") == "bf16-mixed"
    assert resolve_precision("cpu") == "32-true"  # a CPU run on a GPU machine stays fp32
    fake_devices(monkeypatch, cuda=True, bf16=False)
    assert resolve_precision() == "32-true"  # never fp16
    with pytest.raises(ValueError, match="unknown accelerator 'tpu'"):
        resolve_precision("tpu")


def small_batch(n=8, seed=0):
    rng = np.random.default_rng(seed)

    def g():
        return rng.integers(0, 10, size=rng.integers(2, 5, size=2)).astype(np.int8)

    return collate([Episode("t", [(g(), g()), (g(), g())], g(), g()) for _ in range(n)])


def model_with_unit_gain(name, device):
    """Weights of std 0.2, so logits are far apart and a bf16 rounding changes an argmax only where it is close."""
    torch.manual_seed(0)
    model = build_model(name, "tiny").to(device)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.2)
    return model


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device here"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", [MODEL_NAMES[0], MODEL_NAMES[-1]])
def test_bf16_autocast_forward_backward_is_finite_and_close_to_fp32(device, name):
    model = model_with_unit_gain(name, device)
    batch = small_batch().to(device)
    with torch.no_grad():
        reference = model(batch).float()
    with torch.autocast(device, dtype=torch.bfloat16):
        logits = model(batch)
        loss = model.loss(logits, batch.tgt_out)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    relative = ((logits.float() - reference).abs().max() / reference.abs().max()).item()
    assert relative < 0.05, f"bf16 logits differ from fp32 by {relative:.3f} of their range"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", [MODEL_NAMES[0], MODEL_NAMES[-1]])
def test_generation_under_autocast_equals_fp32_where_fp32_is_decisive(device, name):
    model = model_with_unit_gain(name, device).eval()
    batch = small_batch().to(device)
    with torch.no_grad():
        tokens, _ = model.generate(batch, max_len=12, stop_invalid=False)
        with torch.autocast(device, dtype=torch.bfloat16):
            auto_tokens, _ = model.generate(batch, max_len=12, stop_invalid=False)
        tgt_in = torch.cat([torch.full_like(tokens[:, :1], tk.BOS), tokens[:, :-1]], 1)
        forced = replace(batch, tgt_in=tgt_in)
        logits = model(forced).float()
        with torch.autocast(device, dtype=torch.bfloat16):
            auto_logits = model(forced).float()
    error = (auto_logits - logits).abs().max(-1).values  # (B, T): bf16's perturbation at each step
    top2 = logits.topk(2, dim=-1).values
    is_eos = (tokens == tk.EOS).long()
    live = (is_eos.cumsum(1) - is_eos) == 0  # up to and including the first EOS
    # flipping an argmax takes perturbations summing to the margin: beyond 3x the step's error it cannot happen
    decisive = (top2[..., 0] - top2[..., 1] > 3 * error) & live
    assert torch.equal(auto_logits.argmax(-1)[decisive], tokens[decisive])
    every_step_decisive = (decisive | ~live).all(1)
    assert every_step_decisive.any(), "no sample is decisive at every step: the check below would be vacuous"
    assert torch.equal(auto_tokens[every_step_decisive], tokens[every_step_decisive])


def test_a_batch_pins_every_tensor_for_the_dataloader(monkeypatch):
    batch = small_batch(n=2)
    pinned_ids = []
    if not torch.cuda.is_available():  # pinning needs a CUDA driver: record what would be pinned instead
        monkeypatch.setattr(torch.Tensor, "pin_memory", lambda t: pinned_ids.append(id(t)) or t)
    pinned = batch.pin_memory()
    assert pinned.task_ids == batch.task_ids
    for name, value in vars(batch).items():
        if torch.is_tensor(value):
            assert (
                getattr(pinned, name).is_pinned() if torch.cuda.is_available() else id(value) in pinned_ids
            ), name


def small_episodes(n=4, seed=1) -> list[Episode]:
    rng = np.random.default_rng(seed)

    def g():
        return rng.integers(0, 10, size=(3, 3)).astype(np.int8)

    return [Episode(f"task{k % 2}", [(g(), g()), (g(), g())], g(), g()) for k in range(n)]


def test_held_out_loss_moves_its_batches_to_the_models_device(monkeypatch):
    """On a CPU-only machine as well: every batch the teacher-forced loss builds goes to the model's device
    (it once stayed on the CPU, so scoring a model on a GPU crashed)."""
    moved_to = []
    to = tk.Batch.to
    monkeypatch.setattr(
        tk.Batch, "to", lambda self, device: moved_to.append(torch.device(device)) or to(self, device)
    )
    task_losses(build_model(MODEL_NAMES[-1], "tiny"), small_episodes(n=40), batch_size=32)
    assert moved_to == [torch.device("cpu")] * 2


@pytest.mark.parametrize("device", DEVICES)
def test_held_out_scoring_runs_on_the_models_device(device):
    """The time-to-accuracy scoring (generation and teacher-forced loss) takes a model on any device."""
    episodes = small_episodes()
    model = build_model(MODEL_NAMES[-1], "tiny").to(device)
    row = score(model, episodes)
    assert set(row["per_task_exact"]) == {"task0", "task1"} and row["loss"] > 0
    assert next(model.parameters()).device.type == device

"""Throughput benchmark of each experiment at its configured size.

    python -m arclib bench [--quick] [--profile cpu] [--out checkpoints/bench.json]
    python -m arclib bench --time-to-accuracy [--experiment NAME] [--minutes M] [--seeds S]

Per experiment: steady-state training throughput (episodes/s, real tokens/s, after warm-up), achieved model
FLOP/s (counted by torch's FlopCounterMode over the measured steps, attention included) beside this machine's
measured fp32 matmul FLOP/s, generation throughput (grids/s), the fraction of padded token slots per batch,
and peak memory.
With --time-to-accuracy: minutes of training to reach exact accuracy on held-out grids
(arclib.training.time_to_accuracy).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula

from arclib.data.tokens import PAD, Batch
from arclib.evaluation.predict import predict_grids
from arclib.fileio import atomic_write_text
from arclib.models import ABLATION_ARMS, count_parameters
from arclib.training.cli import PROFILES, REPO_ROOT, load_experiment
from arclib.training.precision import resolve_precision


def attention_flops(query, key, is_causal=False, attn_mask=None) -> int:
    """Model FLOPs of Q @ K^T and scores @ V for (B, H, Tq, Dh) queries: only the (query, key) pairs the mask
    or causality lets attend, so padding keys, a causal mask's upper triangle and the block-diagonal mask of
    the champion's encoder on a GPU, which the kernel computes all the same, are not counted as useful work."""
    b, h, t_q, d = query.shape
    t_k = key.shape[2]
    if attn_mask is not None:
        allowed = attn_mask if attn_mask.dtype == torch.bool else attn_mask > float("-inf")
        pairs = int(allowed.expand(b, h, t_q, t_k).sum())
    elif is_causal:
        pairs = b * h * sum(min(i + 1, t_k) for i in range(t_q))  # SDPA's causal mask is aligned top-left
    else:
        pairs = b * h * t_q * t_k
    return 4 * pairs * d


def _count_cpu_attention() -> None:
    """Count the CPU attention kernel, which FlopCounterMode has no formula for (it has CUDA's only), so on CPU
    attention counted 0 FLOPs. The backward counts twice the forward, as for a matmul."""
    aten = torch.ops.aten
    forward, backward = (
        aten._scaled_dot_product_flash_attention_for_cpu,
        aten._scaled_dot_product_flash_attention_for_cpu_backward,
    )

    def forward_flops(query, key, value, dropout_p=0.0, is_causal=False, *, attn_mask=None, **kwargs):
        return attention_flops(query, key, is_causal, attn_mask)

    def backward_flops(grad, query, key, value, out, lse, dropout_p, is_causal, *, attn_mask=None, **kwargs):
        return 2 * attention_flops(query, key, is_causal, attn_mask)

    if forward not in flop_registry:
        register_flop_formula(forward, get_raw=True)(forward_flops)
    if backward not in flop_registry:
        register_flop_formula(backward, get_raw=True)(backward_flops)


_count_cpu_attention()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_flops(device: torch.device, dtype: torch.dtype, n: int = 1024, repeats: int = 20) -> float:
    """Measured matmul FLOP/s of this device at `dtype` (best of a few timed runs)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(3):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * n**3 / best


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)"


def epoch_padding_fraction(datamodule) -> float:
    """Padded share of all token slots over one whole training epoch, as the sampler batches it."""
    real = slots = 0
    for batch in datamodule.train_dataloader():
        real += batch.src_mask.sum().item() + (batch.tgt_out != PAD).sum().item()
        slots += batch.src_mask.numel() + batch.tgt_out.numel()
    return 1 - real / slots


def real_tokens(batch: Batch) -> int:
    return int(batch.src_mask.sum() + (batch.tgt_out != PAD).sum())


def bench_experiment(
    name: str, profile: str, warmup: int, episodes: int, gen_episodes: int, device: torch.device
) -> dict:
    exp = load_experiment(name, profile, "--trainer.logger=false", "--data.num_workers=0")
    module, datamodule = exp.model, exp.datamodule
    datamodule.setup("fit")
    model = module.model.to(device).train()
    bf16 = device.type == "cuda" and resolve_precision("cuda") == "bf16-mixed"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else nullcontext()
    optimizer = torch.optim.Adam(model.parameters(), lr=module.hparams.lr, betas=tuple(module.hparams.betas))
    steps = math.ceil(episodes / datamodule.hparams.batch_size)  # the same work at any batch size
    batches = []
    for batch in datamodule.train_dataloader():
        batches.append(batch.to(device))
        if len(batches) == warmup + steps:
            break

    def step(batch: Batch) -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = model.loss(model(batch), batch.tgt_out)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    for batch in batches[:warmup]:
        step(batch)
    measured = batches[warmup:]
    with FlopCounterMode(display=False) as counter:  # every measured batch: attention grows with length
        for batch in measured:
            with autocast:
                model.loss(model(batch), batch.tgt_out).backward()
    optimizer.zero_grad(set_to_none=True)
    synchronize(device)
    start = time.perf_counter()
    for batch in measured:
        step(batch)
    synchronize(device)
    seconds = time.perf_counter() - start
    n_episodes = sum(len(b) for b in measured)
    tokens = sum(real_tokens(b) for b in measured)
    episodes_gen = datamodule.generation_episodes("heldout", max(1, gen_episodes // 14))[:gen_episodes]

    def generation_seconds(precision) -> float:
        start = time.perf_counter()
        with precision:
            predict_grids(model, episodes_gen, device=device)
        synchronize(device)
        return time.perf_counter() - start

    gen_seconds = generation_seconds(autocast)
    # fp32 beside bf16: on an H200 bf16 generation once read slower than this CPU (README, On a GPU)
    fp32_gen_seconds = generation_seconds(nullcontext()) if bf16 else gen_seconds
    return {
        "experiment": name,
        "parameters": count_parameters(model),
        "train_episodes_per_s": n_episodes / seconds,
        "train_tokens_per_s": tokens / seconds,
        "seconds_per_step": seconds / len(measured),
        "epoch_minutes": seconds / len(measured) * len(datamodule.train_dataloader()) / 60,
        "precision": "bf16-mixed" if bf16 else "32-true",
        "model_flops_per_s": counter.get_total_flops() / seconds,
        "padding_fraction": epoch_padding_fraction(datamodule),
        "generation_grids_per_s": len(episodes_gen) / gen_seconds,
        "generation_grids_per_s_fp32": len(episodes_gen) / fp32_gen_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def format_table(rows: list[dict], peak: float, device: str, peak_dtype: str) -> str:
    lines = [
        f"device: {device}; {peak_dtype} matmul peak (measured): {peak / 1e9:.1f} GFLOP/s",
        f"{'experiment':24} {'params':>9} {'ep/s':>7} {'tok/s':>8} {'s/step':>7} {'GFLOP/s':>8} {'%peak':>6} {'pad':>6} {'gen/s':>7} {'min/epoch':>9} {'RSS MB':>7}",
    ]
    for r in rows:
        lines.append(
            f"{r['experiment']:24} {r['parameters']:>9,} {r['train_episodes_per_s']:>7.1f} {r['train_tokens_per_s']:>8.0f} "
            f"{r['seconds_per_step']:>7.2f} {r['model_flops_per_s'] / 1e9:>8.2f} {r['model_flops_per_s'] / peak:>6.1%} "
            f"{r['padding_fraction']:>6.1%} {r['generation_grids_per_s']:>7.1f} {r['epoch_minutes']:>9.2f} {r['peak_rss_mb']:>7.0f}"
        )
    return "\n".join(lines)


def _time_to_accuracy(parser, args) -> int:
    from arclib.training.time_to_accuracy import format_summary, run_time_to_accuracy

    for name in ("minutes", "every", "seeds", "per_task"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    result = run_time_to_accuracy(
        args.experiment,
        args.minutes,
        [args.first_seed + k for k in range(args.seeds)],
        args.every,
        args.per_task,
        args.profile,
        tuple(args.overrides),
        args.out_dir,
    )
    print(format_summary(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arclib bench", description=__doc__, allow_abbrev=False)
    parser.add_argument("--quick", action="store_true", help="fewer steps, for a quick look")
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        help="profile giving batch size and data (default: gpu on CUDA, else cpu)",
    )
    parser.add_argument("--experiments", nargs="+", default=list(ABLATION_ARMS), choices=ABLATION_ARMS)
    parser.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda if present"
    )
    parser.add_argument("--out", default=str(REPO_ROOT / "checkpoints" / "bench.json"))
    tta = parser.add_argument_group("time to accuracy")
    tta.add_argument("--time-to-accuracy", action="store_true", help="train one arm, score every few minutes")
    tta.add_argument("--experiment", default="exp_3_champion", choices=ABLATION_ARMS)
    tta.add_argument("--minutes", type=float, default=30.0, help="training minutes per seed (default 30)")
    tta.add_argument("--seeds", type=int, default=1, help="how many seeds (default 1)")
    tta.add_argument("--first-seed", type=int, default=307, help="seeds FIRST, FIRST+1, ... (default 307)")
    tta.add_argument("--every", type=float, default=3.0, help="minutes of training between scorings")
    tta.add_argument("--per-task", type=int, default=10, help="report-half episodes per task (default 10)")
    tta.add_argument(
        "--out-dir",
        default=None,
        help="default checkpoints/time_to_accuracy/<experiment>/seed_<first>[-<last>]",
    )
    tta.add_argument(
        "overrides", nargs="*", help="extra config overrides, e.g. --data.batch_size=8 (after --)"
    )
    args = parser.parse_args(argv)
    if args.profile is None:
        args.profile = "gpu" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    if args.time_to_accuracy:
        return _time_to_accuracy(parser, args)
    warmup, episodes, gen = (1, 64, 16) if args.quick else (2, 320, 64)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available here")
    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    torch.manual_seed(0)
    peak_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_peak_flops(device, peak_dtype, n=8192 if device.type == "cuda" else 1024)
    rows = []
    for name in args.experiments:
        print(f"[bench] {name} ...", flush=True)
        rows.append(bench_experiment(name, args.profile, warmup, episodes, gen, device))
    name = device_name(device)
    dtype_name = str(peak_dtype).removeprefix("torch.")
    print(format_table(rows, peak, name, dtype_name))
    for row in rows:
        if row["precision"] == "bf16-mixed":
            print(f"{row['experiment']}: generation {row['generation_grids_per_s']:.1f} grids/s under bf16 autocast, "
                  f"{row['generation_grids_per_s_fp32']:.1f} in fp32")  # fmt: skip
    result = {
        "device": name,
        "machine_matmul_flops_per_s": peak,
        "matmul_peak_dtype": dtype_name,
        "quick": args.quick,
        "profile": args.profile,
        "rows": rows,
    }
    atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0

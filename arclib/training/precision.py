"""Which numeric precision a run uses when its config leaves `trainer.precision` unset.

- CUDA with bf16 support (Ampere and newer): "bf16-mixed". bf16 has fp32's exponent range, so it needs no loss
  scaler; fp16 mixed precision gave NaN losses in the context path of the earlier public attempt.
- CUDA without bf16, CPU and Apple MPS: "32-true". On this kind of CPU (AVX2, no bf16 instructions) bf16 runs
  about 10x slower than fp32; on MPS, bf16 autocast support varies with the macOS and torch versions.
fp16 ("16-mixed") is never chosen here; a user who sets it explicitly gets Lightning's gradient scaler.
"""

from __future__ import annotations

import torch


def detect_accelerator() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_precision(accelerator: str = "auto") -> str:
    """The default precision for `accelerator` ("auto", "cpu", "cuda"/"gpu" or "mps")."""
    accelerator = detect_accelerator() if accelerator in ("auto", None) else accelerator
    if accelerator not in ("cpu", "cuda", "gpu", "mps"):
        raise ValueError(f"unknown accelerator {accelerator!r}; choose one of auto, cpu, cuda, gpu, mps")
    if accelerator in ("cuda", "gpu") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"

"""The compute side of benchmarks/roofline.py: FLOPs per decoded token and a measured GEMM rate at the served dtype.

- **FLOPs per token**: 2 x the parameters every token multiplies (the linear weights and the lm_head; a tied
  model's lm_head is its embedding table), plus attention over the context: 4 x layers x heads x head dim x
  context (QK^T and AV, a multiply-add each). Norms, activations and sampling are left out: a lower bound on the
  work, so the compute bound on tokens/s is an upper bound.
- **GEMM rate**: best of `repeats` square matmuls of `size` at the served dtype in the engine's own torch (its
  oneDNN/AMX kernels are what the engine runs), on `threads` threads. vLLM-CPU binds its worker's OpenMP threads
  to all cores but one when it can (the last serves the API), so the default is cores - 1 (at least 1). Without
  the engine's torch there is no compute bound (said so, never guessed).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

PROBE = """
import json, sys, time, torch
dtype, n, reps, threads = getattr(torch, sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
torch.matmul(a, b)  # warm-up: the library picks its kernel
best = float("inf")
for _ in range(reps):
    t = time.perf_counter()
    torch.matmul(a, b)
    best = min(best, time.perf_counter() - t)
print(json.dumps({"gflops": 2 * n ** 3 / best / 1e9, "library": "torch " + torch.__version__,
                  "threads": torch.get_num_threads()}))
"""
TORCH_DTYPES = {"float32": "float32", "float": "float32", "bfloat16": "bfloat16", "float16": "float16",
                "half": "float16"}


def default_threads() -> int:
    return max(1, (os.cpu_count() or 1) - 1)


def gemm_rate(dtype: str, python: Path | None, size: int = 1024, repeats: int = 5,
              threads: int | None = None) -> dict[str, Any]:
    """{"gflops", "library", "threads", "dtype", "size"} at the served dtype; "gflops" NaN with a "why" when the
    engine's torch cannot measure it."""
    threads = threads or default_threads()
    name = TORCH_DTYPES.get(dtype)
    out: dict[str, Any] = {"dtype": dtype, "size": size, "threads": threads, "gflops": float("nan")}
    if name is None:
        return {**out, "why": f"no GEMM probe for dtype {dtype!r}"}
    if python is not None and python.exists():
        done = subprocess.run([str(python), "-c", PROBE, name, str(size), str(repeats), str(threads)],
                              capture_output=True, text=True, timeout=600)
        if done.returncode == 0:
            return {**out, **json.loads(done.stdout.strip().splitlines()[-1])}
        out["why"] = f"the engine's torch failed: {done.stderr.strip().splitlines()[-1:]}"
    else:
        out["why"] = f"no engine python at {python}"
    return out


def flops_per_token(b: dict[str, Any], cfg: dict[str, Any], context: float | None) -> dict[str, float]:
    """{"weights": 2 x multiplied parameters, "attention": 4 x layers x heads x head dim x context (0 without a
    context), "total"} per decoded token; `b` is roofline.step_bytes's answer."""
    params = b["params"]
    multiplied = params["linear"] + (params["embedding"] if b["tied"] else params["lm_head"])
    out = {"weights": 2.0 * multiplied, "attention": 0.0}
    heads, hidden, layers = (cfg.get(k) for k in ("num_attention_heads", "hidden_size", "num_hidden_layers"))
    if context and context == context and heads and hidden and layers:
        head_dim = cfg.get("head_dim") or hidden // heads
        out["attention"] = 4.0 * layers * heads * head_dim * context
    out["total"] = out["weights"] + out["attention"]
    return out


def compute_bound(gflops: float, flops: dict[str, float]) -> float:
    """Decode tokens/s the GEMM rate allows for this many FLOPs per token (whatever the batch)."""
    return gflops * 1e9 / flops["total"] if flops["total"] > 0 else float("nan")


def nearer(tokens_per_s: float, memory_bound: float, compute: float) -> str:
    """Which bound the measured rate is nearer (the larger share of its bound), in words."""
    if compute != compute:
        return "memory (no compute bound measured)"
    mem, comp = tokens_per_s / memory_bound, tokens_per_s / compute
    return f"{'memory' if mem >= comp else 'compute'} ({mem:.0%} of memory's, {comp:.0%} of compute's)"

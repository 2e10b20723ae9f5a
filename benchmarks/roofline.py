"""Decode roofline: how close the engine's measured decode throughput comes to what this host's memory bandwidth
allows for the bytes one decode step must read.

    .venv/bin/python benchmarks/roofline.py --run-dir runs --study quickstart --trial 3
    .venv/bin/python benchmarks/roofline.py --trial-dir runs/outcome-<time>/recommended-0
    .venv/bin/python benchmarks/roofline.py --model smollm2-135m --dtype float32 --tokens-per-s 270 --batch 2.6

1. **Bandwidth** (numpy, one thread per core, numpy releases the GIL): best of `--repeats` copies of a `--size-mib`
   array (reported STREAM-style as (read + write) bytes / s; the write-allocate traffic a cache adds is not
   counted) and best of as many read-only sums (bytes read / s). About a second at the default 256 MiB.
2. **Bytes per decode step** for the model directory as served, from the safetensors headers (no tensor data
   is read): a floating-point tensor (F16/BF16/F32/F64) is counted at the served dtype (`--dtype`; `auto`: the
   checkpoint's `torch_dtype`), so fp32 serving of bf16 weights doubles them; integer and FP8 tensors keep their
   width (W8A8: the int8 linear weights stay 1 byte, their scales and the norms, embeddings and lm_head take the
   served dtype). Every linear weight, scale, norm and bias is read once per step; the logits read the whole
   lm_head matrix once per step, which for a tied model (no `lm_head` tensor) is the embedding table; the
   embedding lookup itself gathers only `batch` rows (counted, negligible). With a context length (measured
   from a trial's requests, or `--context-tokens`) the KV cache read per step is added too: batch x context x
   2 (K and V) x layers x KV heads x head dim x the served width (vLLM's `kv_cache_dtype auto`; sliding windows
   not modelled, so an upper bound on the bytes).
3. **Roofline**: steps/s <= bandwidth / bytes per step, decode tokens/s <= batch x that (batch: the mean number
   of running sequences). Measured, per load window of a trial (each capacity level, or the fixed-load window),
   from the client's stamped token arrivals inside the window: the tokens/s that arrived, and the batch as the
   mean number of sequences decoding (first to last token; `--batch-source gauge`: vLLM's polled
   `num_requests_running` instead, prefill included). The same steps also carry prefill, so the fraction of the
   bound is conservative. Or explicit `--tokens-per-s --batch`.

4. **Compute bound** (`roofline_compute.py`): tokens/s <= the GEMM rate measured at the served dtype in the
   engine's own torch (`--engine-python`, on `--gemm-threads`) / FLOPs per decoded token (weights and, with a
   context, attention). Each window says which bound it is nearer.

Writes the same as markdown to `--out` (reports/benchmarks/roofline.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import struct
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GB = 1e9

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roofline_compute import compute_bound, flops_per_token, gemm_rate, nearer  # noqa: E402

STORED_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4, "I16": 2,
                "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}
RECAST = {"F64", "F32", "F16", "BF16"}  # floating-point tensors vLLM casts to the served dtype
SERVED_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2, "float64": 8}
CATEGORIES = ("linear", "quant_scale", "norm", "other", "lm_head", "embedding")


# --- 1. bandwidth ------------------------------------------------------------------------------------------------

def bandwidth(size_mib: float = 256.0, repeats: int = 10, threads: int | None = None,
              budget_s: float = 15.0) -> dict[str, float]:
    """Best-of-N copy and read-only sum over `size_mib` MiB split across `threads` threads (default: one per core);
    stops repeating once `budget_s` is spent (at least one of each)."""
    import numpy as np

    threads = threads or os.cpu_count() or 1
    n = max(1, int(size_mib * 2**20 / 8 / threads))  # float64 elements per thread
    src = [np.ones(n) for _ in range(threads)]
    dst = [np.empty_like(a) for a in src]
    total = 8 * n * threads
    with ThreadPoolExecutor(threads) as pool:
        def timed(fn, arrays) -> float:
            t0 = time.perf_counter()
            list(pool.map(lambda args: fn(*args), arrays))
            return time.perf_counter() - t0

        for a, b in zip(src, dst, strict=True):  # first touch: page faults are not bandwidth
            np.copyto(b, a)
        started = time.perf_counter()
        copy_s, read_s = [], []
        for _ in range(repeats):
            copy_s.append(timed(np.copyto, list(zip(dst, src, strict=True))))
            read_s.append(timed(np.add.reduce, [(a,) for a in src]))
            if time.perf_counter() - started > budget_s:
                break
    return {"copy_gbs": 2 * total / min(copy_s) / GB, "read_gbs": total / min(read_s) / GB, "threads": threads,
            "size_mib": total / 2**20, "repeats": len(copy_s)}


# --- 2. bytes per decode step ------------------------------------------------------------------------------------

def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of one safetensors file (tensor name -> dtype, shape, offsets); no tensor data is read."""
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(length))


def model_tensors(model_dir: Path) -> dict[str, dict[str, Any]]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise SystemExit(f"roofline: no *.safetensors in {model_dir}")
    out: dict[str, dict[str, Any]] = {}
    for f in files:
        out.update({k: v for k, v in safetensors_header(f).items() if k != "__metadata__"})
    return out


def model_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    cfg = json.loads(path.read_text()) if path.is_file() else {}
    return cfg.get("text_config", cfg) | {k: cfg[k] for k in ("torch_dtype", "dtype") if k in cfg}


def served_width(dtype: str, cfg: dict[str, Any]) -> tuple[str, int]:
    """(the served dtype's name, bytes per element); `auto` reads the checkpoint's dtype."""
    if dtype == "auto":
        dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "float32").replace("torch.", "")
    if dtype not in SERVED_BYTES:
        raise SystemExit(f"roofline: unknown served dtype {dtype!r}; one of {sorted(SERVED_BYTES)}")
    return dtype, SERVED_BYTES[dtype]


def category(name: str, shape: list[int]) -> str:
    low = name.lower()
    if "lm_head" in low:
        return "lm_head"
    if "embed_tokens" in low or low.endswith(("wte.weight", "word_embeddings.weight")):
        return "embedding"
    if "norm" in low:
        return "norm"
    if low.endswith(("_scale", ".scale", "zero_point", "g_idx", "weight_shape")):
        return "quant_scale"
    if len(shape) >= 2 and ("weight" in low.rsplit(".", 1)[-1]):
        return "linear"
    return "other"


def step_bytes(model_dir: Path, dtype: str) -> dict[str, Any]:
    """Bytes one decode step reads, per category, at the served dtype; see the module docstring for the rules.
    `weights_per_step` holds everything but the embedding lookup, which reads `embed_row` bytes per sequence
    (`per_step_bytes` adds it for a batch)."""
    tensors = model_tensors(model_dir)
    cfg = model_config(model_dir)
    served, width = served_width(dtype, cfg)
    stored = dict.fromkeys(CATEGORIES, 0)
    served_bytes = dict.fromkeys(CATEGORIES, 0)
    params = dict.fromkeys(CATEGORIES, 0)
    embed_row = 0  # bytes of one embedding row at the served width
    for name, t in tensors.items():
        if t["dtype"] not in STORED_BYTES:
            raise SystemExit(f"roofline: tensor {name} has dtype {t['dtype']}, which this script does not size")
        count = math.prod(t["shape"])
        each = width if t["dtype"] in RECAST else STORED_BYTES[t["dtype"]]
        cat = category(name, t["shape"])
        stored[cat] += count * STORED_BYTES[t["dtype"]]
        served_bytes[cat] += count * each
        params[cat] += count
        if cat == "embedding":
            embed_row = t["shape"][-1] * each
    tied = served_bytes["lm_head"] == 0
    per_step = {c: served_bytes[c] for c in ("linear", "quant_scale", "norm", "other", "lm_head")}
    if tied:  # the logits read the embedding table as the lm_head matrix
        per_step["lm_head"] = served_bytes["embedding"]
    return {"model_dir": str(model_dir), "served_dtype": served, "width": width, "tied": tied,
            "params": params, "stored": stored, "served": served_bytes, "per_step": per_step,
            "weights_per_step": sum(per_step.values()), "embed_row": embed_row,
            "kv_per_token": kv_bytes_per_token(cfg, width)}


def per_step_bytes(b: dict[str, Any], batch: float) -> float:
    """Weights read by one decode step of `batch` sequences (the embedding lookup gathers one row per sequence)."""
    return b["weights_per_step"] + (batch if batch == batch else 1.0) * b["embed_row"]


def kv_bytes_per_token(cfg: dict[str, Any], width: int) -> float:
    """K and V of one token over every layer at the served width; NaN when config.json lacks the shape."""
    try:
        layers, heads = int(cfg["num_hidden_layers"]), int(cfg["num_attention_heads"])
        kv_heads = int(cfg.get("num_key_value_heads") or heads)
        head_dim = int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads)
    except (KeyError, TypeError, ValueError):
        return math.nan
    return 2.0 * layers * kv_heads * head_dim * width


# --- 3. the measured side ------------------------------------------------------------------------------------------

def _cumulative(rec: dict[str, Any]) -> list[float]:
    """Running completion-token count at each stamped chunk (vLLM's per-chunk usage, else one token a chunk)."""
    ts, counts = rec.get("token_ts") or [], rec.get("token_counts") or []
    if len(counts) != len(ts):
        return [float(i + 1) for i in range(len(ts))]
    return [float(c) if c is not None else float(i + 1) for i, c in enumerate(counts)]


def window_stats(load_dir: Path) -> dict[str, float]:
    """One load window (a capacity level or a fixed-load window), from the stamped token arrivals of every call
    (warmup and drain calls included) inside [warmup end, measurement end]:
    - tokens_per_s: tokens that arrived inside the window / the window (the level row's `output_tokens_per_s`,
      `autotune.measure.request_metrics.tokens_in_window`, counts the same way);
    - batch: the mean number of sequences decoding in the window (each call from its first to its last token,
      clipped to the window); batch_gauge: vLLM's `num_requests_running` polled at ~1 Hz (prefill included);
    - context_tokens: mean prompt + half the completion of the calls decoding in the window."""
    from autotune.loadgen.records import read_jsonl

    summaries = [json.loads(p.read_text()) for p in sorted(load_dir.glob("summary*.json"))]
    if not summaries or "warmup_end" not in summaries[0] or "measure_end" not in summaries[0]:
        return {}
    start, end = float(summaries[0]["warmup_end"]), float(summaries[0]["measure_end"])
    window = end - start
    gauges = next((s["gauges"] for s in summaries if s.get("gauges")), {})
    tokens, busy, contexts = 0.0, 0.0, []
    for p in sorted(load_dir.glob("requests*.jsonl")):
        for rec in read_jsonl(p, missing_ok=True):
            ts = rec.get("token_ts") or []
            if not ts or rec.get("send_ts") is None:
                continue
            send, cum = float(rec["send_ts"]), _cumulative(rec)
            before = max((c for t, c in zip(ts, cum, strict=True) if send + t < start), default=0.0)
            upto = max((c for t, c in zip(ts, cum, strict=True) if send + t <= end), default=0.0)
            tokens += upto - before
            overlap = min(end, send + ts[-1]) - max(start, send + ts[0])
            if overlap > 0:
                busy += overlap
                if rec.get("prompt_tokens") is not None:
                    contexts.append(float(rec["prompt_tokens"]) + float(rec.get("completion_tokens") or cum[-1]) / 2)
    return {"tokens_per_s": tokens / window, "batch": busy / window,
            "batch_gauge": float(gauges.get("server_running_mean", math.nan)),
            "context_tokens": sum(contexts) / len(contexts) if contexts else math.nan, "window_s": window}


def trial_windows(trial_dir: Path) -> list[dict[str, Any]]:
    """Every load window of a trial: its capacity levels (with their offered rate), else its one fixed window."""
    levels_file = trial_dir / "capacity_levels.json"
    if levels_file.is_file():
        rows = json.loads(levels_file.read_text())
        out = []
        for i, row in enumerate(rows):
            stats = window_stats(trial_dir / "levels" / f"level-{i:02d}")
            verdict = "held" if row.get("passed") else "missed"
            if stats:
                out.append({"label": f"level {i} ({row['rate']:.3g} tasks/s, {verdict} SLA)", **stats})
        return out
    stats = window_stats(trial_dir / "load")
    return [{"label": "fixed-load window", **stats}] if stats else []


def roofline(bw_gbs: float, weights: float, kv_per_token: float, tokens_per_s: float, batch: float,
             context: float | None) -> dict[str, float]:
    """Bounds on decode tokens/s (weights only; weights + KV when a context is known) and the measured fractions."""
    bw = bw_gbs * GB
    out = {"bound_weights": batch * bw / weights}
    out["fraction_weights"] = tokens_per_s / out["bound_weights"]
    if context is not None and context == context and kv_per_token == kv_per_token:
        kv = batch * context * kv_per_token
        out["kv_per_step"] = kv
        out["bound_kv"] = batch * bw / (weights + kv)
        out["fraction_kv"] = tokens_per_s / out["bound_kv"]
    return out


# --- report ------------------------------------------------------------------------------------------------------

def _mb(x: float) -> str:
    return f"{x / 1e6:,.1f}"


def bytes_table(b: dict[str, Any]) -> list[str]:
    lines = ["| tensors | parameters | stored MB | served MB | read per decode step, MB |", "|---|---|---|---|---|"]
    notes = {"lm_head": " (tied: the embedding table)" if b["tied"] else ""}
    for c in CATEGORIES:
        if c == "embedding" and b["params"][c]:
            lines.append(f"| embedding (the lookup gathers one row per sequence) | {b['params'][c]:,} | "
                         f"{_mb(b['stored'][c])} | {_mb(b['served'][c])} | {b['embed_row'] / 1e3:,.2f} kB x batch |")
        elif b["params"][c] or b["per_step"].get(c):
            lines.append(f"| {c}{notes.get(c, '')} | {b['params'][c]:,} | {_mb(b['stored'][c])} | "
                         f"{_mb(b['served'][c])} | {_mb(b['per_step'].get(c, 0.0))} |")
    lines.append(f"| **total** | {sum(b['params'].values()):,} | {_mb(sum(b['stored'].values()))} | "
                 f"{_mb(sum(b['served'].values()))} | **{_mb(b['weights_per_step'])}** |")
    return lines


def render(bw: dict[str, float], b: dict[str, Any], rows: list[dict[str, Any]], meta: dict[str, Any],
           which: str) -> str:
    kv = b["kv_per_token"]
    text = [
        "# Decode roofline",
        "",
        f"{meta['created']}; {meta['source']}.",
        "",
        "## Memory bandwidth of this host",
        "",
        f"numpy, {bw['threads']:.0f} thread(s), {bw['size_mib']:.0f} MiB, best of {bw['repeats']:.0f}: "
        f"**copy {bw['copy_gbs']:.2f} GB/s** (read + write bytes), **read-only sum {bw['read_gbs']:.2f} GB/s**. "
        f"The roofline below uses the {which} figure.",
        "",
        f"## Bytes per decode step: `{b['model_dir']}` served as {b['served_dtype']} ({b['width']} bytes)",
        "",
        *bytes_table(b),
        "",
        f"KV cache per token of context: {kv / 1e3:,.1f} kB (K and V, every layer, at the served width)."
        if kv == kv else "KV cache per token: unknown (config.json lacks the attention shape).",
        "",
        "## Measured against the roofline",
        "",
        "Bound: decode tokens/s <= batch x bandwidth / bytes per step (batch = mean running sequences; "
        "\"+ KV\" adds batch x context x the KV bytes per token to each step).",
        "",
        f"| window | output tokens/s | batch ({meta['batch_source']}) | running gauge | context tokens | "
        "bound, weights only | measured / bound | bound, weights + KV | measured / bound | compute bound | "
        "nearer |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rl = r["roofline"]
        gauge = r.get("batch_gauge", math.nan)
        text.append(
            f"| {r['label']} | {r['tokens_per_s']:.1f} | {r['batch']:.2f} | "
            + ("-" if gauge != gauge else f"{gauge:.2f}") + " | "
            + (f"{r['context_tokens']:.0f}" if r.get("context_tokens") == r.get("context_tokens")
               and r.get("context_tokens") is not None else "-")
            + f" | {rl['bound_weights']:.0f} | **{rl['fraction_weights']:.1%}** | "
            + (f"{rl['bound_kv']:.0f} | **{rl['fraction_kv']:.1%}** |" if "bound_kv" in rl else "- | - |")
            + f" {r['compute_bound']:.0f} | {r['nearer']} |")
    text += ["", *compute_lines(meta["gemm"])]
    return "\n".join(text)


def compute_lines(g: dict[str, Any]) -> list[str]:
    """How the compute bound was measured (or why there is none)."""
    if g["gflops"] != g["gflops"]:
        return [f"No compute bound: {g.get('why', 'not measured')}.", ""]
    return [f"Compute bound: GEMM {g['gflops']:.1f} GFLOP/s ({g['library']}, {g['dtype']}, {g['size']}^3, "
            f"{g['threads']} thread(s), best of the repeats) / FLOPs per decoded token (2 x the multiplied "
            "parameters, plus attention over the context when known). \"nearer\": the bound whose share the "
            "measured rate fills more.", ""]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--run-dir", type=Path, default=Path("runs"))
    ap.add_argument("--study", help="a study under --run-dir: measured tokens/s and batch from --trial")
    ap.add_argument("--trial", type=int, help="the trial number (its capacity levels, or its fixed window)")
    ap.add_argument("--trial-dir", type=Path, help="a trial directory directly (e.g. an outcome.py window: "
                    "runs/outcome-<time>/recommended-0)")
    ap.add_argument("--level", type=int, help="only this capacity level (default: every level)")
    ap.add_argument("--model", help="a bundled model name or a model directory (default: the trial's)")
    ap.add_argument("--quantization", default=None, help="with a bundled --model: e.g. w8a8 (default: the trial's "
                    "or none)")
    ap.add_argument("--dtype", help="the served dtype: float32, bfloat16, float16, auto (default: the trial's)")
    ap.add_argument("--tokens-per-s", type=float, help="measured decode (output) tokens/s, without --study")
    ap.add_argument("--batch", type=float, help="mean running sequences, without --study")
    ap.add_argument("--batch-source", choices=("client", "gauge"), default="client", help="a trial's batch: "
                    "sequences decoding by the client's token stamps (default), or vLLM's running gauge")
    ap.add_argument("--context-tokens", type=float, help="mean context per sequence (adds the KV reads); from a "
                    "trial: measured")
    ap.add_argument("--size-mib", type=float, default=256.0, help="bandwidth array size (default 256 MiB)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, help="bandwidth threads (default: one per core)")
    ap.add_argument("--use", choices=("copy", "read"), default="read", help="the bandwidth the bound uses (default "
                    "read: a decode step mostly reads)")
    ap.add_argument("--engine-python", type=Path, default=REPO / ".venv-engine" / "bin" / "python",
                    help="the engine's interpreter, whose torch measures the GEMM rate")
    ap.add_argument("--gemm-threads", type=int, help="GEMM threads (default: cores - 1, as vLLM-CPU binds)")
    ap.add_argument("--gemm-size", type=int, default=1024)
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "benchmarks" / "roofline.md")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)

    from autotune.models import registry as models

    server: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    if args.study or args.trial_dir:
        if args.trial_dir is None and args.trial is None:
            ap.error("--study needs --trial")
        trial_dir = args.trial_dir or args.run_dir / args.study / f"trial-{args.trial:04d}"
        server = json.loads((trial_dir / "resolved-config.json").read_text())["server"]
        rows = trial_windows(trial_dir)
        if args.batch_source == "gauge":
            rows = [{**r, "batch": r["batch_gauge"]} for r in rows]
        if args.level is not None:
            rows = [r for r in rows if r["label"].startswith(f"level {args.level} ")]
        if not rows:
            raise SystemExit(f"roofline: no measured load window under {trial_dir}")
        source = f"trial {args.trial} of study `{args.study}` ({trial_dir})" if args.trial_dir is None \
            else f"the trial in {trial_dir}"
    else:
        if args.tokens_per_s is None or args.batch is None or not args.model:
            ap.error("without --study give --model, --tokens-per-s and --batch (and --dtype)")
        rows = [{"label": "given", "tokens_per_s": args.tokens_per_s, "batch": args.batch,
                 "context_tokens": args.context_tokens}]
        source = "measured figures given on the command line"
    if args.context_tokens is not None:
        for r in rows:
            r["context_tokens"] = args.context_tokens
    model = args.model or server.get("model")
    quant = args.quantization or server.get("quantization") or "none"
    dtype = args.dtype or server.get("dtype") or "auto"
    model_dir = Path(models.resolve(model, quant)[0])
    if not model_dir.is_dir():
        raise SystemExit(f"roofline: {model_dir} is not a local model directory (pass --model DIR)")
    b = step_bytes(model_dir, dtype)

    print(f"bandwidth: {args.size_mib:g} MiB, best of {args.repeats} ...", file=sys.stderr, flush=True)
    bw = bandwidth(args.size_mib, args.repeats, args.threads)
    use = bw["read_gbs"] if args.use == "read" else bw["copy_gbs"]
    print(f"GEMM at {b['served_dtype']} ...", file=sys.stderr, flush=True)
    gemm = gemm_rate(b["served_dtype"], args.engine_python, args.gemm_size, threads=args.gemm_threads)
    for r in rows:
        r["roofline"] = roofline(use, per_step_bytes(b, r["batch"]), b["kv_per_token"], r["tokens_per_s"],
                                 r["batch"], r.get("context_tokens"))
        r["compute_bound"] = compute_bound(gemm["gflops"], flops_per_token(b, model_config(model_dir),
                                                                           r.get("context_tokens")))
        memory = r["roofline"].get("bound_kv", r["roofline"]["bound_weights"])
        r["nearer"] = nearer(r["tokens_per_s"], memory, r["compute_bound"])
    meta = {"created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "source": source, "gemm": gemm,
            "batch_source": ("decoding, client" if args.batch_source == "client" else "vLLM running gauge")
            if args.study or args.trial_dir else "given"}
    text = render(bw, b, rows, meta, "read-only" if args.use == "read" else "copy")
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

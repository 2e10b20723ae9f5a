"""Make an INT8 W8A8 (compressed-tensors) copy of a HF model directory with llmcompressor.

Runs in its own venv (torch==2.13.0 + llmcompressor), offline, on CPU:

    python quantize_w8a8.py --src /tmp/conv/smollm2 --out /tmp/conv/smollm2-w8a8 [--calib-samples N]

--calib-samples 0 (default): data-free round-to-nearest -- int8 per-channel weights, dynamic
per-token int8 activations. N > 0: SmoothQuant + GPTQ calibrated on N built-in strings.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

CALIB_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Summarize the following e-mail in one sentence: the meeting moved to Tuesday at 10am.",
    "def fibonacci(n: int) -> int:\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "What is the capital of France? The capital of France is Paris.",
    "Extract the e-mail address from: Contact Jane Doe at jane.doe@example.com or 555-0100.",
    "Photosynthesis converts light energy, water and carbon dioxide into glucose and oxygen.",
    "User: Translate 'good morning' into Spanish.\nAssistant: Buenos dias.",
    "List three prime numbers greater than ten: 11, 13 and 17.",
]


def build_recipe(calibrated: bool) -> list[Any]:
    """Return the llmcompressor modifiers for a W8A8 INT8 scheme."""
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    if not calibrated:
        return [QuantizationModifier(targets="Linear", scheme="W8A8", ignore=["lm_head"])]
    from llmcompressor.modifiers.transform import SmoothQuantModifier

    return [
        SmoothQuantModifier(smoothing_strength=0.8),
        GPTQModifier(targets="Linear", scheme="W8A8", ignore=["lm_head"]),
    ]


def calib_dataset(tokenizer: Any, n: int, max_len: int) -> Any:
    """Tokenize n built-in strings (cycled) into a datasets.Dataset."""
    from datasets import Dataset

    texts = [CALIB_TEXTS[i % len(CALIB_TEXTS)] for i in range(n)]
    enc = tokenizer(texts, truncation=True, max_length=max_len)
    return Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, quantize, save compressed."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", required=True, help="bf16/fp32 HF model directory")
    p.add_argument("--out", required=True, help="output directory (compressed-tensors)")
    p.add_argument("--calib-samples", type=int, default=0, help="0 = data-free RTN (default)")
    p.add_argument("--max-seq-len", type=int, default=256)
    args = p.parse_args(argv)
    try:
        import torch
        from llmcompressor import oneshot
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        print(f"missing dependency ({exc.name}): pip install torch==2.13.0 llmcompressor", file=sys.stderr)
        return 3

    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(args.src, dtype=torch.bfloat16)
    tokenizer = AutoTokenizer.from_pretrained(args.src)
    kwargs: dict[str, Any] = {}
    if args.calib_samples > 0:
        kwargs = {
            "dataset": calib_dataset(tokenizer, args.calib_samples, args.max_seq_len),
            "num_calibration_samples": args.calib_samples,
            "max_seq_length": args.max_seq_len,
        }
    oneshot(model=model, recipe=build_recipe(args.calib_samples > 0), **kwargs)
    model.save_pretrained(args.out, save_compressed=True)
    tokenizer.save_pretrained(args.out)
    print(f"saved W8A8 model to {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

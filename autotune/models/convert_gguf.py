"""GGUF -> vLLM-loadable Hugging Face directory. Runs inside the *engine* interpreter (needs torch,
transformers, gguf, safetensors); the tuner starts it as a subprocess and never imports it.

    python convert_gguf.py --gguf FILE --out DIR [--dtype bfloat16]

transformers dequantizes the GGUF on load; `save_pretrained` refuses GGUF-quantized models, so the state
dict is written with safetensors (tied lm_head dropped), plus config.json (no quantization_config) and the
tokenizer. One line on stderr and exit 3 on a missing package.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    args = ap.parse_args()
    try:
        import torch
        from safetensors.torch import save_file
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        print(f"missing package in the engine env: {exc.name}; install it with "
              f"`<engine-python> -m pip install {exc.name} gguf accelerate`", file=sys.stderr)
        return 3
    try:
        import gguf  # noqa: F401  (transformers needs it for from_pretrained(gguf_file=...))
    except ImportError:
        print("missing package in the engine env: gguf; install it with `<engine-python> -m pip install gguf`",
              file=sys.stderr)
        return 3

    src = Path(args.gguf)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dtype = getattr(torch, args.dtype)
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=dtype)
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg["torch_dtype"] = args.dtype
    cfg["dtype"] = args.dtype
    (out / "config.json").write_text(json.dumps(cfg, indent=2, default=str))
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out)
    tok.save_pretrained(out)
    print(json.dumps({"out": str(out), "params": sum(v.numel() for v in state.values())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

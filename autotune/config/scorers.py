"""Task scorers: `score(answer: dict[str, str], reference: dict) -> float in [0, 1]`.

Built-ins: `extraction` (share of fields matching exactly after normalisation) and `arithmetic` (the final
number is right). Bring your own with `scorer: module:function` in the workload file; the module is imported
with the workload file's directory on sys.path.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autotune.errors import ConfigError

Scorer = Callable[[dict[str, str], dict[str, Any]], float]
BUILTIN = {"extraction": "autotune.workloads.extraction:score", "arithmetic": "autotune.workloads.arithmetic:score"}


def resolve_scorer(spec: str, base_dir: Path, file: str = "workload") -> Scorer:
    target = BUILTIN.get(spec, spec)
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigError(file, "scorer", f"must be one of {sorted(BUILTIN)} or `module:function`", spec)
    base = str(base_dir.resolve())
    if base not in sys.path:
        sys.path.insert(0, base)
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(file, "scorer", f"cannot import ({type(exc).__name__}: {exc})", spec) from None
    if not callable(fn):
        raise ConfigError(file, "scorer", "is not callable", spec)
    return fn


def safe_score(scorer: Scorer, answer: dict[str, str], reference: dict[str, Any]) -> float:
    """A scorer that raises or returns junk scores 0 for that task instead of killing the trial."""
    try:
        value = float(scorer(answer, reference))
    except Exception:
        return 0.0
    return min(1.0, max(0.0, value)) if value == value else 0.0

"""Reading back what a load run wrote: one JSON record per line (tasks, requests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autotune.errors import ConfigError


def read_jsonl(path: Path, missing_ok: bool = False) -> list[dict[str, Any]]:
    """Records of a JSONL file the tuner wrote (a trial's tasks/requests); `missing_ok`: none if it does not
    exist. A damaged line is a one-line ConfigError naming the file and the line."""
    if missing_ok and not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError as exc:
                raise ConfigError(str(path), f"line {n}", f"is not JSON ({exc})", line[:60]) from None
    return out

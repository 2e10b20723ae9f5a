"""Is a model's weight file whole? A truncated or overwritten `*.safetensors` is a broken input, not a property
of the config that tried to serve it: it is reported in one line before a launch, and never remembered as a
failure of that server part.

The check reads only each file's header (8-byte length, JSON index of tensors): a file shorter or longer than
its header says is damaged. It costs milliseconds, so it runs in `validate`, at search start and before every
launch; a full checksum (`autotune models prepare NAME`) stays with the prepare step.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


def safetensors_problem(path: Path) -> str | None:
    """Why this safetensors file is damaged, or None when its size matches its header."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{path.name} is truncated ({size} bytes, no header)"
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER or 8 + n > size:
                return f"{path.name} is truncated or not safetensors (header of {n} bytes in a {size}-byte file)"
            header = json.loads(f.read(n))
    except OSError as exc:
        return f"{path.name} cannot be read ({exc.strerror or exc})"
    except (ValueError, UnicodeDecodeError):
        return f"{path.name} has a damaged header (not JSON)"
    ends = [t["data_offsets"][1] for k, t in header.items()
            if k != "__metadata__" and isinstance(t, dict) and len(t.get("data_offsets") or []) == 2]
    expected = 8 + n + max(ends, default=0)
    if size != expected:
        return f"{path.name} is {'truncated' if size < expected else 'longer than its header says'} " \
               f"({size} bytes, its header says {expected})"
    return None


def model_dir_problem(folder: Path) -> str | None:
    """The first damaged weight file of a model directory (every shard an index names must exist), else None."""
    if not folder.is_dir():
        return None
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        except (OSError, ValueError):
            return f"{index.name} is damaged (not JSON)"
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if missing:
            return f"{index.name} names shards that are missing: {', '.join(missing[:3])}"
    for path in sorted(folder.glob("*.safetensors")):
        if why := safetensors_problem(path):
            return why
    return None

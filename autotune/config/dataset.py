"""Dataset JSONL files: every line read and checked, with its line number, before anything runs.

`validate` and `search` share this reader, so a file `validate` accepts never crashes `search` on a later line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autotune.errors import ConfigError

SHAPE = "must be a JSON object with `id`, an `input` mapping and a `reference` mapping"


class DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object hook: a key written twice in one object is an error (json would keep the later value)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(key)
        out[key] = value
    return out


def read_items(path: Path, templates: Mapping[str, str] | None = None, file: str | None = None) -> list[dict]:
    """The items of a dataset file. Raises ConfigError(`path`, `line N`, rule, value) on the first bad line:
    unreadable, not UTF-8, not JSON, the wrong shape, a repeated id, or an input a template names but lacks."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read the dataset ({exc.strerror or exc})", show_value=False) from None
    items: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(raw.split(b"\n"), start=1):
        where = f"line {n}"
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(str(path), where, f"is not UTF-8 (byte 0x{line[exc.start]:02x} at column "
                              f"{exc.start + 1})", show_value=False) from None
        if not text.strip():
            continue
        try:
            item = json.loads(text, object_pairs_hook=_unique_keys)
        except DuplicateKey as exc:
            raise ConfigError(str(path), f"{where}: {exc}", "duplicate key in one JSON object (JSON would silently "
                              "keep the later value)", show_value=False) from None
        except ValueError as exc:
            raise ConfigError(str(path), where, f"is not JSON ({exc})", text.strip()[:60]) from None
        if not (isinstance(item, dict) and "id" in item and isinstance(item.get("input"), dict)
                and isinstance(item.get("reference"), dict)):
            raise ConfigError(str(path), where, SHAPE, text.strip()[:60])
        key = str(item["id"])
        if key in seen:
            raise ConfigError(str(path), where, f"repeats the id of line {seen[key]}", item["id"])
        seen[key] = n
        for name, template in (templates or {}).items():
            try:
                template.format(**item["input"])
            except (KeyError, IndexError) as exc:
                raise ConfigError(file or str(path), name, f"names an input that {path.name} {where} lacks; it has "
                                  f"{sorted(item['input'])}", str(exc)) from None
            except Exception as exc:  # malformed, or a field/format the item's value does not have
                raise ConfigError(file or str(path), name, f"cannot be filled from {path.name} {where} "
                                  f"({type(exc).__name__}: {exc})", template) from None
        items.append(item)
    if not items:
        raise ConfigError(str(path), "", "holds no items", show_value=False)
    return items

"""YAML -> pydantic, with every failure turned into a one-line ConfigError (file, key, rule, value)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from autotune.errors import ConfigError
from autotune.secrets import is_secret_name

M = TypeVar("M", bound=BaseModel)


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(str(path), "", "file does not exist", show_value=False)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read the file ({exc.strerror or exc})", show_value=False) from None
    except UnicodeDecodeError as exc:
        line = p.read_bytes()[:exc.start].count(b"\n") + 1
        raise ConfigError(str(path), "", f"is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} on line {line})",
                          show_value=False) from None
    try:
        _no_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader), str(path))
        data = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(str(path), "", "YAML nested too deeply", show_value=False) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(str(path), "", f"malformed YAML at {where}: {problem}", show_value=False) from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", "top level must be a mapping", type(data).__name__)
    return data


def _no_duplicate_keys(node: yaml.Node | None, file: str, path: str = "") -> None:
    """A key written twice in one mapping is an error, not a silent last-wins: a hand-edited file with a second
    `max_num_seqs:` or `sla:` would otherwise tune something else than its author reads."""
    stack = [(node, path)]
    while stack:
        current, where = stack.pop()
        if isinstance(current, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in current.value:
                key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
                dotted = f"{where}.{key}" if where else str(key)
                if key is not None and key != "<<":
                    line = key_node.start_mark.line + 1
                    if key in seen:
                        raise ConfigError(file, dotted, f"duplicate key on line {line} (first on line {seen[key]}): "
                                          "YAML would silently keep the later value", show_value=False)
                    seen[key] = line
                stack.append((value_node, dotted))
        elif isinstance(current, yaml.SequenceNode):
            stack += [(item, f"{where}.{i}" if where else str(i)) for i, item in enumerate(current.value)]


def parse_model(cls: type[M], data: dict[str, Any], file: str, context: dict[str, Any] | None = None) -> M:
    try:
        return cls.model_validate(data, context=context)
    except ValidationError as exc:
        raise _first_error(exc, file) from None


UNION_TAGS = ("vllm", "openai")  # the `kind`s of `engine:` (autotune.config.endpoints)


def _first_error(exc: ValidationError, file: str) -> ConfigError:
    err = exc.errors(include_url=False)[0]
    # a tagged union's tag is no key of the file (engine.vllm.env.X is `engine.env.X` in the YAML)
    loc = tuple(p for i, p in enumerate(err["loc"]) if not (p in UNION_TAGS and (
        (i and err["loc"][i - 1] == "engine") or (i > 1 and err["loc"][i - 2] == "endpoints"))))
    err = {**err, "loc": loc}
    key = ".".join(str(p) for p in loc)
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        return ConfigError(file, key, "unknown key", show_value=False)
    # our own validators raise ValueError("rule"); pydantic prefixes "Value error, "
    msg = msg.removeprefix("Value error, ")
    if err["type"] == "missing":
        return ConfigError(file, key, "is required", show_value=False)
    value = err.get("input")
    if any(is_secret_name(str(p)) for p in err["loc"]) or err["loc"][:2] == ("engine", "env"):
        return ConfigError(file, key, msg, show_value=False)  # the value may be a secret: never echo it
    if isinstance(value, dict | list):  # whole-object errors: the rule already names the culprit
        return ConfigError(file, key, msg, show_value=False)
    return ConfigError(file, key, msg, value)

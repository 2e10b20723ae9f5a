"""One redaction policy for every sink: MLflow params, tags and artifacts, trial files, bundles, reports, logs.

Secrets reach this process three ways: the tuner's own environment, a space's `engine.env` (a literal value or a
`${NAME}` reference to the tuner's environment) and a workload's `api_key`. Every secret value this process has
seen is registered here when its config is loaded, and every sink passes its text through `scrub()`, so a value
never leaves the process whatever path it took (an error message quoting the engine log, a tag, a table).
Names are kept: a deployment bundle refers to a secret by its environment variable name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

SECRET = re.compile(r"(key|token|secret|passw|passphrase|pwd|auth|cred|private)", re.I)
MASK = "***"
REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
MIN_LEN = 4  # shorter "secrets" (a flag value like `1`) would mask unrelated text and protect nothing
NOT_SECRET = {"PWD", "OLDPWD", "SSH_AUTH_SOCK", "XAUTHORITY", "KRB5CCNAME"}  # match the pattern, hold paths

_known: set[str] = set()


def is_secret_name(name: str) -> bool:
    return name.upper() not in NOT_SECRET and bool(SECRET.search(name))


def register(values: Iterable[str | None]) -> None:
    """Remember secret values so that every sink masks them from now on."""
    for v in values:
        if isinstance(v, str) and len(v) >= MIN_LEN:
            _known.add(v)


def register_env(env: Mapping[str, str]) -> None:
    """Values of secret-looking names (HF_TOKEN, OPENAI_API_KEY, DB_PASSWORD...) are secrets; a path to an existing
    file (GOOGLE_APPLICATION_CREDENTIALS) is not: masking it would only garble messages."""
    register(v for k, v in env.items() if is_secret_name(k) and not (v.startswith("/") and os.path.exists(v)))


def reference(value: str) -> str | None:
    """The variable name of a `${NAME}` value, else None."""
    m = REFERENCE.match(value.strip())
    return m.group(1) if m else None


def expand(value: str, environ: Mapping[str, str] | None = None) -> str:
    """`${NAME}` -> the tuner's environment value of NAME (KeyError when unset); anything else unchanged."""
    name = reference(value)
    if name is None:
        return value
    return (os.environ if environ is None else environ)[name]


def scrub(text: str) -> str:
    """Every known secret value in `text` replaced by the mask; longest first so overlaps mask fully."""
    if not _known or not text:
        return text
    for v in sorted(_known, key=len, reverse=True):
        if v in text:
            text = text.replace(v, MASK)
    return text


def scrub_bytes(data: bytes) -> bytes:
    for v in sorted(_known, key=len, reverse=True):
        b = v.encode()
        if b in data:
            data = data.replace(b, MASK.encode())
    return data


def contains_secret(data: bytes) -> bool:
    return any(v.encode() in data for v in _known)


def scrub_obj(obj: Any) -> Any:
    """Strings anywhere in nested dicts/lists scrubbed (tables, JSON documents)."""
    if isinstance(obj, str):
        return scrub(obj)
    if isinstance(obj, Mapping):
        return {k: scrub_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(scrub_obj(v) for v in obj)
    return obj


def redact(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Values of secret-looking keys replaced; known secret values in other values masked too."""
    return {k: (MASK if is_secret_name(k) else scrub_obj(v)) for k, v in mapping.items()}


def secret_arg(arg: str) -> bool:
    """`--api-key`, `--hf-token=x` or `HF_TOKEN=x` (a container's `-e`): an argument that carries a secret."""
    name = arg.split("=", 1)[0]
    return (arg.startswith("-") or "=" in arg) and is_secret_name(name)


def redact_argv(argv: list[str]) -> list[str]:
    """`--api-key X` / `--hf-token=X` / `TOKEN=X` -> the value masked; known secret values masked anywhere."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(MASK)
            hide_next = False
        elif secret_arg(arg):
            out.append(arg.split("=", 1)[0] + "=" + MASK if "=" in arg else arg)
            hide_next = "=" not in arg and arg.startswith("--")
        else:
            out.append(scrub(arg))
    return out


def _scrubbing_factory(factory):
    def make(*args, **kwargs):
        record = factory(*args, **kwargs)
        if _known:
            with contextlib.suppress(Exception):  # a malformed log call must not break the program
                record.msg, record.args = scrub(record.getMessage()), None
        return record

    make.autotune_scrubs = True  # type: ignore[attr-defined]
    return make


def install_log_scrubbing() -> None:
    """Every log record of this process (ours, MLflow's, Optuna's) is scrubbed before any handler sees it."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "autotune_scrubs", False):
        logging.setLogRecordFactory(_scrubbing_factory(factory))


register_env(os.environ)

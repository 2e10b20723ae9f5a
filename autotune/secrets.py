"""One redaction policy for every sink: MLflow params, tags and artifacts, trial files, bundles, reports, logs.

Secrets reach this process three ways: the tuner's own environment, a space's `engine.env` (a literal value or a
`${NAME}` reference to the tuner's environment) and a workload's `api_key`. Every secret value this process has
seen is registered here when its config is loaded, and every sink passes its text through `scrub()`, so a value
never leaves the process whatever path it took (an error message quoting the engine log, a tag, a table).
Names are kept: a deployment bundle refers to a secret by its environment variable name. A value is secret by its
name (HF_TOKEN) or by its shape (a Bearer credential, a URL's userinfo, a known key format): secret_detect.py
holds both rules, this module the registry and the sinks' scrubbing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from autotune.secret_detect import is_secret_name, secret_parts

MASK = "***"
REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
MIN_LEN = 4  # shorter "secrets" (a flag value like `1`) would mask unrelated text and protect nothing
NOT_SECRET_VALUES = {"true", "false", "none", "null", "yes", "no", "on", "off"}

_known: set[str] = set()


def register(values: Iterable[str | None]) -> None:
    """Remember secret values so that every sink masks them from now on."""
    for v in values:
        if isinstance(v, str) and len(v) >= MIN_LEN and v.lower() not in NOT_SECRET_VALUES:
            _known.add(v)


def carries_secret(name: str, value: str) -> bool:
    """A variable whose value must never be written out: a secret-looking name, or a credential in the value."""
    return is_secret_name(name) or bool(secret_parts(value, name))


def register_value(name: str, value: str) -> None:
    """The whole value of a secret-looking name is a secret; otherwise only the credentials its shape shows."""
    register([value] if is_secret_name(name) else secret_parts(value, name))


def register_env(env: Mapping[str, str]) -> None:
    """Values of secret-looking names (HF_TOKEN, OPENAI_API_KEY, DB_PASSWORD...) are secrets; a path to an existing
    file (GOOGLE_APPLICATION_CREDENTIALS) is not: masking it would only garble messages. Under any name, the
    credentials a value carries by its shape (a proxy URL's password, OTLP headers' bearer token) are secrets."""
    for k, v in env.items():
        if not (is_secret_name(k) and v.startswith("/") and os.path.exists(v)):
            register_value(k, v)


def url_password(value: str) -> str | None:
    """The password inside `scheme://user:PASSWORD@host...`, else None."""
    if "://" not in value or "@" not in value:
        return None
    try:
        return urlsplit(value.strip()).password
    except ValueError:
        return None


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
    """`--api-key`, `--hf-token=x` or `HF_TOKEN=x` (a container's `-e`): an argument that names a secret."""
    name = arg.split("=", 1)[0]
    return (arg.startswith("-") or "=" in arg) and is_secret_name(name)


def argv_secrets(argv: list[str]) -> list[int]:
    """Indexes of arguments that carry a secret value: `--api-key VALUE`, `--api-key=VALUE`, `TOKEN=VALUE`, or a
    shell string holding one (`bash -c "vllm serve --api-key sk-..."`). A secret-named switch followed by another
    flag (`--return-tokens-as-token-ids --port 1`) carries nothing."""
    found = []
    for i, arg in enumerate(argv):
        if " " in arg.strip():
            try:
                inner = shlex.split(arg)
            except ValueError:
                inner = arg.split()
            if argv_secrets(inner):
                found.append(i)
        elif secret_arg(arg) and ("=" in arg or (i + 1 < len(argv) and not argv[i + 1].startswith("-"))):
            found.append(i)
    return found


def redact_argv(argv: list[str]) -> list[str]:
    """`--api-key X` / `--hf-token=X` / `TOKEN=X` -> the value masked; known secret values masked anywhere."""
    out = [scrub(a) for a in argv]
    for i in argv_secrets(argv):
        arg = argv[i]
        if " " in arg.strip():
            out[i] = MASK
        elif "=" in arg:
            out[i] = arg.split("=", 1)[0] + "=" + MASK
        else:
            out[i + 1] = MASK
    return out


def _scrubbing_factory(factory):
    def make(*args, **kwargs):
        record = factory(*args, **kwargs)
        if _known:
            with contextlib.suppress(Exception):  # a malformed log call must not break the program
                record.msg, record.args = scrub(record.getMessage()), None
                if record.exc_info:  # handlers print exc_text when set: the traceback is scrubbed too
                    record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        return record

    make.autotune_scrubs = True  # type: ignore[attr-defined]
    return make


def install_log_scrubbing() -> None:
    """Every log record of this process (ours, MLflow's, Optuna's) is scrubbed before any handler sees it."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "autotune_scrubs", False):
        logging.setLogRecordFactory(_scrubbing_factory(factory))


register_env(os.environ)

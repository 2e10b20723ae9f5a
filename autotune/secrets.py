"""Keep secrets (API keys, tokens) out of logs, MLflow params, tags and artifacts."""

from __future__ import annotations

import re
from typing import Any

SECRET = re.compile(r"(key|token|secret|password|passwd|auth)", re.I)


def redact(mapping: dict[str, Any]) -> dict[str, Any]:
    """Never log secrets: values of secret-looking keys are replaced."""
    return {k: ("***" if SECRET.search(k) else v) for k, v in mapping.items()}


def redact_argv(argv: list[str]) -> list[str]:
    """`--api-key X` / `--hf-token=X` -> `***` for the value; everything else unchanged."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
        elif arg.startswith("--") and SECRET.search(arg.split("=", 1)[0]):
            out.append(arg.split("=", 1)[0] + "=***" if "=" in arg else arg)
            hide_next = "=" not in arg
        else:
            out.append(arg)
    return out

"""How a load-generator process starts: the shipped locustfile, the line a standby prints once imported, and an
environment without secrets. A leaf both the runner and the standby pool import."""

from __future__ import annotations

import os
from pathlib import Path

from autotune.secrets import carries_secret

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
STANDBY_READY = "autotune: load generator standing by"  # a standby's locustfile prints it once imported


def key_env(keys: str | dict[str, str] | None) -> dict[str, str]:
    """The secrets a load generator gets, as environment variables: one key is the engine's (AUTOTUNE_API_KEY);
    a mapping names every variable (the engine's, and one per routed endpoint: LoadConfig.routes' `key_var`)."""
    if not keys:
        return {}
    return {"AUTOTUNE_API_KEY": keys} if isinstance(keys, str) else {k: v for k, v in keys.items() if v}


def clean_env() -> dict[str, str]:
    """This process's environment without what carries a secret (by name or by shape): the load generator gets
    the one key it needs through AUTOTUNE_API_KEY."""
    return {k: v for k, v in os.environ.items() if not carries_secret(k, v)}

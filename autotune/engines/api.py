"""An OpenAI-compatible API as an endpoint (`engine.kind: openai`): nothing to launch, park or stop. It hands out
one handle, checked once by listing its models, and answers the keeper's interface, so the search, the nightly and
the outcome benchmark run on it unchanged. Its calls are priced per token (`api_cost`), not per hour."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from autotune.config import OpenAIEndpointConfig, ServerConfig
from autotune.engines.base import EngineHandle
from autotune.errors import EngineHealthTimeout, EngineLaunchError


def api_key(api: OpenAIEndpointConfig) -> str | None:
    """The key from the variable the space names (never from the space itself)."""
    return os.environ.get(api.api_key_env) if api.api_key_env else None


def api_cost(api: OpenAIEndpointConfig, input_tokens_per_task: float, output_tokens_per_task: float) -> float:
    """$ per 1k tasks at the API's token prices."""
    return 1000.0 * (input_tokens_per_task * api.usd_per_1m_input + output_tokens_per_task * api.usd_per_1m_output) \
        / 1e6


class APIKeeper:
    """The keeper of an endpoint the tuner does not run: `acquire` checks it once and hands the same handle out."""

    hung_grace_s = 2.0

    def __init__(self, api: OpenAIEndpointConfig):
        self.api = api
        self.handle: EngineHandle | None = None
        self.server: ServerConfig | None = None
        self.park = 0
        self.parked: list = []
        self.launches = self.reuses = self.thaws = 0

    def warm(self) -> list[ServerConfig]:
        return [self.server] if self.server is not None else []

    def acquire(self, server: ServerConfig, log_path: Path) -> tuple[EngineHandle, bool]:
        if self.handle is not None:
            self.reuses += 1
            return self.handle, True
        log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        models = self._models(log_path)
        if self.api.model not in models:
            raise EngineLaunchError(f"the API at {self.api.root} does not serve model {self.api.model!r} (it "
                                    f"serves {sorted(models)[:10]})", "unsupported")
        self.handle = EngineHandle(url=self.api.root, served_model=self.api.model, pgid=0, log_path=log_path,
                                   argv=[], startup_s=time.monotonic() - started, version=f"api:{self.api.model}",
                                   capabilities=frozenset(), kind="openai")
        self.server = server
        self.launches += 1
        return self.handle, False

    def _models(self, log_path: Path) -> set[str]:
        """GET /v1/models until it answers (its ids), within the endpoint's startup timeout."""
        key = api_key(self.api)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        deadline = time.monotonic() + self.api.startup_timeout_s
        last = ""
        while time.monotonic() < deadline:
            try:
                resp = httpx.get(f"{self.api.root}/v1/models", headers=headers, timeout=10.0)
                if resp.status_code in (401, 403):
                    raise EngineLaunchError(f"the API at {self.api.root} refused the key (HTTP {resp.status_code})",
                                            "bad_config")
                if resp.status_code == 200:
                    body = resp.json()
                    ids = {m.get("id") for m in (body.get("data", []) if isinstance(body, dict) else body)
                           if isinstance(m, dict)}
                    log_path.write_text(f"{self.api.root}/v1/models: {sorted(ids)}\n")
                    return ids
                last = f"HTTP {resp.status_code}"
            except (httpx.HTTPError, ValueError) as exc:
                last = type(exc).__name__
            time.sleep(0.5)
        log_path.write_text(f"{self.api.root}/v1/models did not answer: {last}\n")
        raise EngineHealthTimeout(f"the API at {self.api.root} did not list its models within "
                                  f"{self.api.startup_timeout_s:g} s ({last})")

    def close(self, grace_s: float | None = None) -> None:
        """Nothing runs here to stop; the next acquire checks the API again."""
        self.handle, self.server = None, None

    def close_all(self) -> None:
        self.close()

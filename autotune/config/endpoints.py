"""What a trial's FM calls go to: a self-hosted vLLM process the tuner launches (`kind: vllm`, the default), or an
OpenAI-compatible API it only calls (`kind: openai`: a hosted model, or any server that speaks
/v1/chat/completions), one discriminated union on `kind`."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from autotune.secret_detect import secret_parts
from autotune.secrets import argv_secrets, reference

DEFAULT_ENGINE_PYTHON = ".venv-engine/bin/python"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # `.nan` or `.inf` is never a valid setting


class EngineConfig(Strict):
    """How to start the engine. `command` wins over `python`; both come from config, never from code."""

    kind: Literal["vllm"] = "vllm"
    python: str = DEFAULT_ENGINE_PYTHON
    command: list[str] | None = None  # e.g. ["vllm", "serve"] or a container entrypoint
    device: Literal["cpu", "cuda"] = "cpu"
    host: str = "127.0.0.1"
    env: dict[str, str] = Field(default_factory=dict)
    extra_args: list[str] = Field(default_factory=list)
    startup_timeout_s: float = Field(600.0, gt=0)
    shutdown_timeout_s: float = Field(20.0, gt=0)
    # engines kept frozen (SIGSTOP) when the server part changes, thawed when it comes back instead of relaunched;
    # each keeps its memory, so leave 0 where that memory is a GPU's (autotune.engines.keeper)
    park: int = Field(0, ge=0, le=8)

    @field_validator("command", "extra_args")
    @classmethod
    def _no_secret_in_argv(cls, argv: list[str] | None) -> list[str] | None:
        for i in argv_secrets(argv or []):
            raise ValueError(f"item {i} ({(argv or [])[i].split('=', 1)[0].split()[0]!r}...) carries a secret: put "
                             "it in `engine.env` (vLLM reads VLLM_API_KEY and HF_TOKEN from its environment); an "
                             "argv is visible to every user of this host and the engine logs it")
        for i, arg in enumerate(argv or []):
            if secret_parts(arg):
                raise ValueError(f"item {i} carries a credential (by its shape: a key, token or URL password): put "
                                 "it in `engine.env`; an argv is visible to every user of this host")
        return argv

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if "${" in value and reference(value) is None:
                raise ValueError(f"{name}: a reference to the tuner's environment reads `${{NAME}}` alone")
        return env

    def launcher(self) -> list[str]:
        if self.command:
            return list(self.command)
        return [self.python, "-m", "vllm.entrypoints.openai.api_server"]


class OpenAIEndpointConfig(Strict):
    """An API the tuner does not run: nothing to launch or stop, priced per token, optionally rate-limited. Its
    key is read from the variable `api_key_env` names, never written in the space."""

    kind: Literal["openai"]
    url: str = Field(pattern=r"^https?://")  # the API root; a trailing /v1 is accepted (the client adds it)
    model: str = Field(min_length=1)  # the `model` the API serves
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    usd_per_1m_input: float = Field(0.0, ge=0)
    usd_per_1m_output: float = Field(0.0, ge=0)
    rpm: int | None = Field(None, gt=0)  # requests per minute the API allows (a task rate needing more fails)
    tpm: int | None = Field(None, gt=0)  # tokens per minute
    startup_timeout_s: float = Field(30.0, gt=0)  # how long its first answer to /v1/models may take

    @field_validator("url")
    @classmethod
    def _no_credential_in_url(cls, url: str) -> str:
        if secret_parts(url):  # it travels in argv, configs and logs: a key goes in `api_key_env`
            raise ValueError("carries a credential (a password or key in the URL): put the key in the variable "
                             "`api_key_env` names")
        return url

    @property
    def root(self) -> str:
        """The URL the client appends /v1/... to."""
        url = self.url.rstrip("/")
        return url[: -len("/v1")] if url.endswith("/v1") else url


class VllmEndpointConfig(EngineConfig):
    """A second self-hosted engine of the plan (`endpoints.NAME` with `kind: vllm`): launched once per search on its
    own fixed server part (`server`: ServerConfig's fields, e.g. a stronger model, its dtype, its cores through
    `cpu_threads_bind`), kept running while the routes change, stopped with the search."""

    server: dict[str, Any] = Field(default_factory=dict)

    @field_validator("server")
    @classmethod
    def _a_server_part(cls, server: dict[str, Any]) -> dict[str, Any]:
        from autotune.config.knobs import ServerConfig

        ServerConfig(**server)  # unknown or ill-typed keys fail here, with the key's name
        return server


def _kind(value: Any) -> str:
    return (value.get("kind", "vllm") if isinstance(value, dict) else getattr(value, "kind", "vllm")) or "vllm"


# `engine:` in a space: the default kind needs no `kind:` key (every space before endpoints had none)
EndpointConfig = Annotated[Annotated[EngineConfig, Tag("vllm")] | Annotated[OpenAIEndpointConfig, Tag("openai")],
                           Discriminator(_kind)]
# `endpoints.NAME` in a space: an API, or a second self-hosted engine with its own server part
NamedEndpoint = Annotated[Annotated[VllmEndpointConfig, Tag("vllm")] | Annotated[OpenAIEndpointConfig, Tag("openai")],
                          Discriminator(_kind)]

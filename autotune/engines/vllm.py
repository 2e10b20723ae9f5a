"""vLLM as a process: argv from server knobs, launch in its own group, /health readiness, teardown."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path

import httpx

from autotune.config import EngineConfig, ServerConfig
from autotune.engines.base import EngineHandle
from autotune.engines.process import EngineRegistry, flush_log, group_stopped, start_group, terminate_group
from autotune.errors import EngineHealthTimeout, EngineLaunchError
from autotune.models import model_dir_problem
from autotune.models import resolve as resolve_model
from autotune.secrets import expand

# log patterns -> failure reason tags, checked in order on the log tail of a dead engine
FAILURE_PATTERNS = [
    # a race with another process for the port: transient, retried on a new port
    ("port_in_use", re.compile(r"Address already in use|EADDRINUSE|\[Errno 98\]", re.I)),
    # damaged weights: a broken input, not a property of the config (never remembered as known_failure)
    ("broken_model", re.compile(r"SafetensorError|Error while deserializing header|MetadataIncompleteBuffer|"
                                r"incomplete metadata|file not fully covered|HeaderTooLarge|invalid load key|"
                                r"PytorchStreamReader failed|unexpected EOF while reading|GGUF.*(truncated|invalid)",
                                re.I)),
    ("oom", re.compile(r"out of memory|OutOfMemoryError|Cannot allocate memory|MemoryError|"
                       r"insufficient.*(kv|memory)|No available memory for the cache blocks|"
                       r"larger than the available KV cache memory", re.I)),
    ("unsupported", re.compile(r"not supported|unsupported|NotImplementedError|expects? \w+ to be \w+|"
                               r"error: unrecognized arguments|invalid choice|argument --|No common block size|"
                               r"ValidationError|must be (less|greater|at most|at least)", re.I)),
]


PORT_ATTEMPTS = 3
STOPPED_LAUNCH_S = 5.0


def speculative_config(s: ServerConfig) -> dict | None:
    """--speculative-config JSON; draft settings only apply to their method (conditional knobs)."""
    if s.spec_method == "none":
        return None
    cfg: dict = {"method": s.spec_method, "num_speculative_tokens": s.num_speculative_tokens}
    if s.spec_method == "ngram":
        if s.prompt_lookup_max is not None:
            cfg["prompt_lookup_max"] = s.prompt_lookup_max
        if s.prompt_lookup_min is not None:
            cfg["prompt_lookup_min"] = s.prompt_lookup_min
    elif s.spec_method == "draft_model":
        if not s.draft_model:
            raise EngineLaunchError("spec_method draft_model needs the draft_model knob", reason="bad_config")
        cfg["model"] = resolve_model(s.draft_model)[0]
    return cfg


def _flag(argv: list[str], name: str, value: object) -> None:
    if value is not None:
        argv += [f"--{name}", str(value)]


def _bool(argv: list[str], name: str, value: bool | None) -> None:
    if value is not None:
        argv.append(f"--{name}" if value else f"--no-{name}")


def build_argv(s: ServerConfig, engine: EngineConfig, port: int) -> list[str]:
    """The engine command line as an argv list (never a shell string)."""
    model_path, quant = resolve_model(s.model, s.quantization)
    argv = engine.launcher() + ["--model", model_path, "--served-model-name", s.model]
    argv += ["--host", engine.host, "--port", str(port)]
    if s.dtype != "auto":
        _flag(argv, "dtype", s.dtype)
    _flag(argv, "quantization", quant)
    _flag(argv, "max-num-seqs", s.max_num_seqs)
    _flag(argv, "max-num-batched-tokens", s.max_num_batched_tokens)
    _flag(argv, "block-size", s.block_size)
    if s.enforce_eager:
        argv.append("--enforce-eager")
    _bool(argv, "enable-prefix-caching", s.enable_prefix_caching)
    _bool(argv, "enable-chunked-prefill", s.enable_chunked_prefill)
    _flag(argv, "max-model-len", s.max_model_len)
    spec = speculative_config(s)
    if spec is not None:
        argv += ["--speculative-config", json.dumps(spec, separators=(",", ":"))]
    _flag(argv, "seed", s.seed)
    if engine.device == "cuda":
        _flag(argv, "gpu-memory-utilization", s.gpu_memory_utilization)
    return argv + list(engine.extra_args)


def knob_env(s: ServerConfig, engine: EngineConfig) -> dict[str, str]:
    """The engine variables server knobs set (vLLM-CPU reads these, not flags): KV space, the OpenMP thread binding
    and the cores reserved for the API server and scheduler. A deployment sets them too (the bundle's env)."""
    if engine.device != "cpu":
        return {}
    env = {}
    if s.kv_cache_space_gb is not None:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(s.kv_cache_space_gb)
    if s.cpu_threads_bind is not None:
        env["VLLM_CPU_OMP_THREADS_BIND"] = s.cpu_threads_bind
    if s.cpu_reserved_cores is not None:
        env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(s.cpu_reserved_cores)
    return env


def build_env(s: ServerConfig, engine: EngineConfig) -> dict[str, str]:
    """Environment overrides for the engine (on top of os.environ); `${NAME}` values read the tuner's environment
    here, at launch, so they live only in this process and the engine's."""
    try:
        env = {k: expand(v) for k, v in engine.env.items()}
    except KeyError as exc:
        raise EngineLaunchError(f"engine.env refers to ${{{exc.args[0]}}}, which is not set", "bad_config") from None
    env.update(knob_env(s, engine))
    # POST /reset_prefix_cache (dev endpoints; the tuning engine binds to loopback): every window starts cold
    env.setdefault("VLLM_SERVER_DEV_MODE", "1")
    return env


def reset_prefix_cache(url: str) -> bool:
    """Empty the engine's prefix cache so a reused engine gives no window an unearned warm start; False when
    the engine has no such endpoint (a non-vLLM server, or dev mode off)."""
    try:
        return httpx.post(f"{url}/reset_prefix_cache", timeout=10.0).status_code == 200
    except httpx.HTTPError:
        return False


def check_weights(server: ServerConfig) -> None:
    """A model (or draft) whose weight files are damaged fails here in milliseconds, as `broken_model`, before a
    launch that would take seconds and be misread as the config's fault."""
    paths = [resolve_model(server.model, server.quantization)[0]]
    if server.spec_method == "draft_model" and server.draft_model:
        paths.append(resolve_model(server.draft_model)[0])
    for path in paths:
        if why := model_dir_problem(Path(path)):
            raise EngineLaunchError(f"model {path} is damaged: {why} (repair or re-prepare it; it is not a property "
                                    "of this config)", "broken_model")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def log_tail(path: Path, n: int = 300, start: int = 0) -> str:
    """The last `n` lines of the log written after byte `start` (this launch's part of an appended log)."""
    try:
        with path.open("rb") as f:
            f.seek(max(start, path.stat().st_size - 512 * 1024))  # a long-lived engine's log can be large
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(line.rstrip() for line in lines[-n:])


DIED = re.compile(r"EngineCore encountered a fatal error|EngineDeadError|Worker failed with error")
CAUSE = re.compile(r"\b((?!EngineDead)\w*(?:Error|Exception)): (.+)$")


def engine_fatal(path: Path, start: int = 0) -> str | None:
    """The error a running engine died of (its first `SomethingError: message` line in the log written after byte
    `start`), or None when the log does not show the engine dying. A kernel that refuses the config's dtype kills
    the engine on its first request, after a healthy launch."""
    tail = log_tail(path, 600, start)
    if not DIED.search(tail):
        return None
    for line in tail.splitlines():
        if " ERROR " in line and (m := CAUSE.search(line)):  # a warning that names an error is no cause
            return f"{m.group(1)}: {m.group(2).strip()}"
    return "the engine core died (no cause in its log)"


def classify_failure(tail: str) -> str:
    for reason, pattern in FAILURE_PATTERNS:
        if pattern.search(tail):
            return reason
    return "launch_failed"


class VLLMEngine:
    """Launches one vLLM OpenAI server per ServerConfig; the registry lets a later run reap orphans."""

    def __init__(self, config: EngineConfig, registry: EngineRegistry, on_wait=None):
        self.config = config
        self.registry = registry
        self.on_wait = on_wait  # called with elapsed seconds while waiting for /health

    def launch(self, server: ServerConfig, log_path: Path) -> EngineHandle:
        """A healthy engine, or EngineLaunchError. A port taken between our choice and the engine's bind is a
        race, not a property of the config: the launch is retried on a new port."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                return self._launch_once(server, log_path)
            except EngineLaunchError as err:
                if err.reason != "port_in_use" or attempt == PORT_ATTEMPTS:
                    raise

    def _launch_once(self, server: ServerConfig, log_path: Path) -> EngineHandle:
        check_weights(server)
        port = free_port(self.config.host)
        argv = build_argv(server, self.config, port)
        overrides = build_env(server, self.config)
        started = time.monotonic()
        offset = log_path.stat().st_size if log_path.is_file() else 0  # an earlier attempt's lines stay in the log
        try:
            proc = start_group(argv, {**os.environ, **overrides}, log_path)
        except OSError as exc:  # not executable, a directory, gone since validation
            raise EngineLaunchError(f"cannot start the engine {argv[0]!r}: {exc.strerror or exc}",
                                    "not_executable") from None
        self.registry.record(proc, argv)
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        handle = EngineHandle(
            url=f"http://{host}:{port}", served_model=server.model, pgid=proc.pid,
            log_path=log_path, argv=argv, env_overrides=overrides,
        )
        try:
            self._wait_ready(proc, handle, started, offset)
        except BaseException:
            self.stop(handle)
            raise
        handle.startup_s = time.monotonic() - started
        handle.version = self._version(handle)
        return handle

    def _wait_ready(self, proc, handle: EngineHandle, started: float, offset: int = 0) -> None:
        deadline = started + self.config.startup_timeout_s
        stopped_since: float | None = None  # a frozen launch fails in seconds, not at startup_timeout_s
        with httpx.Client(timeout=2.0) as client:
            while True:
                code = proc.poll()
                if code is not None:
                    flush_log(proc)
                    tail = log_tail(handle.log_path, start=offset)
                    reason = classify_failure(tail)
                    raise EngineLaunchError(
                        f"engine exited with code {code} before ready ({reason}): {_last_error_line(tail)}",
                        reason, "\n".join(tail.splitlines()[-40:]),
                    )
                try:
                    if client.get(f"{handle.url}/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                elapsed = time.monotonic() - started
                if group_stopped(handle.pgid):
                    stopped_since = stopped_since or time.monotonic()
                    if time.monotonic() - stopped_since > STOPPED_LAUNCH_S:
                        raise EngineLaunchError(f"engine stopped (frozen) for {STOPPED_LAUNCH_S:g} s during launch",
                                                "engine_hung", log_tail(handle.log_path, start=offset))
                else:
                    stopped_since = None
                if time.monotonic() > deadline:
                    raise EngineHealthTimeout(
                        f"engine not healthy after {elapsed:.0f} s (startup_timeout_s)",
                        log_tail=log_tail(handle.log_path, start=offset),
                    )
                if self.on_wait:
                    self.on_wait(elapsed)
                time.sleep(1.0)

    def _version(self, handle: EngineHandle) -> str:
        try:
            return httpx.get(f"{handle.url}/version", timeout=2.0).json().get("version", "unknown")
        except (httpx.HTTPError, ValueError):
            return "unknown"

    def stop(self, handle: EngineHandle) -> None:
        terminate_group(handle.pgid, self.config.shutdown_timeout_s)
        self.registry.forget(handle.pgid)


def scrape_metrics(url: str) -> str:
    return httpx.get(f"{url}/metrics", timeout=10.0).text


def _last_error_line(tail: str) -> str:
    """The root cause: the first `XxxError: ...` line of the tail (later ones wrap it), prefix stripped."""
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip() and "WARNING" not in ln]
    for pattern in (r"\b\w*(Error|Exception): .+", r"\b(error|killed|out of memory)\b.*"):
        for ln in lines:
            m = re.search(pattern, ln, re.I)
            if m and "See root cause above" not in ln:
                return m.group(0)[-300:]
    return lines[-1][-300:] if lines else "no output"

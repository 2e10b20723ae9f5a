"""Error hierarchy. Every user-facing failure is an AutotuneError whose str() is one line."""

from __future__ import annotations


class AutotuneError(Exception):
    """Base class: the CLI prints str(err) on one line and exits non-zero, without a traceback."""

    exit_code = 1


class ConfigError(AutotuneError):
    """Bad user input: `file: key: rule, got value`."""

    exit_code = 2

    def __init__(self, file: str, key: str, rule: str, value: object = None, *, show_value: bool = True):
        self.file, self.key, self.rule, self.value = file, key, rule, value
        got = f", got {value!r}" if show_value else ""
        where = f"{file}: {key}: " if key else f"{file}: "
        super().__init__(f"{where}{rule}{got}")


class MissingDependencyError(AutotuneError):
    """A package or tool is missing; the message says what to install."""

    exit_code = 3


class ModelPrepareError(AutotuneError):
    exit_code = 3


class TrialError(AutotuneError):
    """A trial failed; recorded as a FAILED trial with `reason` (a short machine-friendly tag)."""

    reason = "trial_error"


class EngineLaunchError(TrialError):
    reason = "launch_failed"

    def __init__(self, message: str, reason: str | None = None, log_tail: str = ""):
        super().__init__(message)
        if reason:
            self.reason = reason
        self.log_tail = log_tail


class EngineHealthTimeout(EngineLaunchError):
    reason = "health_timeout"


class LoadGenError(TrialError):
    reason = "loadgen_failed"


class EngineHung(TrialError):
    """No token or response from the engine for `stall_timeout_s` while requests were outstanding."""

    reason = "engine_hung"


class WindowEmpty(TrialError):
    """The measurement window holds no successful request or task: nothing was measured."""

    reason = "window_empty"


class TrialRejected(TrialError):
    """The trial cannot be measured as configured: an unsupported knob combination, or every request refused."""

    def __init__(self, message: str, reason: str = "unsupported"):
        super().__init__(message)
        self.reason = reason


class TrackingError(AutotuneError):
    exit_code = 4

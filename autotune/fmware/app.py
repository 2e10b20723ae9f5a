"""The application side of a trial: its config (the client knobs) and the prompts it sends.

A task item, as the load generator sees it: {id, context, task, questions: {field: question}}. `context` is the
input the model reads (an article, a word problem), `task` asks for every field at once, `questions` ask for one
field each (the sub-questions of architectures #2 and #3). Few-shot examples have the same shape plus `answer`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autotune.fmware import formats

ARCHITECTURES = ("one_call", "parallel", "sequential", "judge")
CONSTRAINTS = ("none", "json_schema", "regex")
REPAIRS = ("none", "cpu", "reask")
PROMPT_VARIANTS = ("zero_shot", "few_shot")


@dataclass(frozen=True)
class AppConfig:
    fields: tuple[str, ...]  # ordered easy -> hard (the order of sequential sub-questions)
    architecture: str = "one_call"
    output_format: str = "json"
    constrained: str = "none"
    repair: str = "none"
    cache_threshold: float | None = None  # None: semantic cache off
    prompt_variant: str = "zero_shot"
    judge_rounds: int = 2
    max_tokens: int = 96
    temperature: float = 0.0
    seed: int = 0
    system: str = ""
    examples: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AppConfig:
        d = dict(d)
        d["fields"] = tuple(d["fields"])
        d["examples"] = tuple(d.get("examples") or ())
        return cls(**d)

    def problem(self) -> str | None:
        """Why this combination cannot run (the trial is then recorded as `unsupported`), or None."""
        if self.constrained == "json_schema" and self.output_format != "json":
            return f"constrained=json_schema needs output_format=json, got {self.output_format}"
        return None

    @property
    def fmt(self) -> formats.Format:
        return formats.get(self.output_format)


def _user(context: str, ask: str, instruction: str) -> str:
    return f"{context}\n\n{ask}\n{instruction}"


def _shots(app: AppConfig, fields: list[str]) -> list[dict[str, str]]:
    if app.prompt_variant != "few_shot":
        return []
    msgs = []
    for ex in app.examples:
        ask = ex["task"] if len(fields) > 1 else ex["questions"][fields[0]]
        msgs.append({"role": "user", "content": _user(ex["context"], ask, app.fmt.instruction(fields))})
        msgs.append({"role": "assistant", "content": app.fmt.render({f: str(ex["answer"][f]) for f in fields})})
    return msgs


def _system(app: AppConfig) -> list[dict[str, str]]:
    return [{"role": "system", "content": app.system}] if app.system else []


def request(app: AppConfig, messages: list[dict[str, str]], fields: list[str], *, sample: int = 0) -> dict[str, Any]:
    """An FM call: messages + sampling + the structured-output constraint for these fields."""
    req: dict[str, Any] = {"messages": messages, "max_tokens": app.max_tokens, "temperature": app.temperature,
                           "sample": sample}
    if app.constrained == "json_schema":
        req["structured_outputs"] = {"json": app.fmt.json_schema(fields)}
    elif app.constrained == "regex":
        req["structured_outputs"] = {"regex": app.fmt.regex(fields)}
    return req


def all_fields(app: AppConfig, item: dict[str, Any]) -> list[dict[str, str]]:
    """Architecture #1 (and the judge's solvers): one call for every field."""
    fields = list(app.fields)
    return [*_system(app), *_shots(app, fields),
            {"role": "user", "content": _user(item["context"], item["task"], app.fmt.instruction(fields))}]


def one_field(app: AppConfig, item: dict[str, Any], name: str, known: dict[str, str] | None = None):
    """Architectures #2/#3: one sub-question; #3 passes the answers found so far."""
    ask = item["questions"][name]
    if known:
        facts = "\n".join(f"- {formats.label(k)}: {v}" for k, v in known.items())
        ask = f"Already established:\n{facts}\n{ask}"
    return [*_system(app), *_shots(app, [name]),
            {"role": "user", "content": _user(item["context"], ask, app.fmt.instruction([name]))}]


def judge(app: AppConfig, item: dict[str, Any], a: str, b: str) -> list[dict[str, str]]:
    """Architecture #4: the judge sees both candidates and answers, or says RETRY."""
    fields = list(app.fields)
    ask = (f"{item['task']}\nTwo assistants answered.\nCandidate A:\n{a.strip()}\n\nCandidate B:\n{b.strip()}\n\n"
           "Check the candidates against the text and give the correct answer. If neither can be checked, "
           "reply with the single word RETRY.")
    return [*_system(app), {"role": "user", "content": _user(item["context"], ask, app.fmt.instruction(fields))}]


def reask(app: AppConfig, messages: list[dict[str, str]], reply: str, error: str, fields: list[str]):
    """Repair by asking again: the failed reply and the parse error go back to the model."""
    return [*messages, {"role": "assistant", "content": reply},
            {"role": "user", "content": f"That reply could not be parsed ({error}). "
                                        f"{app.fmt.instruction(fields)}"}]

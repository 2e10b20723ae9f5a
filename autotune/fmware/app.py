"""The application side of a trial: its config (the client knobs) and the prompts it sends.

A task item, as the load generator sees it: {id, context, task, questions: {field: question}}. `context` is the
input the model reads (an article, a word problem), `task` asks for every field at once, `questions` ask for one
field each (the sub-questions of architectures #2 and #3). Few-shot examples have the same shape plus `answer`.

A field with declared `labels` (a classification) may only take one of them: the instruction lists them, the
constraints restrict the field to them, and a reply is valid only when the value is exactly a label (after
stripping surrounding whitespace; case counts). CPU repair maps a near miss (other case, a wrapping sentence,
quotes, a final period) onto its label and drops any other value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autotune.fmware import formats
from autotune.fmware.formats import ParseError, unwrap_value

ARCHITECTURES = ("one_call", "parallel", "sequential", "judge")
CONSTRAINTS = ("none", "json_schema", "regex", "choice")
CHOICE_FORMATS = ("minimal", "text")  # formats whose reply for one field is the rendered label alone
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
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)  # field -> its declared labels

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AppConfig:
        d = dict(d)
        d["fields"] = tuple(d["fields"])
        d["examples"] = tuple(d.get("examples") or ())
        d["labels"] = {k: tuple(v) for k, v in (d.get("labels") or {}).items()}
        return cls(**d)

    def problem(self) -> str | None:
        """Why this combination cannot run (the trial is then recorded as `unsupported`), or None."""
        if self.constrained == "json_schema" and self.output_format != "json":
            return f"constrained=json_schema needs output_format=json, got {self.output_format}"
        if self.constrained == "choice":
            if self.output_format not in CHOICE_FORMATS:
                return f"constrained=choice needs output_format minimal or text, got {self.output_format}"
            bare = [f for f in self.fields if not self.labels.get(f)]
            if bare:
                return f"constrained=choice needs `labels` on every field, {', '.join(bare)} has none"
            if len(self.fields) > 1 and self.architecture not in ("parallel", "sequential"):
                return (f"constrained=choice needs one field per FM call (a one-field workload, or architecture "
                        f"parallel or sequential), got {len(self.fields)} fields with {self.architecture}")
        return None

    def parse(self, text: str, fields: list[str]) -> dict[str, str]:
        """Strict: the format's parse, and every labelled field exactly one of its labels. Raises ParseError."""
        values = self.fmt.parse(text, fields)
        for f in fields:
            allowed = self.labels.get(f)
            if allowed and values[f] not in allowed:
                raise ParseError(f"{f} must be exactly one of {', '.join(allowed)}; got {values[f][:40]!r}")
        return values

    def cpu_clean(self, values: dict[str, str], unwrap: bool = True) -> dict[str, str]:
        """CPU repair of parsed or salvaged values: unwrap free values (`unwrap`), map a labelled value onto its
        label (exact, else ignoring case, quotes, a wrapping sentence and a final period), drop one that is none."""
        out = {}
        for f, v in values.items():
            allowed = self.labels.get(f)
            if not allowed:
                out[f] = unwrap_value(v) if unwrap else v
            elif (hit := match_label(v, allowed)) is not None:
                out[f] = hit
        return out

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
        msgs.append({"role": "user", "content": _user(ex["context"], ask, instruction(app, fields))})
        msgs.append({"role": "assistant", "content": app.fmt.render({f: str(ex["answer"][f]) for f in fields})})
    return msgs


def _system(app: AppConfig) -> list[dict[str, str]]:
    return [{"role": "system", "content": app.system}] if app.system else []


def request(app: AppConfig, messages: list[dict[str, str]], fields: list[str], *, sample: int = 0) -> dict[str, Any]:
    """An FM call: messages + sampling + the structured-output constraint for these fields."""
    req: dict[str, Any] = {"messages": messages, "max_tokens": app.max_tokens, "temperature": app.temperature,
                           "sample": sample}
    labels = {f: app.labels[f] for f in fields if app.labels.get(f)}
    if app.constrained == "json_schema":
        req["structured_outputs"] = {"json": app.fmt.json_schema(fields, labels)}
    elif app.constrained == "regex":
        req["structured_outputs"] = {"regex": app.fmt.regex(fields, labels)}
    elif app.constrained == "choice":  # one labelled field (AppConfig.problem): the reply is one rendered label
        (name,) = fields
        req["structured_outputs"] = {"choice": [app.fmt.render({name: v}) for v in app.labels[name]]}
    return req


def match_label(value: str, allowed: tuple[str, ...]) -> str | None:
    """The label `value` stands for: itself, else the one equal to it ignoring case (or, unwrapped from "the
    ... is X." and quotes, ignoring case); None when it is no label."""
    v = value.strip()
    if v in allowed:
        return v
    for candidate in (v, v.strip("\"'").removesuffix("."), unwrap_value(v)):
        found = [lb for lb in allowed if lb.casefold() == candidate.strip().casefold()]
        if len(found) == 1:
            return found[0]
    return None


def instruction(app: AppConfig, fields: list[str]) -> str:
    """The format's instruction, and the allowed values of every labelled field."""
    hints = [f"The {formats.label(f)} must be exactly one of: {', '.join(app.labels[f])}."
             for f in fields if app.labels.get(f)]
    return "\n".join([app.fmt.instruction(fields), *hints])


def all_fields(app: AppConfig, item: dict[str, Any]) -> list[dict[str, str]]:
    """Architecture #1 (and the judge's solvers): one call for every field."""
    fields = list(app.fields)
    return [*_system(app), *_shots(app, fields),
            {"role": "user", "content": _user(item["context"], item["task"], instruction(app, fields))}]


def one_field(app: AppConfig, item: dict[str, Any], name: str, known: dict[str, str] | None = None):
    """Architectures #2/#3: one sub-question; #3 passes the answers found so far."""
    ask = item["questions"][name]
    if known:
        facts = "\n".join(f"- {formats.label(k)}: {v}" for k, v in known.items())
        ask = f"Already established:\n{facts}\n{ask}"
    return [*_system(app), *_shots(app, [name]),
            {"role": "user", "content": _user(item["context"], ask, instruction(app, [name]))}]


def judge(app: AppConfig, item: dict[str, Any], a: str, b: str) -> list[dict[str, str]]:
    """Architecture #4: the judge sees both candidates and answers, or says RETRY."""
    fields = list(app.fields)
    ask = (f"{item['task']}\nTwo assistants answered.\nCandidate A:\n{a.strip()}\n\nCandidate B:\n{b.strip()}\n\n"
           "Check the candidates against the text and give the correct answer. If neither can be checked, "
           "reply with the single word RETRY.")
    return [*_system(app), {"role": "user", "content": _user(item["context"], ask, instruction(app, fields))}]


def reask(app: AppConfig, messages: list[dict[str, str]], reply: str, error: str, fields: list[str]):
    """Repair by asking again: the failed reply and the parse error go back to the model."""
    return [*messages, {"role": "assistant", "content": reply},
            {"role": "user", "content": f"That reply could not be parsed ({error}). "
                                        f"{instruction(app, fields)}"}]

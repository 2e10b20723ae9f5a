"""Output formats: the instruction the model gets, a strict parser, a tolerant salvager, and constraints.

A format answers a list of fields (e.g. name, email, address). `parse` is strict: the whole reply must be
the format and hold every field, else ParseError (that is what "valid" means in the metrics). `salvage`
is the CPU repair: it digs the fields out of chatter, code fences, truncation and near-misses, and returns
what it found. `regex` and `json_schema` feed vLLM's structured outputs; a field with declared labels is
restricted to exactly those labels there (a JSON-schema `enum`, a regex alternation). Stdlib + PyYAML only: this
module runs inside the Locust process.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import yaml

FORMATS = ("text", "json", "yaml", "xml", "minimal")
VALUE_RE = r"[^\n]{1,80}"
LIST_MARKER = r"^\s*(?:[-*•]|\d+[.)])\s+"  # one value: one line, bounded so a constrained reply cannot run away


# "The main person's e-mail address is x@y.org." -> "x@y.org": small models answer a bare-value question with a
# sentence; the format is right, the value is wrapped
_WRAPPED = re.compile(r"^(?:the\s+)?[\w\s'’-]{0,60}?\b(?:is|are|:)\s+(.+?)\.?$", re.I)


def unwrap_value(value: str) -> str:
    """CPU repair of one value: strip a leading "the ... is" phrase and the closing period."""
    v = value.strip().strip("\"'")
    m = _WRAPPED.match(v)
    return m.group(1).strip() if m and len(m.group(1)) >= 2 else v.removesuffix(".") if v.count(".") == 1 else v


class ParseError(ValueError):
    """The reply is not valid in the format (the message says why, and is shown to the model on reask)."""


def label(field: str) -> str:
    return field.replace("_", " ")


def _strip_fences(text: str) -> str:
    m = re.search(r"```[a-zA-Z]*\n?(.*?)(```|$)", text, re.S)
    return m.group(1) if m else text


def _complete(values: dict[str, str], fields: list[str]) -> dict[str, str]:
    missing = [f for f in fields if not values.get(f, "").strip()]
    if missing:
        raise ParseError(f"missing field(s): {', '.join(missing)}")
    return {f: values[f].strip() for f in fields}


def _scalar(v: object) -> str:
    return "" if v is None else str(v)


# --- json ---------------------------------------------------------------------------------------------------------

def _json_instruction(fields: list[str]) -> str:
    keys = ", ".join(f'"{f}"' for f in fields)
    return f"Reply with only a JSON object with the keys {keys} and string values."


def _json_render(values: dict[str, str]) -> str:
    return json.dumps(values)


def _json_parse(text: str, fields: list[str]) -> dict[str, str]:
    try:
        obj = json.loads(text.strip())
    except ValueError as exc:
        raise ParseError(f"not a JSON object: {exc}") from None
    if not isinstance(obj, dict):
        raise ParseError("not a JSON object")
    return _complete({str(k).lower(): _scalar(v) for k, v in obj.items()}, fields)


def _json_salvage(text: str, fields: list[str]) -> dict[str, str]:
    body = _strip_fences(text)
    start = body.find("{")
    if start >= 0:
        candidate = body[start:body.rfind("}") + 1] if "}" in body[start:] else body[start:]
        candidate = re.sub(r",\s*([}\]])", r"\1", candidate)  # trailing commas
        for attempt in (candidate, candidate + '"}', candidate + "}", candidate.replace("'", '"')):
            try:
                obj = json.loads(attempt)
            except ValueError:
                continue
            if isinstance(obj, dict):
                return {str(k).lower(): _scalar(v) for k, v in obj.items() if str(k).lower() in fields}
    return _key_values(body, fields)  # "key": "value" pairs of a broken object, or key: value lines


# --- yaml ---------------------------------------------------------------------------------------------------------

def _yaml_instruction(fields: list[str]) -> str:
    lines = "\n".join(f"{f}: ..." for f in fields)
    return f"Reply with only YAML, one line per key:\n{lines}"


def _yaml_render(values: dict[str, str]) -> str:
    return "\n".join(f"{k}: {json.dumps(v) if _needs_quotes(v) else v}" for k, v in values.items())


def _needs_quotes(v: str) -> bool:
    try:
        return yaml.safe_load(f"k: {v}") != {"k": v}
    except yaml.YAMLError:
        return True


def _yaml_parse(text: str, fields: list[str]) -> dict[str, str]:
    try:
        obj = yaml.safe_load(text.strip())
    except yaml.YAMLError as exc:
        raise ParseError(f"not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(obj, dict):
        raise ParseError("not a YAML mapping")
    return _complete({str(k).lower(): _scalar(v) for k, v in obj.items()}, fields)


# --- xml ----------------------------------------------------------------------------------------------------------

def _xml_instruction(fields: list[str]) -> str:
    tags = "".join(f"<{f}>...</{f}>" for f in fields)
    return f"Reply with only XML: <answer>{tags}</answer>"


def _xml_render(values: dict[str, str]) -> str:
    from xml.sax.saxutils import escape

    return "<answer>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in values.items()) + "</answer>"


def _xml_parse(text: str, fields: list[str]) -> dict[str, str]:
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as exc:
        raise ParseError(f"not well-formed XML: {exc}") from None
    if root.tag != "answer":
        raise ParseError(f"root element must be <answer>, got <{root.tag}>")
    return _complete({child.tag.lower(): (child.text or "") for child in root}, fields)


def _xml_salvage(text: str, fields: list[str]) -> dict[str, str]:
    found = {}
    for f in fields:
        m = re.search(rf"<{f}>\s*(.*?)\s*(?:</{f}>|<|\n|$)", text, re.S | re.I)
        if m and m.group(1).strip():
            found[f] = m.group(1).strip()
    return found or _key_values(text, fields)


# --- text ---------------------------------------------------------------------------------------------------------

def _text_instruction(fields: list[str]) -> str:
    lines = "\n".join(f"The {label(f)} is ..." for f in fields)
    return f"Reply in plain sentences, one per line:\n{lines}"


def _text_render(values: dict[str, str]) -> str:
    return "\n".join(f"The {label(k)} is {v}." for k, v in values.items())


def _text_parse(text: str, fields: list[str]) -> dict[str, str]:
    found = {}
    for f in fields:
        m = re.search(rf"^\s*the {re.escape(label(f))} is (.+?)\s*$", text, re.I | re.M)
        if m:
            found[f] = m.group(1).removesuffix(".")
    return _complete(found, fields)


def _text_salvage(text: str, fields: list[str]) -> dict[str, str]:
    found = {}
    for f in fields:
        # the value ends at a sentence end (". The ..."), a line end, or the end of the text
        m = re.search(rf"\b{re.escape(label(f))}\b[^\n:]*?(?:\bis\b|:)\s*(.+?)(?:\.(?=\s+[A-Z])|\.?\s*$)", text,
                      re.I | re.M)
        if m:
            found[f] = m.group(1).strip()
    return found


# --- minimal ------------------------------------------------------------------------------------------------------

def _minimal_instruction(fields: list[str]) -> str:
    order = ", ".join(label(f) for f in fields)
    return (f"Reply with only the value{'s' if len(fields) > 1 else ''}, one per line, in this order: {order}. "
            "No labels, no other words.")


def _minimal_render(values: dict[str, str]) -> str:
    return "\n".join(values.values())


def _minimal_parse(text: str, fields: list[str]) -> dict[str, str]:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) != len(fields):
        raise ParseError(f"expected {len(fields)} line(s), one value each, got {len(lines)}")
    for f, ln in zip(fields, lines, strict=True):
        if re.match(rf"{re.escape(label(f))}\s*:", ln, re.I) or re.match(LIST_MARKER, ln):
            raise ParseError(f"bare values only (no labels, no list markers), got {ln[:40]!r}")
    return _complete(dict(zip(fields, lines, strict=True)), fields)


def _minimal_salvage(text: str, fields: list[str]) -> dict[str, str]:
    labelled = _key_values(text, fields)
    if len(labelled) == len(fields):
        return labelled
    lines = [re.sub(LIST_MARKER, "", ln).strip() for ln in _strip_fences(text).splitlines()]
    lines = [ln for ln in lines if ln]
    return dict(zip(fields, lines[:len(fields)], strict=False))


# --- shared salvage -----------------------------------------------------------------------------------------------

def _key_values(text: str, fields: list[str]) -> dict[str, str]:
    """`key: value`, `"key": "value"` or `key = value` anywhere in the text (the common denominator)."""
    found = {}
    for f in fields:
        m = re.search(rf"[\"']?\b{re.escape(f)}\b[\"']?\s*[:=]\s*\"?([^\"\n]+?)\"?\s*(?:,\s*$|,\s*[\"']|[}}\n]|$)",
                      text, re.I | re.M)
        if m and m.group(1).strip():
            found[f] = m.group(1).strip()
    return found


@dataclass(frozen=True)
class Format:
    name: str
    instruction: Callable[[list[str]], str]
    render: Callable[[dict[str, str]], str]
    strict: Callable[[str, list[str]], dict[str, str]]
    salvager: Callable[[str, list[str]], dict[str, str]]

    def parse(self, text: str, fields: list[str]) -> dict[str, str]:
        """Strict: every field, nothing but the format. Raises ParseError."""
        return self.strict(text, fields)

    def salvage(self, text: str, fields: list[str]) -> dict[str, str]:
        """Tolerant: whatever fields can be recovered (possibly none); never raises."""
        try:
            got = self.salvager(text, fields)
        except Exception:  # salvage is best effort by definition
            return {}
        return {f: v.strip() for f, v in got.items() if f in fields and str(v).strip()}

    def regex(self, fields: list[str], labels: Labels | None = None) -> str:
        """The whole reply as a regex; a field in `labels` may only be one of its labels."""
        def value(f: str) -> str:
            allowed = (labels or {}).get(f)
            if not allowed:
                return FREE_VALUE[self.name]
            ending = r"\.?" if self.name == "text" else ""  # a sentence may end with its period
            return "(?:" + "|".join(_escape(LITERAL[self.name](v)) for v in allowed) + ")" + ending

        return REGEX[self.name](fields, value)

    def json_schema(self, fields: list[str], labels: Labels | None = None) -> dict:
        def value(f: str) -> dict:
            allowed = (labels or {}).get(f)
            return {"type": "string", "enum": list(allowed)} if allowed else {"type": "string", "maxLength": 80}

        return {"type": "object", "properties": {f: value(f) for f in fields}, "required": list(fields),
                "additionalProperties": False}


Labels = Mapping[str, Sequence[str]]  # field -> its declared labels (fields without labels are free text)


def _escape(literal: str) -> str:
    """Escape regex metacharacters only (re.escape also escapes spaces, `-`, `#`..., which not every structured
    output backend's regex dialect accepts)."""
    return re.sub(r"([\\.^$|?*+()\[\]{}])", r"\\\1", literal)


# a free value of each format, and how a label is written in it (so a parsed value equals the label again)
FREE_VALUE = {"json": r'"[^"\n]{1,80}"', "yaml": r"[^\n]{1,80}", "xml": r"[^<\n]{1,80}", "text": r"[^\n]{1,80}",
              "minimal": VALUE_RE}
LITERAL: dict[str, Callable[[str], str]] = {
    "json": json.dumps, "yaml": lambda v: json.dumps(v) if _needs_quotes(v) else v,
    "xml": lambda v: v.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"),
    "text": str, "minimal": str,
}
REGEX: dict[str, Callable[[list[str], Callable[[str], str]], str]] = {
    "json": lambda fs, v: r"\{" + ", ".join(f'"{f}": {v(f)}' for f in fs) + r"\}",
    "yaml": lambda fs, v: r"\n".join(f"{f}: {v(f)}" for f in fs),
    "xml": lambda fs, v: "<answer>" + "".join(f"<{f}>{v(f)}</{f}>" for f in fs) + "</answer>",
    "text": lambda fs, v: r"\n".join(f"The {_escape(label(f))} is {v(f)}" for f in fs),
    "minimal": lambda fs, v: r"\n".join(v(f) for f in fs),
}

REGISTRY: dict[str, Format] = {
    "json": Format("json", _json_instruction, _json_render, _json_parse, _json_salvage),
    "yaml": Format("yaml", _yaml_instruction, _yaml_render, _yaml_parse, _key_values),
    "xml": Format("xml", _xml_instruction, _xml_render, _xml_parse, _xml_salvage),
    "text": Format("text", _text_instruction, _text_render, _text_parse, _text_salvage),
    "minimal": Format("minimal", _minimal_instruction, _minimal_render, _minimal_parse, _minimal_salvage),
}


def get(name: str) -> Format:
    return REGISTRY[name]

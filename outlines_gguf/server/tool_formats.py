"""Tool calling: each model family's own call format, and the constraints that write it.

A model calls tools in the format it was trained on, which its chat template
shows. We detect the family from the template and write calls in that
format; the constraint starts where the call starts:

========== ===================================================== =====================================
format     families                                              a call (``ARGS``: the tool's schema)
========== ===================================================== =====================================
hermes     Qwen2.5, Qwen3, QwQ, Hermes 2/3 (template has          ``<tool_call>\\n{"name": "f", "arguments":
           ``<tool_call>``)                                        ARGS}\\n</tool_call>``, one block per call
llama3     Llama 3.1 / 3.2 / 3.3 (template has                    ``{"name": "f", "parameters": ARGS}``,
           ``<|python_tag|>`` or ``"parameters"``)                 one call per turn
mistral    Mistral 7B v0.3, Nemo, Small (template has             ``[TOOL_CALLS] [{"name": "f", "arguments":
           ``[TOOL_CALLS]``)                                       ARGS}, ...]``, ids of 9 letters/digits
generic    any other template (tools described in a system        as hermes
           message we add)
========== ===================================================== =====================================

A call is three constraints in a row: the *head* (a regex: the opening
text, the function's name among those allowed, the key of the arguments),
the *arguments* (the tool's ``parameters`` schema, compiled once per
schema and cached), and the *tail* (a regex: the closing text, and either
the end or the head of the next call). The name is read from the head's
text, so the arguments are constrained by the right schema. A trigger that
is a single special token in the vocabulary (``[TOOL_CALLS]`` in Mistral's,
``<tool_call>`` in Qwen2.5's) is emitted as that token, and with
``tool_choice="auto"`` it starts a call even after some text.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from outlines_gguf.guides.base import Guide, RegexGuide
from outlines_gguf.server.constraints import ConstraintCache, json_schema_guide, regex_guide
from outlines_gguf.server.errors import bad_request
from outlines_gguf.server.protocol import ALPHANUMERIC, new_tool_call_id

NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""OpenAI's rule for function names; it also keeps names free of JSON escapes."""
MAX_PARALLEL_CALLS = 8
"""Most calls in one answer when ``parallel_tool_calls`` is not false."""
TOOL_CHOICES = ("none", "auto", "required")


@dataclass(frozen=True)
class ToolFormat:
    """How one model family writes tool calls (see the module docstring)."""

    name: str
    families: str
    trigger: str
    """The text a call starts with: a special token in some vocabularies."""
    separator: str | None
    """Between two calls; None: one call per answer."""
    native: bool = True
    """The chat template renders ``tools`` itself; otherwise we describe them in a system message."""
    start: str = ""
    """Written once, before the first call."""
    call_prefix: str = ""
    call_suffix: str = ""
    end: str = ""
    """Written once, after the last call."""
    args_key: str = "arguments"
    id_length: int | None = None
    """Call ids of exactly this many letters and digits (Mistral's templates check); None: ``call_...``."""

    def new_call_id(self) -> str:
        """An id for a new call, in the form this family's templates accept back."""
        if self.id_length is None:
            return new_tool_call_id()
        return "".join(secrets.choice(ALPHANUMERIC) for _ in range(self.id_length))

    def first_is_json(self) -> bool:
        """A call starts like a JSON answer would (``{``)."""
        return self.head_text().startswith("{")

    def head_text(self) -> str:
        return f'{self.start}{self.call_prefix}{{"name": "'

    def between_text(self) -> str:
        return f'", "{self.args_key}": '

    def head_pattern(self, names: Sequence[str], skip: str = "") -> str:
        """Regex for the opening text up to the arguments, without the prefix ``skip``."""
        head = self.head_text()
        assert head.startswith(skip)
        return re.escape(head[len(skip):]) + _names(names) + re.escape(self.between_text())

    def tail_pattern(self, names: Sequence[str], more: bool) -> str:
        """Regex for the text after a call's arguments: the end, or (``more``) the next call's head."""
        close = re.escape("}" + self.call_suffix)
        if not more or self.separator is None:
            return close + re.escape(self.end)
        nxt = re.escape(f'{self.separator}{self.call_prefix}{{"name": "') + _names(names)
        return f"{close}(?:{nxt}{re.escape(self.between_text())}|{re.escape(self.end)})"

    def render_calls(self, calls: Sequence[tuple[str, Any]]) -> str:
        """Calls as this format writes them (for earlier assistant turns in generic mode)."""
        bodies = [
            f"{self.call_prefix}{json.dumps({'name': name, self.args_key: args}, ensure_ascii=False)}"
            f"{self.call_suffix}"
            for name, args in calls
        ]
        return self.start + (self.separator or "").join(bodies) + self.end


def _names(names: Sequence[str]) -> str:
    return "(?P<name>" + "|".join(re.escape(n) for n in names) + ")"


HERMES = ToolFormat(
    "hermes", "Qwen2.5, Qwen3, QwQ, Hermes 2 Pro / Hermes 3", trigger="<tool_call>", separator="\n",
    call_prefix="<tool_call>\n", call_suffix="\n</tool_call>",
)
LLAMA3 = ToolFormat(
    "llama3", "Llama 3.1, 3.2, 3.3 (JSON tool calls)", trigger="{", separator=None, args_key="parameters"
)
MISTRAL = ToolFormat(
    "mistral", "Mistral 7B Instruct v0.3, Mistral Nemo, Mistral Small (v3 tokenizer)",
    trigger="[TOOL_CALLS]", separator=", ", start="[TOOL_CALLS] [", end="]", id_length=9,
)
GENERIC = replace(HERMES, name="generic", families="any other chat template", native=False)
"""Hermes' format, with the tools described in a system message we add."""
TOOL_FORMATS = {f.name: f for f in (HERMES, LLAMA3, MISTRAL, GENERIC)}


def detect_format(template: str | None) -> ToolFormat:
    """The tool-call format a chat template was written for (GENERIC if it shows none)."""
    if not template:
        return GENERIC
    if "<tool_call>" in template:
        return HERMES
    if "[TOOL_CALLS]" in template:
        return MISTRAL
    if "<|python_tag|>" in template or ("<|start_header_id|>" in template and '"parameters"' in template):
        return LLAMA3
    return GENERIC


def generic_system_prompt(tools: Sequence[ToolSpec], required: bool) -> str:
    """What the model is told about tools when its template does not render them."""
    described = "\n".join(json.dumps(t.as_openai()["function"], ensure_ascii=False) for t in tools)
    how = "You must call at least one of them." if required else "Call one only if it helps; else answer."
    return (
        "You can call these functions (their parameters are JSON Schemas):\n"
        f"{described}\n"
        "To call one, answer with\n<tool_call>\n"
        '{"name": "<function name>", "arguments": <the arguments as a JSON object>}\n'
        f"</tool_call>\n(one block per call). {how}"
    )


# -- a request's tools ------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolSpec:
    """One function tool, checked."""

    name: str
    description: str | None
    parameters: dict[str, Any]
    strict: bool | None

    def as_openai(self) -> dict[str, Any]:
        fn: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            fn["description"] = self.description
        return {"type": "function", "function": fn}


EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


def parse_tools(tools: list[Any] | None) -> list[ToolSpec]:
    """The request's ``tools``, checked (400s name the tool at fault)."""
    specs: list[ToolSpec] = []
    seen: set[str] = set()
    for i, tool in enumerate(tools or []):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise bad_request(f"{where}: only tools of type 'function' are supported", f"{where}.type")
        fn = tool.get("function")
        if not isinstance(fn, dict):
            raise bad_request(f"{where}.function must be an object with a name", f"{where}.function")
        name = fn.get("name")
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise bad_request(
                f"{where}.function.name must be 1 to 64 letters, digits, '_' or '-', got {name!r}",
                f"{where}.function.name",
            )
        if name in seen:
            raise bad_request(f"{where}.function.name {name!r} is given twice", f"{where}.function.name")
        seen.add(name)
        params = fn.get("parameters")
        if params is None:
            params = EMPTY_PARAMETERS
        if not isinstance(params, dict):
            raise bad_request(f"{where}.function.parameters must be a JSON Schema object",
                              f"{where}.function.parameters")
        kind = params.get("type", "object")
        if kind != "object" and not (isinstance(kind, list) and kind == ["object"]):
            raise bad_request(
                f"{where}.function.parameters must be a schema of type 'object', got type {kind!r}",
                f"{where}.function.parameters",
            )
        strict = fn.get("strict")
        if strict not in (None, True, False):
            raise bad_request(f"{where}.function.strict must be a boolean", f"{where}.function.strict")
        description = fn.get("description")
        specs.append(ToolSpec(name, description if isinstance(description, str) else None, params, strict))
    return specs


@dataclass(frozen=True)
class ToolChoice:
    """``tool_choice`` resolved: ``mode`` is none, auto or required; ``names`` the callable functions."""

    mode: str
    names: tuple[str, ...]
    named: bool = False


def parse_tool_choice(choice: Any, tools: Sequence[ToolSpec]) -> ToolChoice:
    """``tool_choice`` checked against the tools (OpenAI's default: auto with tools, none without)."""
    names = tuple(t.name for t in tools)
    if choice is None:
        return ToolChoice("auto" if tools else "none", names)
    if isinstance(choice, str):
        if choice not in TOOL_CHOICES:
            raise bad_request(
                f"tool_choice must be one of {', '.join(TOOL_CHOICES)} or a named function, got {choice!r}",
                "tool_choice",
            )
        if choice != "none" and not tools:
            raise bad_request(f"tool_choice {choice!r} needs tools", "tool_choice")
        return ToolChoice(choice, names)
    if isinstance(choice, dict):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if choice.get("type", "function") != "function" or not isinstance(name, str):
            raise bad_request(
                'tool_choice as an object must be {"type": "function", "function": {"name": ...}}',
                "tool_choice",
            )
        if name not in names:
            raise bad_request(f"tool_choice names function {name!r}, which is not in tools", "tool_choice")
        return ToolChoice("required", (name,), named=True)
    raise bad_request(
        f"tool_choice must be a string or an object, got {type(choice).__name__}", "tool_choice"
    )


@dataclass
class ToolPlan:
    """The constraints that write calls for one request (guides shared through the cache)."""

    fmt: ToolFormat
    required: bool
    names: tuple[str, ...]
    max_calls: int
    trigger_id: int | None
    """The trigger as one token (emitted as it; with ``auto`` it starts a call anywhere), or None."""
    head: RegexGuide
    head_re: re.Pattern[str]
    tail_more: RegexGuide
    tail_more_re: re.Pattern[str]
    tail_last: RegexGuide
    args: dict[str, Guide] = field(default_factory=dict)
    first_byte: int | None = None
    """First byte of the call's text: free text under ``auto`` may not start with it."""


def trigger_token(fmt: ToolFormat, tokenize: Callable[[str], list[int]]) -> int | None:
    """The trigger's token id if the vocabulary has it as one token (``<tool_call>``, ``[TOOL_CALLS]``)."""
    if len(fmt.trigger) < 3:
        return None
    ids = tokenize(fmt.trigger)
    return ids[0] if len(ids) == 1 else None


def build_tool_plan(
    cache: ConstraintCache,
    fmt: ToolFormat,
    tools: Sequence[ToolSpec],
    choice: ToolChoice,
    parallel: bool | None,
    trigger_id: int | None,
) -> ToolPlan:
    """Compile (or fetch) the head, tail and argument constraints of a request's tool calls."""
    names = choice.names
    max_calls = 1 if parallel is False or choice.named or fmt.separator is None else MAX_PARALLEL_CALLS
    skip = fmt.trigger if trigger_id is not None else ""
    if skip and not fmt.head_text().startswith(skip):
        skip = ""
    if trigger_id is not None and fmt.trigger in fmt.call_prefix and fmt.start == "":
        # Later calls would need the trigger token inside the tail regex, which guides never emit
        # when it is a control token: keep one call in that case.
        if cache.vocabulary.tokens[trigger_id] == b"":
            max_calls = 1
    head_pattern = fmt.head_pattern(names, skip)
    more_pattern = fmt.tail_pattern(names, more=True)
    last_pattern = fmt.tail_pattern(names, more=False)
    args = {}
    for index, spec in enumerate(tools):
        if spec.name in names:
            args[spec.name] = json_schema_guide(
                cache, spec.parameters, lenient=spec.strict is False,
                param=f"tools[{index}].function.parameters",
            )
    head_text = fmt.head_text()
    return ToolPlan(
        fmt=fmt,
        required=choice.mode == "required",
        names=names,
        max_calls=max_calls,
        trigger_id=trigger_id if skip else None,
        head=regex_guide(cache, head_pattern, param="tools"),
        head_re=re.compile(head_pattern, re.DOTALL),
        tail_more=regex_guide(cache, more_pattern, param="tools"),
        tail_more_re=re.compile(more_pattern, re.DOTALL),
        tail_last=regex_guide(cache, last_pattern, param="tools"),
        args=args,
        first_byte=head_text.encode()[0] if head_text else None,
    )


# -- earlier turns ------------------------------------------------------------------------------


def history_arguments(raw: Any) -> Any:
    """An earlier call's ``arguments`` (a JSON string in OpenAI's API) as templates expect: a dict."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw

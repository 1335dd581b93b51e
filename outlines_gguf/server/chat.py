"""OpenAI chat messages rendered by the model's own chat template.

The template (from the GGUF metadata, or ``--chat-template``) is compiled
once per model instance: compiling it takes about 2 ms, rendering a
conversation a fraction of that. Messages are checked and brought to the
shape Hugging Face templates expect: text parts joined, ``developer`` as
``system``, an earlier call's ``arguments`` as a dict. When the template
renders tools itself (hermes, llama3, mistral formats) it gets them;
otherwise (generic) the tools are described in a system message and earlier
calls and results are written as text the model can read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from outlines_gguf.llama_cpp.model import LlamaCpp
from outlines_gguf.server.errors import bad_request, one_line
from outlines_gguf.server.tool_formats import (
    ToolFormat,
    ToolSpec,
    detect_format,
    generic_system_prompt,
    history_arguments,
)

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
RESERVED_TEMPLATE_ARGS = frozenset(
    {"messages", "tools", "functions", "function_call", "tool_choice", "add_generation_prompt",
     "bos_token", "eos_token", "raise_exception", "strftime_now"}
)


def message_text(content: Any, where: str) -> str | None:
    """A message's ``content`` as text: a string, None, or a list of text parts."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text" or not isinstance(part.get("text"), str):
                raise bad_request(
                    f"{where}.content[{j}]: only text parts are supported, got type {kind!r}",
                    f"{where}.content",
                )
            parts.append(part["text"])
        return "".join(parts)
    raise bad_request(f"{where}.content must be a string or a list of text parts", f"{where}.content")


class ChatRenderer:
    """A model's chat template, compiled once, turning OpenAI messages into the prompt text."""

    def __init__(self, model: LlamaCpp, tool_format: ToolFormat | None = None) -> None:
        self.model = model
        self.template = model.chat_template
        self.tool_format = tool_format or detect_format(self.template)
        self._formatter: Any = None
        vocab = model.vocabulary
        self.bos_text = _special_text(model, vocab.bos_id)
        llm = model.llm
        # The model adds its BOS token itself: a template's leading bos_token is dropped from the text
        # (as llama-server does), instead of tokenizing it and removing the second BOS afterwards.
        self._strip_bos = bool(self.bos_text) and len(llm.tokenize(b"a", add_bos=True)) > len(
            llm.tokenize(b"a", add_bos=False)
        )
        if self.template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            self._formatter = Jinja2ChatFormatter(
                template=self.template,
                eos_token=_special_text(model, vocab.eos_id),
                bos_token=self.bos_text,
                add_generation_prompt=True,
            )

    def messages(
        self, messages: Sequence[Any], tools: Sequence[ToolSpec], required: bool
    ) -> list[dict[str, Any]]:
        """Messages checked and shaped for the template (see the module docstring)."""
        fmt = self.tool_format
        native = fmt.native
        out: list[dict[str, Any]] = []
        for i, message in enumerate(messages):
            where = f"messages[{i}]"
            if not isinstance(message, dict):
                raise bad_request(f"{where} must be an object with a role and content", where)
            role = message.get("role")
            if role not in ROLES:
                raise bad_request(
                    f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}", f"{where}.role"
                )
            content = message_text(message.get("content"), where)
            if role == "developer":
                role = "system"
            if role == "function":
                role = "tool"
            if role in ("system", "user") and content is None:
                raise bad_request(f"{where}.content is required for a {role} message", f"{where}.content")
            shaped: dict[str, Any] = {"role": role, "content": content or ""}
            if role == "assistant" and message.get("tool_calls"):
                calls = self._history_calls(message["tool_calls"], where)
                if native:
                    shaped["tool_calls"] = [
                        {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
                        for cid, name, args in calls
                    ]
                else:
                    text = fmt.render_calls([(name, args) for _, name, args in calls])
                    shaped["content"] = f"{shaped['content']}\n{text}" if shaped["content"] else text
            if role == "tool":
                if native:
                    for key in ("tool_call_id", "name"):
                        if isinstance(message.get(key), str):
                            shaped[key] = message[key]
                else:
                    response = f"<tool_response>\n{content or ''}\n</tool_response>"
                    shaped = {"role": "user", "content": response}
            out.append(shaped)
        if tools and not native:
            prompt = generic_system_prompt(tools, required)
            if out and out[0]["role"] == "system":
                out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{prompt}"}
            else:
                out.insert(0, {"role": "system", "content": prompt})
        return out

    @staticmethod
    def _history_calls(calls: Any, where: str) -> list[tuple[str, str, Any]]:
        if not isinstance(calls, list):
            raise bad_request(f"{where}.tool_calls must be a list", f"{where}.tool_calls")
        out = []
        for j, call in enumerate(calls):
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise bad_request(f"{where}.tool_calls[{j}] must have a function with a name",
                                  f"{where}.tool_calls")
            arguments = history_arguments(fn.get("arguments", {}))
            out.append((str(call.get("id", f"call_{j}")), fn["name"], arguments))
        return out

    def render(
        self,
        messages: Sequence[Any],
        tools: Sequence[ToolSpec] = (),
        required: bool = False,
        template_kwargs: dict[str, Any] | None = None,
    ) -> str:
        """The prompt text for ``messages`` (ending where the assistant's answer begins)."""
        if self._formatter is None:
            raise bad_request(
                f"{self.model.name} has no chat template: use /v1/completions with a prompt, or start "
                "the server with --chat-template",
                "messages",
                code="no_chat_template",
            )
        shaped = self.messages(messages, tools, required)
        extra = {k: v for k, v in (template_kwargs or {}).items() if k not in RESERVED_TEMPLATE_ARGS}
        native_tools = [t.as_openai() for t in tools] if tools and self.tool_format.native else None
        try:
            prompt = self._formatter(messages=shaped, tools=native_tools, **extra).prompt
        except Exception as exc:  # jinja2 errors and the template's own raise_exception
            raise bad_request(f"the chat template of {self.model.name} failed: {one_line(exc)}",
                              "messages") from exc
        if self._strip_bos and prompt.startswith(self.bos_text):
            prompt = prompt[len(self.bos_text):]
        return prompt


def _special_text(model: LlamaCpp, token: int | None) -> str:
    if token is None:
        return ""
    return model.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

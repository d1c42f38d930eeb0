"""What the native tool syntaxes (a chat template's own: services/text/hermes.py,
services/text/llama3.py) share: how the request goes to the template (its `tools=` argument,
the history's calls and results in transformers' shape, or as text for a template that does not
write them itself) and how an answer is read as it streams (`NativeStream`: the text not yet
read, each call's JSON through the generic format's scanner, `tools.Calls` for the deltas and
the repeat rule); each syntax adds its own markers around the calls."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any

from core.types import ChatMessage, TextRequest, ToolCall, ToolCallDelta, ToolChoice
from services.text.tools import Calls, JsonScanner, parse_json

Messages = list[dict[str, Any]]
# One history message as the template gets it: (message, call id -> function name, whether the
# template writes assistant `tool_calls` itself, whether it writes `role: tool` messages).
Render = Callable[[ChatMessage, dict[str, str], bool, bool], Messages]


def native_prompt(
    request: TextRequest, template: str, render: Render
) -> tuple[Messages, Messages | None]:
    """The messages and the `tools` argument the template gets (None: no tools offered)."""
    writes_calls, writes_results = template_writes(template)
    names = {c.id: c.name for m in request.messages for c in m.tool_calls}
    messages = [out for m in request.messages for out in render(m, names, writes_calls,
                                                                 writes_results)]  # fmt: skip
    if not request.tools or request.tool_choice == ToolChoice.NONE:
        return messages, None
    return messages, openai_tools(request)


@functools.lru_cache(maxsize=8)
def template_writes(template: str) -> tuple[bool, bool]:
    """Whether the template writes assistant `tool_calls` itself, and `role: tool` messages
    (else they go to it as text); read once per template, not per request."""
    return "tool_calls" in template, re.search(r"""["']tool["']""", template) is not None


def openai_tools(request: TextRequest) -> Messages:
    """The request's tools as a template's `tools=` argument gets them: OpenAI's tool objects,
    parameters as an object (as transformers and vLLM give them)."""
    tools = []
    for t in request.tools:
        function: dict[str, Any] = {"name": t.name}
        if t.description:
            function["description"] = t.description
        function["parameters"] = json.loads(t.parameters)
        tools.append({"type": "function", "function": function})
    return tools


def template_call(call: ToolCall) -> dict[str, Any]:
    """A call of the history in transformers' shape (arguments as an object)."""
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": parse_json(call.arguments)},
    }


def template_result(m: ChatMessage, names: dict[str, str]) -> dict[str, Any]:
    """A `role: tool` message for a template that writes them: its content, the call's id and
    the function's name (from the message, else from the call it answers)."""
    out: dict[str, Any] = {"role": "tool", "content": m.content}
    if m.tool_call_id:
        out["tool_call_id"] = m.tool_call_id
    name = m.name or names.get(m.tool_call_id or "")
    if name:
        out["name"] = name
    return out


class NativeStream:
    """One completion's answer in a native syntax -> content and tool-call deltas (the
    `tools.CallParser` protocol). A subclass reads its markers in `_read`; a call's JSON is
    opened with `_open_call`, read with `_scan_call` and sent with `_send`."""

    def __init__(self, arguments: str = "arguments") -> None:
        self.rest = ""  # text not yet read
        self.calls = Calls(arguments)
        self.block: str | None = None  # the open call's text (None: no call open)
        self.scanner: JsonScanner | None = None  # the open call's JSON (None: JSON done)

    @property
    def repeated(self) -> bool:
        return self.calls.repeated is not None

    def feed(self, delta: str) -> tuple[str, list[ToolCallDelta]]:
        if self.repeated:
            return "", []
        self.rest += delta
        return self._read(final=False)

    def finish(self) -> tuple[str, list[ToolCallDelta]]:
        if self.repeated:
            return "", []
        if self.scanner is not None:
            self.scanner.close()  # a number or literal the cut ended
        return self._read(final=True)

    def tool_calls(self) -> list[ToolCall]:
        return self.calls.sent()

    def _read(self, final: bool) -> tuple[str, list[ToolCallDelta]]:
        raise NotImplementedError

    def _open_call(self) -> None:
        self.block, self.scanner = "", JsonScanner()
        self.calls.at(len(self.calls))

    def _scan_call(self) -> bool:
        """Reads the open call's JSON from `rest` (name and arguments found by their paths).
        True when the object is complete."""
        assert self.block is not None
        index = len(self.calls) - 1
        while self.scanner is not None and self.rest:
            ch, self.rest = self.rest[0], self.rest[1:]
            self.block += ch
            s = self.scanner
            s.feed(ch)
            for path, start in s.started:
                self.calls.started(index, path, start)
            for path, start, end in s.ended:
                if path == ():  # the object is complete
                    self.scanner = None
                else:
                    self.calls.ended(index, path, self.block, start, end)
            s.started.clear()
            s.ended.clear()
        return self.scanner is None

    def _send(self, deltas: list[ToolCallDelta], final: bool) -> bool:
        """Adds the open call's next delta to `deltas`; True when the call repeated an earlier
        one, which ends the answer (nothing after it is read)."""
        assert self.block is not None
        delta = self.calls.delta(len(self.calls) - 1, self.block, final)
        if delta is not None:
            deltas.append(delta)
        if self.repeated:
            self.rest = ""
        return self.repeated

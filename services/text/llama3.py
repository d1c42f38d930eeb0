"""Llama 3.1/3.2's JSON tool syntax, for chat templates that have it (`tools.tool_format`:
Meta's templates for Llama 3.1, 3.2 and 3.3, and templates written in their style such as
configs/chat-templates/llama3.1-json-tools.jinja), as vLLM's `llama3_json` tool parser and
llama.cpp's Llama 3.x chat handler serve them.

The prompt: the template gets the request's tools as its own `tools=` argument (OpenAI's tool
objects, which Meta's template writes as JSON into the first user message after "Environment:
ipython" in the system one), the history's assistant messages with `tool_calls` in
transformers' shape (arguments as an object), one call per message (Meta's templates refuse
more: a message with several becomes as many messages), and `role: "tool"` messages (which it
writes as ipython turns). A template that takes tools but writes no `tool_calls` (or no `tool`
role) itself gets them as text: the calls in the answer's syntax, the results as `ipython`
messages.

The answer: one or more calls `{"name": ..., "parameters": {...}}` separated by `; ` (vLLM's
parser), each optionally preceded by `<|python_tag|>`; the grammar of
services/text/constraints.py (`llama3_grammar`) keeps them valid and writes them without the
tag. The syntax has no text before a call: with tool_choice auto the answer is either calls
(it begins with `{` or the tag, after whitespace) or free text, all of it content.
`Llama3Stream` reads the answer as it is generated, each call streamed in OpenAI's deltas with
the generic format's JSON scanner (the arguments are the "parameters" member); a call that
repeats an earlier one (the same name and arguments) is never sent and ends the answer
(`tools.Calls`). Text after the calls (never under the grammar) is content.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

from core.types import ChatMessage, TextRequest, ToolCall, ToolCallDelta, ToolChoice
from services.text.hermes import template_writes
from services.text.tools import Calls, JsonScanner, openai_tools, parse_json

PYTHON_TAG = "<|python_tag|>"
SEPARATOR = "; "
ARGUMENTS = "parameters"  # the member that holds a call's arguments


def llama3_prompt(
    request: TextRequest, template: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The messages and the `tools` argument the template gets (None: no tools offered)."""
    writes_calls, writes_results = template_writes(template)
    names = {c.id: c.name for m in request.messages for c in m.tool_calls}
    messages = [
        out for m in request.messages for out in _messages(m, names, writes_calls, writes_results)
    ]
    if not request.tools or request.tool_choice == ToolChoice.NONE:
        return messages, None
    return messages, openai_tools(request)


def _messages(
    m: ChatMessage, names: dict[str, str], writes_calls: bool, writes_results: bool
) -> list[dict[str, Any]]:
    if m.tool_calls:
        if not writes_calls:
            text = SEPARATOR.join(call_text(c) for c in m.tool_calls)
            return [{"role": "assistant", "content": text}]
        return [
            {
                "role": "assistant",
                "content": m.content if i == 0 else "",
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": parse_json(c.arguments)},
                    }
                ],
            }
            for i, c in enumerate(m.tool_calls)
        ]
    if m.role == "tool":
        if not writes_results:
            return [{"role": "ipython", "content": m.content}]
        out: dict[str, Any] = {"role": "tool", "content": m.content}
        if m.tool_call_id:
            out["tool_call_id"] = m.tool_call_id
        name = m.name or names.get(m.tool_call_id or "")
        if name:
            out["name"] = name
        return [out]
    return [{"role": m.role, "content": m.content}]


def call_text(call: ToolCall) -> str:
    """A call as the model writes it."""
    body = {"name": call.name, ARGUMENTS: parse_json(call.arguments)}
    return json.dumps(body, ensure_ascii=False)


class State(Enum):
    START = "start"  # nothing but whitespace read: calls or text, not yet known
    TEXT = "text"  # the answer is text (or text after the calls): all of it content
    EXPECT_CALL = "expect_call"  # a call (its tag, or its JSON) comes next
    IN_CALL = "in_call"  # reading a call's JSON
    AFTER_CALL = "after_call"  # a call is complete: the separator, or the end


class Llama3Stream:
    """One completion's answer in Llama 3's JSON tool syntax -> content and tool-call deltas
    (the `tools.CallParser` protocol, as the generic format's ToolStream)."""

    def __init__(self) -> None:
        self.rest = ""  # text not yet read
        self.state = State.START
        self.calls = Calls(ARGUMENTS)
        self.block = ""  # the open call's JSON text so far
        self.scanner: JsonScanner | None = None

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
        content: list[str] = []
        deltas: list[ToolCallDelta] = []
        while True:
            if self.state == State.TEXT:
                content.append(self.rest)
                self.rest = ""
                break
            if self.state == State.START:
                head = self.rest.lstrip()
                if head.startswith(("{", PYTHON_TAG)):
                    self.rest, self.state = head, State.EXPECT_CALL
                elif final or (head and not PYTHON_TAG.startswith(head)):
                    self.state = State.TEXT  # the text as it is, its leading whitespace too
                else:
                    break  # whitespace, or the tag's beginning: wait
            elif self.state == State.EXPECT_CALL:
                head = self.rest.lstrip()
                if head.startswith(PYTHON_TAG):
                    head = head[len(PYTHON_TAG) :].lstrip()
                self.rest = head
                if head.startswith("{"):
                    self.state, self.block, self.scanner = State.IN_CALL, "", JsonScanner()
                    self.calls.at(len(self.calls))
                elif head and (final or not PYTHON_TAG.startswith(head)):
                    self.state = State.TEXT  # not a call (never under the grammar)
                else:
                    break
            elif self.state == State.IN_CALL:
                closed = self._read_call()
                delta = self.calls.delta(len(self.calls) - 1, self.block, final)
                if delta is not None:
                    deltas.append(delta)
                if self.repeated:  # nothing after the repeat is read
                    self.rest = ""
                    break
                if not closed:
                    break
                self.state = State.AFTER_CALL
            else:  # AFTER_CALL: whitespace that ends the answer is left out
                head = self.rest.lstrip()
                self.rest = head
                if head.startswith(";"):
                    self.rest, self.state = head[1:], State.EXPECT_CALL
                elif head:
                    self.state = State.TEXT
                else:
                    break
        return "".join(content), deltas

    def _read_call(self) -> bool:
        """Reads the open call's JSON from `rest` through its scanner (name and arguments found
        by their paths). True when the object is complete."""
        assert self.scanner is not None
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

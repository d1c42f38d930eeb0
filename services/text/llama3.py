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

from core.types import ChatMessage, TextRequest, ToolCall, ToolCallDelta
from services.text.native import (
    Messages,
    NativeStream,
    native_prompt,
    template_call,
    template_result,
)
from services.text.tools import parse_json

PYTHON_TAG = "<|python_tag|>"
SEPARATOR = "; "
ARGUMENTS = "parameters"  # the member that holds a call's arguments


def llama3_prompt(request: TextRequest, template: str) -> tuple[Messages, Messages | None]:
    """The messages and the `tools` argument the template gets (None: no tools offered)."""
    return native_prompt(request, template, _messages)


def _messages(
    m: ChatMessage, names: dict[str, str], writes_calls: bool, writes_results: bool
) -> Messages:
    if m.tool_calls:
        if not writes_calls:
            text = SEPARATOR.join(call_text(c) for c in m.tool_calls)
            return [{"role": "assistant", "content": text}]
        return [
            {"role": "assistant", "content": m.content if i == 0 else "",
             "tool_calls": [template_call(c)]}
            for i, c in enumerate(m.tool_calls)
        ]  # fmt: skip
    if m.role == "tool":
        if not writes_results:
            return [{"role": "ipython", "content": m.content}]
        return [template_result(m, names)]
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


class Llama3Stream(NativeStream):
    """One completion's answer in Llama 3's JSON tool syntax -> content and tool-call deltas."""

    def __init__(self) -> None:
        super().__init__(ARGUMENTS)
        self.state = State.START

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
                    self.state = State.IN_CALL
                    self._open_call()
                elif head and (final or not PYTHON_TAG.startswith(head)):
                    self.state = State.TEXT  # not a call (never under the grammar)
                else:
                    break
            elif self.state == State.IN_CALL:
                closed = self._scan_call()
                if self._send(deltas, final) or not closed:
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

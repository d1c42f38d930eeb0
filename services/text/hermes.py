"""Hermes' tool syntax, for chat templates that have it (`tools.tool_format`: NousResearch's
Hermes 2 Pro, Qwen2.5 and Qwen3, and templates written in their style such as
configs/chat-templates/chatml-hermes-tools.jinja).

The prompt: the template gets the request's tools as its own `tools=` argument (OpenAI's tool
objects, which it lists in a <tools></tools> system block), the history's assistant messages
with `tool_calls` in transformers' shape (`{"type": "function", "function": {"name",
"arguments": {...}}}`, arguments as an object) and `role: "tool"` messages with their content
(which it writes as <tool_response> blocks). A template that takes tools but writes no
`tool_calls` (or no `tool` role) itself gets them as text in the same syntax.

The answer: one or more blocks `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`,
which the grammar of services/text/constraints.py (`hermes_grammar`) keeps valid; with
tool_choice auto, free text too, and any block the model opens is a valid call. `HermesStream`
reads the answer as it is generated: text outside the blocks is content (the whitespace that
only separates it from a block left out), each block a tool call streamed in OpenAI's deltas
with the generic format's JSON scanner; a block that repeats an earlier call (the same name and
arguments) is never sent and ends the answer (`tools.Calls`).
"""

from __future__ import annotations

import json

from core.types import ChatMessage, TextRequest, ToolCall, ToolCallDelta
from services.text.native import (
    Messages,
    NativeStream,
    native_prompt,
    template_call,
    template_result,
)
from services.text.tools import parse_json

OPEN, CLOSE = "<tool_call>", "</tool_call>"


def hermes_prompt(request: TextRequest, template: str) -> tuple[Messages, Messages | None]:
    """The messages and the `tools` argument the template gets (None: no tools offered)."""
    return native_prompt(request, template, _message)


def _message(
    m: ChatMessage, names: dict[str, str], writes_calls: bool, writes_results: bool
) -> Messages:
    if m.tool_calls:
        if writes_calls:
            calls = [template_call(c) for c in m.tool_calls]
            return [{"role": "assistant", "content": m.content, "tool_calls": calls}]
        blocks = "\n".join(call_block(c) for c in m.tool_calls)
        content = f"{m.content}\n{blocks}" if m.content else blocks
        return [{"role": "assistant", "content": content}]
    if m.role == "tool":
        if writes_results:
            return [template_result(m, names)]
        return [{"role": "user", "content": f"<tool_response>\n{m.content}\n</tool_response>"}]
    return [{"role": m.role, "content": m.content}]


def call_block(call: ToolCall) -> str:
    """A call as the model writes it."""
    body = json.dumps(
        {"name": call.name, "arguments": parse_json(call.arguments)}, ensure_ascii=False
    )
    return f"{OPEN}\n{body}\n{CLOSE}"


def _held(text: str) -> int:
    """How many characters at the end of `text` must wait for what follows: the beginning of
    a <tool_call> tag, and the whitespace before it."""
    partial = 0
    for k in range(min(len(OPEN) - 1, len(text)), 0, -1):
        if text.endswith(OPEN[:k]):
            partial = k
            break
    before = text[: len(text) - partial]
    return len(text) - len(before.rstrip())


class HermesStream(NativeStream):
    """One completion's answer in Hermes' syntax -> content and tool-call deltas."""

    def __init__(self) -> None:
        super().__init__()
        self.after_block = False  # the text since the last block is whitespace so far
        self.content_sent = False

    def _read(self, final: bool) -> tuple[str, list[ToolCallDelta]]:
        content: list[str] = []
        deltas: list[ToolCallDelta] = []
        while True:
            if self.block is None:
                start = self.rest.find(OPEN)
                if start < 0:
                    keep = 0 if final else _held(self.rest)
                    content.append(self._text(self.rest[: len(self.rest) - keep]))
                    self.rest = self.rest[len(self.rest) - keep :]
                    break
                content.append(self._text(self.rest[:start].rstrip()))
                self.rest = self.rest[start + len(OPEN) :]
                self._open_call()
            closed = self._read_block()
            if self._send(deltas, final) or not closed:
                break
            self.block, self.after_block = None, True
        return "".join(content), deltas

    def _text(self, text: str) -> str:
        """Text outside the blocks, as content: whitespace that only separates blocks (or ends
        the answer after one) is left out, and so is the whitespace that begins the content."""
        if self.after_block:
            if not text.strip():
                return ""
            if not self.content_sent:
                text = text.lstrip()
            self.after_block = False
        self.content_sent = self.content_sent or bool(text)
        return text

    def _read_block(self) -> bool:
        """Reads the open block from `rest`: its JSON, then its closing tag. True when the
        block has closed."""
        if not self._scan_call():
            return False
        tail = self.rest.lstrip()
        if tail.startswith(CLOSE):
            self.rest = tail[len(CLOSE) :]
            return True
        if CLOSE.startswith(tail):  # the tag may still be coming
            return False
        return True  # not the closing tag (never under the grammar): the call ends here

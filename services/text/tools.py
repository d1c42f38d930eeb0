"""Tool calling: which format a chat template gets (`tool_format`), and the generic format,
on every text engine, for templates without a tool syntax of their own (as llama.cpp's generic
chat handler does). Templates with Hermes' `<tool_call>` syntax (Qwen2.5, Hermes 2 Pro and the
like) get their own: services/text/hermes.py.

The generic prompt: the tools are described in the system message, with the JSON the model
must answer in; assistant messages of the history that called tools are written in that same
JSON, and tool results go back as user messages `{"tool_response": {...}}`, so any chat
template renders them. The answer: decoding is constrained to the format
(services/text/constraints.py): `{"tool_calls": [{"name": ..., "arguments": {...}}, ...]}`,
or, with tool_choice auto, also `{"response": "..."}`. `ToolStream` turns that JSON, as it is
generated, into what OpenAI streams: tool-call deltas (id and name first, then the arguments'
JSON text in pieces) and the response's text as content.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from enum import StrEnum
from typing import Any, Protocol

from core.types import (
    ChatMessage,
    FinishReason,
    TextChunk,
    TextRequest,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
)


class ToolFormat(StrEnum):
    GENERIC = "generic"  # our JSON in the system prompt (any template)
    HERMES = "hermes"  # the template's own: tools=, <tool_call>{json}</tool_call>, role tool


def tool_format(template: str | None) -> ToolFormat:
    """The tool syntax a chat template has, read from its text (as llama.cpp's common/chat.cpp
    picks a handler by what the template contains): Hermes when it takes `tools` and writes
    `<tool_call>`, except the XML-argument variant (`<function=...>`, Qwen3-Coder's), which
    is not JSON; anything else gets the generic format."""
    if not template or "<tool_call>" not in template or "<function=" in template:
        return ToolFormat.GENERIC
    return ToolFormat.HERMES if re.search(r"\btools\b", template) else ToolFormat.GENERIC


INSTRUCTIONS = {
    ToolChoice.AUTO: (
        'To call tools, answer with JSON only: {"tool_calls": [{"name": "<tool name>", '
        '"arguments": {<arguments>}}]}. To answer without a tool, answer with JSON only: '
        '{"response": "<your answer>"}.'
    ),
    ToolChoice.REQUIRED: (
        'Call one or more tools. Answer with JSON only: {"tool_calls": [{"name": '
        '"<tool name>", "arguments": {<arguments>}}]}.'
    ),
}


def tool_messages(request: TextRequest) -> list[dict[str, Any]]:
    """The request's messages as the chat template gets them, tools and their calls written
    in the generic format."""
    names = {c.id: c.name for m in request.messages for c in m.tool_calls}
    out = [_message(m, names) for m in request.messages]
    if not request.tools or request.tool_choice == ToolChoice.NONE:
        return out
    tools = "\n".join(
        json.dumps(
            {"name": t.name, "description": t.description, "parameters": json.loads(t.parameters)}
        )
        for t in request.tools
    )
    choice = request.tool_choice
    how = INSTRUCTIONS.get(choice) or INSTRUCTIONS[ToolChoice.REQUIRED].replace(
        "one or more tools", f"the tool {request.tool_name}"
    )
    if not request.parallel_tool_calls:
        how = how.replace("one or more tools", "one tool")
    system = f"You can call these tools:\n{tools}\n{how}"
    if out and out[0]["role"] == "system":
        out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{system}"}
    else:
        out.insert(0, {"role": "system", "content": system})
    return out


def _message(m: ChatMessage, names: dict[str, str]) -> dict[str, Any]:
    if m.tool_calls:
        calls = [{"name": c.name, "arguments": parse_json(c.arguments)} for c in m.tool_calls]
        return {"role": "assistant", "content": json.dumps({"tool_calls": calls})}
    if m.role == "tool":
        response = {"name": m.name or names.get(m.tool_call_id or "", ""), "content": m.content}
        return {"role": "user", "content": json.dumps({"tool_response": response})}
    return {"role": m.role, "content": m.content}


def parse_json(text: str) -> Any:
    """`text` parsed as JSON; the text itself when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


class JsonScanner:
    """Follows JSON text as it arrives, character by character, and reports where values
    start and end by their path (keys and array indices from the root)."""

    def __init__(self) -> None:
        self.pos = 0  # characters consumed
        # open containers: [kind, key or index of the value being read, state]
        self._stack: list[list[Any]] = []
        self._in_string = False
        self._escape = False
        self._key: list[str] | None = None  # the characters of a key being read
        self._scalar = False  # inside a number or literal
        self.started: list[tuple[tuple[Any, ...], int]] = []  # (path, start) since last take
        self.ended: list[tuple[tuple[Any, ...], int, int]] = []  # (path, start, end)
        self._starts: list[int] = []  # where each open value began

    def path(self) -> tuple[Any, ...]:
        return tuple(frame[1] for frame in self._stack)

    def feed(self, text: str) -> None:
        for ch in text:
            self._char(ch)
            self.pos += 1

    def _begin(self) -> None:
        self._starts.append(self.pos)
        self.started.append((self.path(), self.pos))

    def _end(self, after: int) -> None:
        self.ended.append((self.path(), self._starts.pop(), after))
        if self._stack:
            self._stack[-1][2] = "comma"

    def _char(self, ch: str) -> None:
        if self._in_string:
            if self._escape:
                self._escape = False
            elif ch == "\\":
                self._escape = True
            elif ch == '"':
                self._in_string = False
                if self._key is not None:
                    self._stack[-1][1] = "".join(self._key)
                    self._stack[-1][2] = "colon"
                    self._key = None
                else:
                    self._end(self.pos + 1)
                return
            if self._key is not None:
                self._key.append(ch)
            return
        if self._scalar:
            if ch not in ",}] \n\r\t":
                return
            self._scalar = False
            self._end(self.pos)
        if ch in " \n\r\t":
            return
        frame = self._stack[-1] if self._stack else None
        if frame is not None and frame[0] == "{" and frame[2] in ("key", "comma") and ch == '"':
            self._in_string, self._key = True, []
            return
        if ch == ":" and frame is not None:
            frame[2] = "value"
            return
        if ch == "," and frame is not None:
            if frame[0] == "[":
                frame[1] += 1
            frame[2] = "key" if frame[0] == "{" else "value"
            return
        if ch in "}]" and frame is not None:
            self._stack.pop()
            self._end(self.pos + 1)
            return
        self._begin()  # a value starts
        if ch == "{":
            self._stack.append(["{", None, "key"])
        elif ch == "[":
            self._stack.append(["[", 0, "value"])
        elif ch == '"':
            self._in_string = True
        else:
            self._scalar = True

    def close(self) -> None:
        """The text is complete: a number or literal at its end ends too."""
        if self._scalar:
            self._scalar = False
            self._end(self.pos)


class ToolStream:
    """One completion's answer in the generic tool format -> content and tool-call deltas."""

    def __init__(self) -> None:
        self.text = ""
        self.scanner = JsonScanner()
        self.calls: dict[int, dict[str, Any]] = {}  # index -> id, name, arguments, sent
        self.content_start: int | None = None  # where the response string's characters begin
        self.content_end: int | None = None
        self.content_sent = ""
        self.plain: bool | None = None  # not the tool format: the text is the content

    def feed(self, delta: str) -> tuple[str, list[ToolCallDelta]]:
        if self.plain is None and delta.strip():
            self.plain = not delta.lstrip().startswith("{")
        if self.plain:
            return delta, []
        start = len(self.text)
        self.text += delta
        self.scanner.feed(self.text[start:])
        return self._progress()

    def finish(self) -> tuple[str, list[ToolCallDelta]]:
        self.scanner.close()
        return self._progress(final=True) if not self.plain else ("", [])

    def _progress(self, final: bool = False) -> tuple[str, list[ToolCallDelta]]:
        s = self.scanner
        for path, start in s.started:
            if len(path) == 3 and path[0] == "tool_calls" and path[2] == "arguments":
                self._call(path[1])["args_start"] = start
            elif path == ("response",):
                self.content_start = start + 1
        for path, start, end in s.ended:
            if len(path) == 3 and path[0] == "tool_calls" and path[2] == "name":
                self._call(path[1])["name"] = parse_json(self.text[start:end])
            elif len(path) == 3 and path[0] == "tool_calls" and path[2] == "arguments":
                self._call(path[1])["args_end"] = end
            elif path == ("response",):
                self.content_end = end - 1
        s.started.clear()
        s.ended.clear()
        deltas = [call_delta(i, self.calls[i], self.text) for i in sorted(self.calls)]
        return self._content(final), [d for d in deltas if d is not None]

    def _call(self, index: int) -> dict[str, Any]:
        return self.calls.setdefault(index, new_call())

    def _content(self, final: bool) -> str:
        """The response string's characters so far, unescaped (an escape still incomplete is
        held back)."""
        if self.content_start is None:
            return ""
        raw = self.text[self.content_start : self.content_end]
        decoded = ""
        for cut in range(min(len(raw), 12) + 1):  # hold back an escape not yet complete
            try:
                decoded = json.loads('"' + raw[: len(raw) - cut] + '"')
            except ValueError:
                continue
            if not decoded or not "\ud800" <= decoded[-1] <= "\udbff":  # half a pair
                break
        if len(decoded) <= len(self.content_sent):
            return ""
        out = decoded[len(self.content_sent) :]
        self.content_sent = decoded
        return out

    def tool_calls(self) -> list[ToolCall]:
        return named_calls(self.calls)


def new_call() -> dict[str, Any]:
    """A tool call being read: `name` once its string is complete, `args_start`/`args_end`
    where its arguments' JSON lies in the text, `arguments` what was sent of it."""
    return {"id": call_id(), "arguments": "", "announced": False}


def call_delta(index: int, call: dict[str, Any], text: str) -> ToolCallDelta | None:
    """Call `index`'s next delta, read from `text`: none before its name is known (the name
    comes first, with the id, in the call's first delta), then the arguments' characters
    generated since the last one."""
    if not isinstance(call.get("name"), str):
        return None
    first = not call["announced"]
    call["announced"] = True
    args = ""
    if "args_start" in call:
        end = call.get("args_end", len(text))
        args = text[call["args_start"] : end][len(call["arguments"]) :]
        call["arguments"] += args
    if not (first or args):
        return None
    return ToolCallDelta(
        index, call["id"] if first else None, call["name"] if first else None, args
    )


def named_calls(calls: dict[int, dict[str, Any]]) -> list[ToolCall]:
    return [
        ToolCall(c["id"], c["name"], c["arguments"])
        for _, c in sorted(calls.items())
        if isinstance(c.get("name"), str)
    ]


class CallParser(Protocol):
    """One completion's text -> content and tool-call deltas, as it is generated."""

    def feed(self, delta: str) -> tuple[str, list[ToolCallDelta]]: ...

    def finish(self) -> tuple[str, list[ToolCallDelta]]: ...

    def tool_calls(self) -> list[ToolCall]: ...


async def with_tool_calls(
    request: TextRequest,
    chunks: AsyncIterator[TextChunk],
    parser: Callable[[], CallParser] = ToolStream,
) -> AsyncIterator[TextChunk]:
    """A text stream whose completions are in a tool format (`parser` reads it: the generic
    one's ToolStream, or hermes.HermesStream), as content and tool-call deltas; a completion
    that called tools ends with finish_reason tool_calls."""
    streams = [parser() for _ in range(request.n)]
    held: dict[int, TextChunk] = {}  # tokens (and logprobs) of deltas that sent nothing yet
    try:
        async for chunk in chunks:
            tools = streams[chunk.index]
            content, deltas = tools.feed(chunk.delta)
            if chunk.finish_reason is not None:
                more, final = tools.finish()
                content += more
                deltas = _merge(deltas + final)
                if tools.tool_calls() and chunk.finish_reason == FinishReason.STOP:
                    chunk.finish_reason = FinishReason.TOOL_CALLS
            earlier = held.pop(chunk.index, None)
            if earlier is not None:
                chunk.token_count += earlier.token_count
                if earlier.logprobs:
                    chunk.logprobs = earlier.logprobs + (chunk.logprobs or [])
            chunk.delta = content
            chunk.tool_calls = deltas or None
            if content or deltas or chunk.finish_reason is not None:
                yield chunk
            else:
                held[chunk.index] = chunk
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


def _merge(deltas: list[ToolCallDelta]) -> list[ToolCallDelta]:
    out: list[ToolCallDelta] = []
    for d in deltas:
        if out and out[-1].index == d.index and d.id is None:
            out[-1].arguments += d.arguments
        else:
            out.append(d)
    return out

"""Tool calling: which format a chat template gets (`tool_format`), and the generic format,
on every text engine, for templates without a tool syntax of their own (as llama.cpp's generic
chat handler does). Templates with a tool syntax of their own get it: Hermes' `<tool_call>`
(Qwen2.5, Hermes 2 Pro and the like: services/text/hermes.py), and Llama 3.1/3.2's JSON calls
(Meta's templates: services/text/llama3.py).

The generic prompt: the tools are described in the system message, with the JSON the model
must answer in; assistant messages of the history that called tools are written in that same
JSON, and tool results go back as user messages `{"tool_response": {...}}`, so any chat
template renders them. The answer: decoding is constrained to the format
(services/text/constraints.py): `{"tool_calls": [{"name": ..., "arguments": {...}}, ...]}`,
or, with tool_choice auto, also `{"response": "..."}`. `ToolStream` turns that JSON, as it is
generated, into what OpenAI streams: tool-call deltas (id and name first, then the arguments'
JSON text in pieces) and the response's text as content.

A completion that repeats a call (same name, arguments equal as parsed JSON) ends there, in
every format (`Calls`, `with_tool_calls`): a small model at a non-zero temperature may
otherwise write the same call again and again until max_tokens. The repeat is never sent,
the engine stops generating the completion (`TextStream.end`), and it finishes with
tool_calls.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
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
from services.text.stream import TextStream


class ToolFormat(StrEnum):
    GENERIC = "generic"  # our JSON in the system prompt (any template)
    HERMES = "hermes"  # the template's own: tools=, <tool_call>{json}</tool_call>, role tool
    LLAMA3 = "llama3_json"  # the template's own: tools=, {"name", "parameters"}, role tool


# What Meta's Llama 3.1/3.2 templates write around their tools (llama.cpp's Llama 3.x handler
# and vLLM's llama3_json parser serve the same templates)
LLAMA3_MARKS = ("<|python_tag|>", "Environment: ipython", "Given the following functions")


def tool_format(template: str | None) -> ToolFormat:
    """The tool syntax a chat template has, read from its text (as llama.cpp's common/chat.cpp
    picks a handler by what the template contains), for a template that takes `tools`: Hermes
    when it writes `<tool_call>`, except the XML-argument variant (`<function=...>`,
    Qwen3-Coder's), which is not JSON; Llama 3.1/3.2's JSON calls when it has one of Meta's
    marks (`LLAMA3_MARKS`); anything else gets the generic format."""
    if not template or not re.search(r"\btools\b", template):
        return ToolFormat.GENERIC
    if "<tool_call>" in template:
        return ToolFormat.GENERIC if "<function=" in template else ToolFormat.HERMES
    if any(mark in template for mark in LLAMA3_MARKS):
        return ToolFormat.LLAMA3
    return ToolFormat.GENERIC


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
        self.calls = Calls()
        self.content_start: int | None = None  # where the response string's characters begin
        self.content_end: int | None = None
        self.content_sent = ""
        self.plain: bool | None = None  # not the tool format: the text is the content

    @property
    def repeated(self) -> bool:
        return self.calls.repeated is not None

    def feed(self, delta: str) -> tuple[str, list[ToolCallDelta]]:
        if self.plain is None and delta.strip():
            self.plain = not delta.lstrip().startswith("{")
        if self.plain:
            return delta, []
        if self.repeated:
            return "", []
        start = len(self.text)
        self.text += delta
        self.scanner.feed(self.text[start:])
        return self._progress()

    def finish(self) -> tuple[str, list[ToolCallDelta]]:
        if self.plain or self.repeated:
            return "", []
        self.scanner.close()
        return self._progress(final=True)

    def _progress(self, final: bool = False) -> tuple[str, list[ToolCallDelta]]:
        s = self.scanner
        for path, start in s.started:
            if len(path) >= 3 and path[0] == "tool_calls":
                self.calls.started(path[1], path[2:], start)
            elif path == ("response",):
                self.content_start = start + 1
        for path, start, end in s.ended:
            if len(path) >= 3 and path[0] == "tool_calls":
                self.calls.ended(path[1], path[2:], self.text, start, end)
            elif path == ("response",):
                self.content_end = end - 1
        s.started.clear()
        s.ended.clear()
        return self._content(final), self.calls.deltas(self.text, final)

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
        return self.calls.sent()


def canonical(text: str) -> str:
    """JSON text in one spelling (keys sorted, no free whitespace, one escape per character),
    so that two texts of the same value compare equal; text that is not JSON stays as it is,
    marked so that it equals no JSON."""
    try:
        return json.dumps(json.loads(text), sort_keys=True)
    except ValueError:
        return "\0" + text


@dataclass
class Call:
    """A tool call being read: its name once its string is complete, where its arguments' JSON
    lies in the parser's text, what was sent of it, and what the duplicate rule compares: each
    top-level member of its arguments as it completes, and the whole arguments once complete
    (canonical JSON)."""

    id: str = field(default_factory=call_id)
    name: Any = None  # a str once read (a call whose name is not a string is never sent)
    args_start: int | None = None
    args_end: int | None = None
    arguments: str = ""  # what was sent of the arguments' text
    announced: bool = False  # its first delta (id and name) was sent
    released: bool = False  # it differs from every earlier call: no longer held back
    members: dict[str, str] = field(default_factory=dict)  # key -> canonical value
    value: str | None = None  # the arguments, canonical, once complete


class Calls:
    """One completion's tool calls as its parser (ToolStream, HermesStream, Llama3Stream) reads
    them (`key`: the member that holds a call's arguments in its format), and
    the duplicate rule. A call that has the name of an earlier call is held back (nothing of it
    is sent) while it may still turn out identical to one of them: while each top-level member
    of its arguments, as it completes, equals that call's (as parsed JSON). It is released
    whole as soon as it differs from all of them; one that turns out identical (its whole
    arguments equal as parsed JSON) is never sent, and the answer ends there (`repeated`: the
    parser reads nothing after it). A call cut short (max_tokens) while held is released as
    it is, as any cut call is."""

    def __init__(self, key: str = "arguments") -> None:
        self.key = key
        self.calls: dict[int, Call] = {}
        self.repeated: int | None = None  # the index of the call that repeated an earlier one

    def at(self, index: int) -> Call:
        return self.calls.setdefault(index, Call())

    def started(self, index: int, path: tuple[Any, ...], start: int) -> None:
        """A value of call `index` starts at `start` (`path` within the call object)."""
        if path == (self.key,):
            self.at(index).args_start = start

    def ended(self, index: int, path: tuple[Any, ...], text: str, start: int, end: int) -> None:
        """A value of call `index` is complete: `text[start:end]`."""
        call = self.at(index)
        if path == ("name",):
            call.name = parse_json(text[start:end])
        elif path == (self.key,):
            call.args_end = end
            call.value = canonical(text[start:end])
        elif len(path) == 2 and path[0] == self.key and isinstance(path[1], str):
            call.members[path[1]] = canonical(text[start:end])

    def deltas(self, text: str, final: bool = False) -> list[ToolCallDelta]:
        """Every call's next delta (`text` holds them all: the generic format)."""
        deltas = [self.delta(i, text, final) for i in sorted(self.calls)]
        return [d for d in deltas if d is not None]

    def delta(self, index: int, text: str, final: bool = False) -> ToolCallDelta | None:
        """Call `index`'s next delta, read from `text`: none before its name is known (the name
        comes first, with the id, in the call's first delta), none while it is held back, then
        the arguments' characters generated since the last one. `final`: the answer ended."""
        call = self.calls[index]
        if not isinstance(call.name, str) or (self.repeated is not None and index >= self.repeated):
            return None
        if not call.released:
            verdict = self._verdict(index)
            if verdict == "repeat":
                self.repeated = index
                return None
            if verdict == "maybe" and not final:
                return None
            call.released = True
        first = not call.announced
        call.announced = True
        args = ""
        if call.args_start is not None:
            end = call.args_end if call.args_end is not None else len(text)
            args = text[call.args_start : end][len(call.arguments) :]
            call.arguments += args
        if not (first or args):
            return None
        return ToolCallDelta(index, call.id if first else None, call.name if first else None, args)

    def _verdict(self, index: int) -> str:
        """Call `index` against the earlier calls of its name: "repeat" (identical to one),
        "maybe" (it may still turn out so) or "differs"."""
        call = self.calls[index]
        earlier = [
            c
            for i, c in self.calls.items()
            if i < index and c.name == call.name and c.value is not None
        ]
        if call.value is not None:
            return "repeat" if any(c.value == call.value for c in earlier) else "differs"
        if any(_may_become(call, c) for c in earlier):
            return "maybe"
        return "differs"

    def sent(self) -> list[ToolCall]:
        """The calls sent so far (with what was sent of their arguments)."""
        calls = sorted(self.calls.items())
        return [ToolCall(c.id, c.name, c.arguments) for _, c in calls if c.announced]

    def __len__(self) -> int:
        return len(self.calls)


def _may_become(call: Call, earlier: Call) -> bool:
    """Whether `call`, read so far, may still turn out identical to the complete `earlier`:
    the members of its arguments complete so far are all the earlier call's. Arguments that
    are not an object are compared once complete."""
    if not (earlier.value or "").startswith("{"):
        return True
    return all(earlier.members.get(k) == v for k, v in call.members.items())


class CallParser(Protocol):
    """One completion's text -> content and tool-call deltas, as it is generated."""

    def feed(self, delta: str) -> tuple[str, list[ToolCallDelta]]: ...

    def finish(self) -> tuple[str, list[ToolCallDelta]]: ...

    def tool_calls(self) -> list[ToolCall]: ...

    @property
    def repeated(self) -> bool:
        """It read a call identical to an earlier one (`Calls`), and reads nothing more."""
        ...


async def with_tool_calls(
    request: TextRequest,
    chunks: TextStream,
    parser: Callable[[], CallParser] = ToolStream,
) -> AsyncIterator[TextChunk]:
    """A text stream whose completions are in a tool format (`parser` reads it: the generic
    one's ToolStream, hermes.HermesStream or llama3.Llama3Stream), as content and tool-call
    deltas; a completion that called tools ends with finish_reason tool_calls. A completion
    that repeats a call ends there: the engine stops generating it (`chunks.end`, the other
    completions go on), what it generated after the last call sent is dropped (its tokens
    still count, with their logprobs), and its last chunk, the engine's (so usage has the
    prompt's tokens), finishes with tool_calls."""
    streams = [parser() for _ in range(request.n)]
    held: dict[int, TextChunk] = {}  # tokens (and logprobs) of deltas that sent nothing yet
    try:
        async for chunk in chunks:
            tools = streams[chunk.index]
            ending = tools.repeated  # the engine was told to end this completion
            content, deltas = tools.feed(chunk.delta)
            if chunk.finish_reason is not None:
                more, final = tools.finish()
                content += more
                deltas = _merge(deltas + final)
                if tools.repeated or (
                    tools.tool_calls() and chunk.finish_reason == FinishReason.STOP
                ):
                    chunk.finish_reason = FinishReason.TOOL_CALLS
            elif tools.repeated and not ending:
                chunks.end(chunk.index)
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
        await chunks.aclose()


def _merge(deltas: list[ToolCallDelta]) -> list[ToolCallDelta]:
    out: list[ToolCallDelta] = []
    for d in deltas:
        if out and out[-1].index == d.index and d.id is None:
            out[-1].arguments += d.arguments
        else:
            out.append(d)
    return out

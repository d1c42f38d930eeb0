"""Feeding a tool-call parser (services/text/tools.CallParser: the generic ToolStream,
HermesStream, Llama3Stream) an answer in pieces, as the engine's stream does, and the JSON values
the property tests put in calls' arguments."""

from __future__ import annotations

from hypothesis import strategies as st

from services.text.tools import CallParser

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


def streamed(parser: CallParser, text: str, step: int) -> tuple[str, dict[int, dict[str, str]]]:
    """`text` fed to `parser` in pieces of `step` characters, then finished: its content, and
    its calls (id, name, arguments) joined from their deltas; each call is named once, in its
    first delta, before its arguments."""
    content = ""
    calls: dict[int, dict[str, str]] = {}
    pieces = [text[i : i + step] for i in range(0, len(text), step)]
    for more, deltas in [parser.feed(p) for p in pieces] + [parser.finish()]:
        content += more
        for d in deltas:
            entry = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
            if d.id is not None:
                assert not entry["id"] and d.id.startswith("call_"), "a call is named once"
                entry["id"], entry["name"] = d.id, d.name or ""
            else:
                assert entry["id"], "arguments come after the call's name"
            entry["arguments"] += d.arguments
    return content, calls


def sent(parser: CallParser, text: str, step: int) -> tuple[str, list[tuple[str, str]]]:
    """`streamed`, the calls as (name, arguments), which must be the calls the parser reports
    (`tool_calls`, what a unary answer carries)."""
    content, calls = streamed(parser, text, step)
    made = [(c["name"], c["arguments"]) for c in calls.values()]
    assert [(c.name, c.arguments) for c in parser.tool_calls()] == made
    return content, made

"""What a request asks of each sampled token beyond temperature, top-k and top-p: a grammar
(structured output, tool calls), penalties, a bias per token, and logprobs. Written once for
the engines that sample themselves (llamacpp, transformers); vLLM does the same in its own
sampler from the same request fields (services/text/vllm_engine.py).

Grammars are llguidance's (the library vLLM's `guidance` backend and llama.cpp's optional
LLGUIDANCE build use): a JSON schema, or for a template with a tool syntax of its own a lark
grammar around the call's schema (`hermes_grammar`, `llama3_grammar`), is compiled against the
model's vocabulary into a matcher that gives, before each token, the mask of tokens that keep
the output valid. A compiled grammar is cached per engine (`Grammars`); each sequence gets a
copy of the cached matcher.
A schema llguidance cannot compile (an unknown keyword or format, a bad `$ref`) is refused
with a 400 naming the field and llguidance's reason: a request is never answered without its
constraint.

`Shaper` does one sequence's work on a row of logits in place, in this order: logprobs are
read from the raw logits first (the model's own log-softmax, as vLLM's default
`raw_logprobs`: the same meaning on every engine whatever the sampling settings), then the
repetition penalty (vLLM's and transformers' rule: positive logits divided, negative ones
multiplied, over the prompt and the tokens so far), presence and frequency penalties
(OpenAI's definition, over the tokens generated so far), the bias (-100 bans the token), and
the grammar's mask. The engine's sampler then draws from what is left.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.errors import InvalidArgument
from core.types import OutputFormat, TextRequest, TokenLogprob, Tool, ToolChoice
from services.text.tools import ToolFormat

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

# The JSON a constraint allows: `{"a": 1, "b": [2, 3]}`, as json.dumps writes it. Flexible
# whitespace lets a small model loop on newlines and never close the object.
JSON_OPTIONS: JsonCompileOptions = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
}
CACHED_GRAMMARS = 256


def offers_tools(request: TextRequest) -> bool:
    return bool(request.tools) and request.tool_choice != ToolChoice.NONE


def tool_call_schema(tools: tuple[Tool, ...], key: str = "arguments") -> dict[str, Any]:
    """One call of any of `tools`: its name, then arguments matching its parameters (the
    member `key`: "parameters" in Llama 3's syntax)."""
    calls = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t.name},
                key: json.loads(t.parameters),
            },
            "required": ["name", key],
            "additionalProperties": False,
        }
        for t in tools
    ]
    return calls[0] if len(calls) == 1 else {"anyOf": calls}


def offered_tools(request: TextRequest) -> tuple[Tool, ...]:
    """The tools the answer may call: all of them, or the one tool_choice names."""
    if request.tool_choice == ToolChoice.FUNCTION:
        return tuple(t for t in request.tools if t.name == request.tool_name)
    return request.tools


def one_call(request: TextRequest) -> bool:
    """At most one call: a named function, or parallel_tool_calls false."""
    return not request.parallel_tool_calls or request.tool_choice == ToolChoice.FUNCTION


def output_schema(request: TextRequest) -> dict[str, Any] | None:
    """The JSON schema the request's answer must match (None: free text). With tools offered,
    the answer is the generic tool format (services/text/tools.py): `{"tool_calls": [...]}`,
    or with tool_choice auto also `{"response": "..."}`."""
    if offers_tools(request):
        items = tool_call_schema(offered_tools(request))
        calls: dict[str, Any] = {"type": "array", "items": items, "minItems": 1}
        if one_call(request):
            calls["maxItems"] = 1  # a named function: that one call
        call = {
            "type": "object",
            "properties": {"tool_calls": calls},
            "required": ["tool_calls"],
            "additionalProperties": False,
        }
        if request.tool_choice != ToolChoice.AUTO:
            return call
        answer = {
            "type": "object",
            "properties": {"response": {"type": "string"}},
            "required": ["response"],
            "additionalProperties": False,
        }
        return {"anyOf": [call, answer]}
    if request.output_format == OutputFormat.JSON_OBJECT:
        return {"type": "object"}
    if request.output_format == OutputFormat.JSON_SCHEMA:
        schema: dict[str, Any] = json.loads(request.json_schema or "{}")
        return schema
    return None


def hermes_grammar(request: TextRequest) -> str:
    """The answer in Hermes' tool syntax (services/text/hermes.py), as an llguidance lark
    grammar: blocks `<tool_call>\\n{"name", "arguments"}\\n</tool_call>` whose JSON matches
    one of the offered tools (llguidance's %json, with the same whitespace as JSON_OPTIONS),
    one or more separated by a newline (one for a named function or parallel_tool_calls
    false). With tool_choice auto the answer may be free text instead, or text before the
    calls: the text is a lazy lexeme that ends at the first `<tool_call>`, so every block the
    model opens is a valid call (llguidance's documented pattern for tags in text, as
    llama.cpp's lazy grammars triggered by the tag)."""
    body = {"x-guidance": dict(JSON_OPTIONS), **tool_call_schema(offered_tools(request))}
    lines = ["%llguidance {}"]
    if request.tool_choice == ToolChoice.AUTO:
        lines += [
            "start: call | TEXT" if one_call(request) else "start: call* TEXT",
            "TEXT: /(.|\\n)*/",
            'head[lazy]: TEXT "<tool_call>"',
            'call: head "\\n" body "\\n</tool_call>"',
        ]
    else:
        lines += [
            "start: call" if one_call(request) else 'start: call ("\\n" call)*',
            'call: "<tool_call>\\n" body "\\n</tool_call>"',
        ]
    lines.append(f"body: %json {json.dumps(body)}")
    return "\n".join(lines) + "\n"


def llama3_grammar(request: TextRequest) -> str:
    """The answer in Llama 3's JSON tool syntax (services/text/llama3.py), as an llguidance
    lark grammar: calls `{"name", "parameters"}` matching one of the offered tools (%json, with
    JSON_OPTIONS' whitespace), one or more separated by `; ` (one for a named function or
    parallel_tool_calls false), written without `<|python_tag|>` (the parser takes either).
    The syntax has no text before a call, so with tool_choice auto the answer is calls or text
    whose first character after any whitespace is not `{` (a `{` there opens a call, as
    llama.cpp's Llama 3.x grammar is triggered by a call at the start)."""
    body = {
        "x-guidance": dict(JSON_OPTIONS),
        **tool_call_schema(offered_tools(request), "parameters"),
    }
    calls = "call" if one_call(request) else 'call ("; " call)*'
    lines = ["%llguidance {}"]
    if request.tool_choice == ToolChoice.AUTO:
        lines += [f"start: {calls} | TEXT", "TEXT: /\\s*([^\\s{](.|\\n)*)?/"]
    else:
        lines.append(f"start: {calls}")
    lines.append(f"call: %json {json.dumps(body)}")
    return "\n".join(lines) + "\n"


# The lark grammar of each template tool syntax (the generic format's is a JSON schema)
TOOL_GRAMMARS: dict[ToolFormat, Callable[[TextRequest], str]] = {
    ToolFormat.HERMES: hermes_grammar,
    ToolFormat.LLAMA3: llama3_grammar,
}


@dataclass(frozen=True)
class Constraint:
    """What an answer is constrained to: a JSON schema, or a lark grammar (llguidance's)."""

    schema: dict[str, Any] | None = None
    lark: str | None = None

    @property
    def key(self) -> str:
        return self.lark if self.lark is not None else json.dumps(self.schema, sort_keys=True)


def constraint(
    request: TextRequest, tool_format: ToolFormat = ToolFormat.GENERIC
) -> Constraint | None:
    """The request's constraint (None: free text): tools in the template's format, or the
    response_format's schema."""
    grammar = TOOL_GRAMMARS.get(tool_format)
    if offers_tools(request) and grammar is not None:
        return Constraint(lark=grammar(request))
    schema = output_schema(request)
    return None if schema is None else Constraint(schema=schema)


def schema_field(request: TextRequest) -> str:
    return "tools" if offers_tools(request) else "response_format"


def check_schema(request: TextRequest, tool_format: ToolFormat = ToolFormat.GENERIC) -> None:
    """The request's constraint compiles (checked without a vocabulary, for an engine whose
    own grammar backend compiles it later)."""
    from llguidance import LLMatcher

    wanted = constraint(request, tool_format)
    if wanted is not None:
        error = LLMatcher.validate_grammar(_grammar(wanted, request))
        if error and not error.startswith("WARNING"):
            raise refusal(request, error)


def _grammar(wanted: Constraint, request: TextRequest, field: str | None = None) -> str:
    from llguidance import LLMatcher

    try:
        if wanted.lark is not None:
            return LLMatcher.grammar_from_lark(wanted.lark)
        assert wanted.schema is not None
        return LLMatcher.grammar_from_json_schema(wanted.schema, defaults=JSON_OPTIONS)
    except ValueError as exc:
        raise refusal(request, str(exc), field) from None


def refusal(
    request: TextRequest, reason: str, field: str | None = None, tokenizer: Any = None
) -> InvalidArgument:
    """The 400 for a schema that does not compile, naming the field: with tools, the first
    tool whose parameters fail alone."""
    from llguidance import LLMatcher

    field = field or schema_field(request)
    if field == "tools":
        for i, tool in enumerate(request.tools):
            name = f"tools[{i}].function.parameters"
            alone = _grammar(Constraint(schema=json.loads(tool.parameters)), request, name)
            error = LLMatcher.validate_grammar(alone, tokenizer)
            if error and not error.startswith("WARNING"):
                field, reason = name, error
                break
    return InvalidArgument(f"{field}: the schema cannot be compiled: {reason}", field)


class Grammars:
    """Compiled constraints for one model's vocabulary and tool format, cached by grammar
    (least recently used dropped past CACHED_GRAMMARS). `matcher(request)` gives a sequence
    its own matcher."""

    def __init__(self, tokenizer: Any, tool_format: ToolFormat = ToolFormat.GENERIC) -> None:
        self.tokenizer = tokenizer  # llguidance.LLTokenizer
        self.tool_format = tool_format
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.compiled = 0  # grammars compiled (cache misses), for tests and stats

    def check(self, request: TextRequest) -> None:
        """Compiles (or finds) the request's constraint; a 400 naming the field if it fails."""
        self.matcher(request)

    def matcher(self, request: TextRequest) -> Any:
        wanted = constraint(request, self.tool_format)
        if wanted is None:
            return None
        key = wanted.key
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                return found.deep_copy()
        compiled = self._compile(wanted, request)
        with self._lock:
            self._cache[key] = compiled
            self.compiled += 1
            while len(self._cache) > CACHED_GRAMMARS:
                self._cache.popitem(last=False)
        return compiled.deep_copy()

    def _compile(self, wanted: Constraint, request: TextRequest) -> Any:
        from llguidance import LLMatcher

        matcher = LLMatcher(self.tokenizer, _grammar(wanted, request), log_level=0)
        if matcher.is_error():
            raise refusal(request, matcher.get_error(), tokenizer=self.tokenizer)
        return matcher


def check_logit_bias(request: TextRequest, vocab_size: int) -> None:
    for token, _ in request.logit_bias:
        if token >= vocab_size:
            raise InvalidArgument(
                f"logit_bias key {token} is not a token id of model {request.model!r} "
                f"(0..{vocab_size - 1})",
                field="logit_bias",
            )


class Shaper:
    """One sequence's logit processing and logprobs (see the module's docstring). `shape` and
    `chose` run on the scheduler's thread, in turn for each token."""

    def __init__(
        self,
        request: TextRequest,
        prompt: list[int],
        matcher: Any,
        piece: Callable[[int], bytes],
    ) -> None:
        self.request = request
        self.matcher = matcher
        self._piece = piece
        self.counts: dict[int, int] = {}
        self._seen = set(prompt) if request.repetition_penalty != 1.0 else set()
        self._bias: tuple[torch.Tensor, torch.Tensor] | None = None
        if request.logit_bias:
            ids = torch.tensor([t for t, _ in request.logit_bias], dtype=torch.long)
            values = torch.tensor([b for _, b in request.logit_bias], dtype=torch.float32)
            self._bias = ids, values.masked_fill(values <= -100, float("-inf"))
        self._raw: torch.Tensor | None = None
        self.logprobs: list[TokenLogprob] = []  # sampled, not yet sent
        self.finished = False  # the grammar is complete: nothing may follow
        self.error: str | None = None

    @staticmethod
    def needed(request: TextRequest, matcher: Any) -> bool:
        return matcher is not None or request.shapes_logits or request.logprobs is not None

    def shape(self, logits: torch.Tensor) -> None:
        """Processes one row of raw logits (1-D, float32) in place."""
        r = self.request
        if r.logprobs is not None:
            self._raw = torch.log_softmax(logits, -1)
        if r.repetition_penalty != 1.0 and self._seen:
            ids = torch.tensor(sorted(self._seen), dtype=torch.long)
            values = logits[ids]
            p = r.repetition_penalty
            logits[ids] = torch.where(values > 0, values / p, values * p)
        if (r.presence_penalty or r.frequency_penalty) and self.counts:
            ids = torch.tensor(list(self.counts), dtype=torch.long)
            counts = torch.tensor(list(self.counts.values()), dtype=torch.float32)
            logits[ids] -= counts * r.frequency_penalty + r.presence_penalty
        if self._bias is not None:
            ids, values = self._bias
            logits[ids] += values
        if self.matcher is not None:
            mask = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
            allowed = np.unpackbits(mask, bitorder="little")[: logits.numel()]
            # through numpy: a torch op here would use every core's thread for 49k floats
            logits.numpy()[allowed == 0] = -np.inf

    def chose(self, token: int) -> None:
        """Records the sampled token: its logprob, the penalties' counts, the grammar's state."""
        self.counts[token] = self.counts.get(token, 0) + 1
        if self.request.repetition_penalty != 1.0:
            self._seen.add(token)
        if self._raw is not None:
            self.logprobs.append(self._logprob(self._raw, token))
            self._raw = None
        if self.matcher is not None:
            if not self.matcher.consume_token(token):
                self.error = self.matcher.get_error() or "the grammar refused a sampled token"
            self.finished = self.matcher.is_stopped()

    def _logprob(self, raw: torch.Tensor, token: int) -> TokenLogprob:
        k = self.request.logprobs or 0
        top: tuple[TokenLogprob, ...] = ()
        if k:
            values, ids = torch.topk(raw, k)
            top = tuple(self.entry(int(i), float(v)) for v, i in zip(values, ids, strict=True))
        chosen = self.entry(token, float(raw[token]))
        return TokenLogprob(chosen.token, chosen.logprob, chosen.bytes, top)

    def entry(self, token: int, logprob: float) -> TokenLogprob:
        data = self._piece(token)
        return TokenLogprob(data.decode("utf-8", errors="replace"), logprob, tuple(data))

    def take_logprobs(self, drop_last: bool = False) -> list[TokenLogprob]:
        """The logprobs sampled since the last call (`drop_last`: the last token was the end
        of generation, which is not part of the text)."""
        out, self.logprobs = self.logprobs, []
        return out[:-1] if drop_last and out else out

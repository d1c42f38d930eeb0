"""Native tool syntax: a chat template's own (Hermes' <tool_call>) read from its text, the prompt
rendered through the template (transformers' renderer and llama.cpp's alike), the answer's
grammar compiled by llguidance against a real vocabulary, the answer parsed as it streams, and
the transformers engine serving it from a configured `chat_template` file. The same through the
real `openai` client on llama.cpp: tests/integration/test_native_tools.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import ConfigError, ModelConfig, parse_config
from core.errors import InvalidArgument
from core.types import (
    ChatMessage,
    FinishReason,
    TextChunk,
    TextRequest,
    Tool,
    ToolCall,
    ToolChoice,
)
from services.text.constraints import Grammars, check_schema, constraint
from services.text.engine import collect, prompt_text
from services.text.hermes import CLOSE, OPEN, HermesStream
from services.text.llamacpp_model import GgufChatTemplate
from services.text.tools import ToolFormat, tool_format, with_tool_calls
from tests.tiny_models import make_text_model
from tests.tool_streams import json_values, sent

REPO = Path(__file__).resolve().parents[2]
HERMES_FILE = REPO / "configs" / "chat-templates" / "chatml-hermes-tools.jinja"
HERMES = HERMES_FILE.read_text()
# SmolLM2-135M-Instruct's own template (ChatML, no tools): the generic format serves it
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CITY = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 12}},
    "required": ["city"],
    "additionalProperties": False,
}
UNIT = {
    "type": "object",
    "properties": {"unit": {"enum": ["c", "f"]}},
    "required": ["unit"],
    "additionalProperties": False,
}
WEATHER = Tool("get_weather", "The weather in a city", json.dumps(CITY))
SET_UNIT = Tool("set_unit", "", json.dumps(UNIT))
HISTORY = (
    ChatMessage("user", "Weather in Paris?"),
    ChatMessage("assistant", "", (ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)),
    ChatMessage("tool", "Sunny", tool_call_id="call_1"),
)


def request(**kw: Any) -> TextRequest:
    kw.setdefault("messages", (ChatMessage("user", "hi"),))
    return TextRequest("r", "m", **kw)


def block(name: str, arguments: Any, ensure_ascii: bool = True) -> str:
    body = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=ensure_ascii)
    return f"{OPEN}\n{body}\n{CLOSE}"


# ---- which syntax a template has -------------------------------------------------------------
def test_the_tool_syntax_is_read_from_the_template() -> None:
    assert tool_format(HERMES) == ToolFormat.HERMES
    assert tool_format(SMOLLM2) == ToolFormat.GENERIC
    assert tool_format(None) == tool_format("") == ToolFormat.GENERIC
    # the tag without a `tools` argument: nothing to list the tools with
    assert tool_format("{% for m in messages %}<tool_call>{{ m.content }}{% endfor %}") == (
        ToolFormat.GENERIC
    )
    assert tool_format("{% if tools_in_user_message %}<tool_call>{% endif %}") == (
        ToolFormat.GENERIC
    )
    # Qwen3-Coder's XML arguments inside the same tag are not Hermes' JSON
    xml = "{% if tools %}<tools></tools>{% endif %}<tool_call>\n<function=f>\n</tool_call>"
    assert tool_format(xml) == ToolFormat.GENERIC


# ---- the prompt ---------------------------------------------------------------------------------
def renderers(tiny_tokenizer: Any, template: str) -> list[Any]:
    """transformers' renderer (the transformers and vllm engines) and llama-cpp-python's
    (the llamacpp engine), each with `template`."""
    tiny_tokenizer.chat_template = template
    return [tiny_tokenizer, GgufChatTemplate(template, bos="<s>", eos="</s>")]


def test_tools_calls_and_results_render_in_the_templates_own_syntax(tiny_tokenizer: Any) -> None:
    req = request(messages=HISTORY, tools=(WEATHER,))
    texts = [
        prompt_text(req, r, "raw", "m", ToolFormat.HERMES)
        for r in renderers(tiny_tokenizer, HERMES)
    ]
    assert texts[0] == texts[1]
    text = texts[0]
    assert text is not None
    tool = {
        "type": "function",
        "function": {"name": "get_weather", "description": "The weather in a city",
                     "parameters": CITY},
    }  # fmt: skip
    assert f"<tools>\n{json.dumps(tool)}\n</tools>" in text  # the template's own tools block
    assert (
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        f"<|im_start|>assistant\n{block('get_weather', {'city': 'Paris'})}<|im_end|>\n"
        "<|im_start|>user\n<tool_response>\nSunny\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    ) in text
    assert '"tool_calls"' not in text and 'tool_response":' not in text  # not the generic JSON
    # tool_choice none: the tools are not offered, the history keeps its syntax
    unoffered = prompt_text(
        request(messages=HISTORY, tools=(WEATHER,), tool_choice=ToolChoice.NONE),
        tiny_tokenizer, "raw", "m", ToolFormat.HERMES,
    )  # fmt: skip
    assert unoffered is not None and "<tools>" not in unoffered
    assert block("get_weather", {"city": "Paris"}) in unoffered
    # a conversation without tools renders as the template always did
    plain = request(messages=(ChatMessage("user", "hi"),))
    assert prompt_text(plain, tiny_tokenizer, "raw", "m", ToolFormat.HERMES) == (
        tiny_tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
        )
    )


def test_a_template_that_writes_no_calls_or_results_gets_them_as_text(
    tiny_tokenizer: Any,
) -> None:
    bare = (
        "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }} {% endfor %}</tools> "
        "Call them in <tool_call></tool_call>.\n{% endif %}"
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    assert tool_format(bare) == ToolFormat.HERMES
    for renderer in renderers(tiny_tokenizer, bare):
        text = prompt_text(
            request(messages=HISTORY, tools=(WEATHER,)), renderer, "raw", "m", ToolFormat.HERMES
        )
        assert text == (
            "<tools>get_weather </tools> Call them in <tool_call></tool_call>.\n"
            "user: Weather in Paris?\n"
            f"assistant: {block('get_weather', {'city': 'Paris'})}\n"
            "user: <tool_response>\nSunny\n</tool_response>\n"
            "assistant:"
        )


def test_a_template_that_writes_calls_and_results_gets_them_as_objects(
    tiny_tokenizer: Any,
) -> None:
    """The native path: the history's calls reach the template as `tool_calls` with their
    arguments as an object, and results as `role: tool` messages naming their function. This
    template writes them unlike any text block, so the fallback could not pass it."""
    own = (
        "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }} {% endfor %}</tools> "
        "Call them in <tool_call></tool_call>.\n{% endif %}"
        "{% for m in messages %}{% if m.tool_calls %}{% for c in m.tool_calls %}"
        "CALL {{ c.function.name }}({{ c.function.arguments.city }})\n{% endfor %}"
        "{% elif m.role == 'tool' %}RESULT[{{ m.name }}] {{ m.content }}\n"
        "{% else %}{{ m.role }}: {{ m.content }}\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    assert tool_format(own) == ToolFormat.HERMES
    for renderer in renderers(tiny_tokenizer, own):
        text = prompt_text(
            request(messages=HISTORY, tools=(WEATHER,)), renderer, "raw", "m", ToolFormat.HERMES
        )
        assert text == (
            "<tools>get_weather </tools> Call them in <tool_call></tool_call>.\n"
            "user: Weather in Paris?\n"
            "CALL get_weather(Paris)\n"
            "RESULT[get_weather] Sunny\n"
            "assistant:"
        )


# ---- the answer, parsed as it streams -------------------------------------------------------
def feed_all(text: str, step: int) -> tuple[str, list[tuple[str, str]]]:
    """`text` fed to a HermesStream in pieces of `step` characters: its content, and its
    calls (name, arguments) joined from their deltas."""
    return sent(HermesStream(), text, step)


@settings(max_examples=200, deadline=None)
@given(
    st.text().filter(lambda t: OPEN not in t),
    st.lists(st.dictionaries(st.text(), json_values, max_size=3), min_size=1, max_size=3),
    st.integers(1, 9),
    st.booleans(),
)
def test_calls_stream_in_pieces_that_join_to_the_arguments(
    lead: str, args: list[dict[str, Any]], step: int, ensure_ascii: bool
) -> None:
    text = lead + "\n" + "\n".join(block(f"f{i}", a, ensure_ascii) for i, a in enumerate(args))
    streamed = feed_all(text, step)
    assert feed_all(text, len(text)) == streamed  # unary: the whole answer in one piece
    content, calls = streamed
    assert content == lead.rstrip()  # the text before the calls, less the newline before them
    assert [(name, json.loads(arguments)) for name, arguments in calls] == [
        (f"f{i}", a) for i, a in enumerate(args)
    ]


@settings(max_examples=150, deadline=None)
@given(st.text().filter(lambda t: OPEN not in t), st.integers(1, 7))
def test_text_without_a_call_is_the_content_as_it_is(answer: str, step: int) -> None:
    assert feed_all(answer, step) == (answer, [])


def test_tags_inside_arguments_text_after_calls_and_a_cut() -> None:
    tricky = {"note": f"a {CLOSE} and a {OPEN} inside a string"}
    text = f"Let me see.\n{block('f', tricky)}\n{block('g', {})}\n\nDone.\n"
    for step in (1, 2, 5, len(text)):
        content, calls = feed_all(text, step)
        assert content == "Let me see.\n\nDone.\n"  # text after the calls as it is
        assert [(n, json.loads(a)) for n, a in calls] == [("f", tricky), ("g", {})]
    cut = text[: text.index('"note": "a') + 10]  # max_tokens ended inside the arguments
    assert feed_all(cut, 3) == ("Let me see.", [("f", '{"note": "a')])
    assert feed_all(block("f", {}) + "\n", 4) == ("", [("f", "{}")])  # a trailing newline


def test_a_stream_that_called_tools_finishes_with_tool_calls() -> None:
    text = f"{block('get_weather', {'city': 'Oslo'})}\n{block('get_weather', {'city': 'Rome'})}"
    pieces = [text[i : i + 6] for i in range(0, len(text), 6)]

    async def chunks() -> AsyncIterator[TextChunk]:
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            yield TextChunk(0, piece, 1, FinishReason.STOP if last else None)

    async def main() -> Any:
        req = request(tools=(WEATHER,))
        return await collect(req, with_tool_calls(req, chunks(), HermesStream))

    (done,) = asyncio.run(main()).completions
    assert done.finish_reason == FinishReason.TOOL_CALLS and done.text == ""
    assert done.completion_tokens == len(pieces)  # the tokens of chunks that sent nothing count
    assert [(c.name, json.loads(c.arguments)) for c in done.tool_calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_weather", {"city": "Rome"}),
    ]
    assert len({c.id for c in done.tool_calls}) == 2


# ---- the grammar, compiled against a real vocabulary -------------------------------------------
@pytest.fixture(scope="module")
def grammars(tiny_tokenizer: Any) -> Grammars:
    from llguidance.hf import from_tokenizer

    return Grammars(
        from_tokenizer(tiny_tokenizer, eos_token=tiny_tokenizer.eos_token_id), ToolFormat.HERMES
    )


def follows(grammars: Grammars, tokenize: Callable[[str], list[int]], req: TextRequest) -> Any:
    """What the request's grammar makes of a text: "refused", "partial" (valid so far) or
    "complete" (an answer that may end here)."""
    matcher = grammars.matcher(req)

    def verdict(text: str) -> str:
        m = matcher.deep_copy()
        if not all(m.consume_token(t) for t in tokenize(text)):
            return "refused"
        return "complete" if m.is_accepting() else "partial"

    return verdict


def test_the_grammar_of_each_tool_choice(grammars: Grammars, tiny_tokenizer: Any) -> None:
    def tokenize(text: str) -> list[int]:
        return list(tiny_tokenizer(text, add_special_tokens=False).input_ids)

    paris, oslo = block("get_weather", {"city": "Paris"}), block("get_weather", {"city": "Oslo"})
    tools = (WEATHER, SET_UNIT)
    required = follows(grammars, tokenize, request(tools=tools, tool_choice=ToolChoice.REQUIRED))
    assert required("Sure.") == "refused"  # calls only
    assert required(paris) == required(f"{paris}\n{oslo}") == "complete"
    assert required(block("set_unit", {"unit": "c"})) == "complete"
    assert required(block("get_weather", {"town": "Paris"})) == "refused"  # not its parameters
    assert required(block("get_time", {})) == "refused"  # not a tool
    assert required(f'{OPEN}\n{{"name":"get_weather"') == "refused"  # JSON_OPTIONS' spacing
    assert required(paris[:30]) == "partial"
    single = follows(
        grammars, tokenize,
        request(tools=tools, tool_choice=ToolChoice.REQUIRED, parallel_tool_calls=False),
    )  # fmt: skip
    assert single(paris) == "complete" and single(f"{paris}\n") == "refused"
    named = follows(
        grammars, tokenize,
        request(tools=tools, tool_choice=ToolChoice.FUNCTION, tool_name="set_unit"),
    )  # fmt: skip
    assert named(block("set_unit", {"unit": "f"})) == "complete"
    assert named(paris) == "refused"
    assert named(f"{block('set_unit', {'unit': 'f'})}\n") == "refused"  # one call
    auto = follows(grammars, tokenize, request(tools=tools))
    assert auto("It is sunny, <tool calls> are not needed.") == "complete"  # free text
    assert auto(f"Let me look.\n{paris}\n{oslo}") == "complete"  # text, then calls
    assert auto(f"{paris} and that is all.") == "complete"
    assert auto("I call it: <tool_call>\nget_weather(Paris)") == "refused"  # a tag opens a call
    assert auto(f'{OPEN}\n{{"name": "nope"') == "refused"
    assert grammars.compiled == 4
    assert grammars.matcher(request(tools=tools)) is not None and grammars.compiled == 4  # cached
    none = request(tools=tools, tool_choice=ToolChoice.NONE)
    assert constraint(none, ToolFormat.HERMES) is None and grammars.matcher(none) is None


def test_a_parameters_schema_that_cannot_compile_names_its_tool() -> None:
    bad = Tool("f", "", json.dumps({"type": "object", "properties": {"a": {"$ref": "#/nope"}}}))
    for choice in (ToolChoice.AUTO, ToolChoice.REQUIRED):
        with pytest.raises(InvalidArgument) as err:
            check_schema(request(tools=(WEATHER, bad), tool_choice=choice), ToolFormat.HERMES)
        assert err.value.field == "tools[1].function.parameters" and "/nope" in err.value.message


# ---- the configured template, served ---------------------------------------------------------
def test_chat_template_is_a_text_model_setting_next_to_the_config(tmp_path: Path) -> None:
    model = {"name": "m", "modality": "text", "engine": "llamacpp", "weights": "./w.gguf"}
    cfg = parse_config(
        {"models": [{**model, "chat_template": "templates/t.jinja"}]}, base_dir=tmp_path
    )
    assert cfg.models[0].chat_template == str(tmp_path / "templates" / "t.jinja")
    absolute = parse_config({"models": [{**model, "chat_template": str(HERMES_FILE)}]})
    assert absolute.models[0].chat_template == str(HERMES_FILE)
    for engine, modality in (("echo", "text"), ("gan", "image")):
        with pytest.raises(ConfigError, match="chat_template"):
            parse_config(
                {"models": [{"name": "x", "modality": modality, "engine": engine,
                             "chat_template": "t.jinja"}]}
            )  # fmt: skip


def tiny_engine(tiny_dir: Path, chat_template: str) -> Any:
    from services.text.transformers_engine import TransformersTextEngine

    return TransformersTextEngine(
        ModelConfig(
            name="tiny",
            modality="text",
            engine="transformers",
            weights=str(make_text_model(tiny_dir / "tiny-text")),
            chat_template=chat_template,
            # the tools block is long in a 300-token vocabulary; RoPE goes past the 128 trained
            options={"add_bos_token": True, "max_context": 2048},
        )
    )


def test_the_transformers_engine_serves_the_configured_templates_tool_syntax(
    tiny_dir: Path,
) -> None:
    """Random weights: what the tiny model would say is noise, so a named tool whose argument
    is an enum leaves it one choice of two; the call must still parse and validate."""
    ask = request(
        messages=(ChatMessage("user", "Use Celsius."),),
        tools=(WEATHER, SET_UNIT),
        tool_choice=ToolChoice.FUNCTION,
        tool_name="set_unit",
        max_tokens=200,
        temperature=1.0,
        seed=5,
    )

    async def main() -> Any:
        engine = tiny_engine(tiny_dir, str(HERMES_FILE))
        await engine.start()
        try:
            prompt = engine.tokenizer.decode(engine.prompt_of(ask))
            result = await collect(ask, engine.respond(ask))
            return engine.facts(), prompt, result
        finally:
            await engine.stop()

    facts, prompt, result = asyncio.run(main())
    assert facts.details["tool_format"] == "hermes"
    assert "<tools>" in prompt and '"name": "set_unit"' in prompt
    (done,) = result.completions
    assert done.finish_reason == FinishReason.TOOL_CALLS, done
    ((name, arguments),) = [(c.name, json.loads(c.arguments)) for c in done.tool_calls]
    assert name == "set_unit" and arguments in ({"unit": "c"}, {"unit": "f"})
    assert done.text == ""


def test_a_missing_chat_template_file_fails_the_load_naming_it(tiny_dir: Path) -> None:
    engine = tiny_engine(tiny_dir, str(tiny_dir / "missing.jinja"))
    with pytest.raises(ValueError, match=r"chat_template .*missing\.jinja"):
        asyncio.run(engine.start())

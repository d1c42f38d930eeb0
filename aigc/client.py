"""Python SDK for the aigc.v1 API: `Client` (blocking) and `AsyncClient` (asyncio).

from aigc import Client
with Client("127.0.0.1:50051") as c:
    print(c.generate_text("A computer is").completions[0].text)
    for chunk in c.stream_text("Once upon a time", max_tokens=32):
        print(chunk.delta, end="", flush=True)

Text requests take structured output (`json_schema=`, `json_object=True`), tools (`tools=`,
`tool_choice=`), `logprobs=`, penalties and `logit_bias=`; see `text_request`. A completion's
`tool_calls` and `logprobs` are on the response; `StreamCollector` joins a stream's pieces.

Batches (OpenAI's Batch API): `submit_batch` takes request lines or a JSONL file and returns a
google.longrunning `Operation` ("operations/<batch id>"); `wait_operation`, `get_operation`,
`list_operations`, `cancel_operation`, `delete_operation` work on it, `batch_metadata(op)`
reads its progress and `file_content` a result file:

    op = c.submit_batch([("q1", {"model": "smollm2", "messages": [...]})])
    while not (op := c.wait_operation(op.name, 10)).done:
        print(batch_metadata(op).request_counts)
    print(c.file_content(batch_metadata(op).output_file_id).decode())
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import grpc
from google.longrunning import operations_pb2, operations_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aigc.v1 import (
    audio_pb2,
    audio_pb2_grpc,
    batches_pb2,
    batches_pb2_grpc,
    common_pb2,
    image_pb2,
    image_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    text_pb2,
    text_pb2_grpc,
    video_pb2,
    video_pb2_grpc,
)
from aigc.wire import OPERATION_PREFIX, PRIORITIES, TIERS

DEFAULT_TARGET = "127.0.0.1:50051"
MAX_MESSAGE_BYTES = 64 * 2**20
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


def tier(priority: str | int | None) -> common_pb2.Priority:
    """The admission tier of a request: "interactive" (the default) or "batch" (refused first
    under load, runs on idle capacity), or an `aigc.v1.Priority` value."""
    if priority is None:
        return common_pb2.PRIORITY_UNSPECIFIED
    if isinstance(priority, str):
        if priority not in TIERS:
            raise ValueError(f"priority must be one of {PRIORITIES}, not {priority!r}")
        return cast(common_pb2.Priority, TIERS[priority])
    return cast(common_pb2.Priority, priority)


Message = tuple[str, str] | Mapping[str, Any] | text_pb2.ChatMessage
ToolSpec = Mapping[str, Any] | tuple[Any, ...] | text_pb2.Tool
TOOL_CHOICE_MODES = {
    "none": text_pb2.TOOL_CHOICE_MODE_NONE,
    "auto": text_pb2.TOOL_CHOICE_MODE_AUTO,
    "required": text_pb2.TOOL_CHOICE_MODE_REQUIRED,
}


def text_request(
    prompt: str | None = None,
    *,
    messages: Sequence[Message] | None = None,
    model: str = "",
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    stop: Sequence[str] = (),
    n: int | None = None,
    seed: int | None = None,
    priority: str | int | None = None,
    json_schema: Mapping[str, Any] | str | None = None,
    json_object: bool = False,
    tools: Sequence[ToolSpec] | None = None,
    tool_choice: str | Mapping[str, Any] | None = None,
    parallel_tool_calls: bool | None = None,
    logprobs: int | None = None,
    presence_penalty: float | None = None,
    frequency_penalty: float | None = None,
    repetition_penalty: float | None = None,
    logit_bias: Mapping[int | str, float] | None = None,
) -> text_pb2.GenerateTextRequest:
    """A `GenerateTextRequest`. `messages` are (role, content) pairs, dicts as OpenAI's (with
    `tool_calls`, `tool_call_id`, `name`) or `ChatMessage`s. `json_schema` (a dict or its JSON
    text) or `json_object=True` constrain the output. `tools` are OpenAI tool objects
    ({"type": "function", "function": {"name", "description", "parameters"}}), their inner
    function dicts, (name, description, parameters) tuples or `Tool`s; `tool_choice` is
    "none", "auto", "required", a tool's name or OpenAI's {"type": "function", ...}.
    `logprobs=k` returns each token's logprob and its k best alternatives (0 to 20)."""
    req = text_pb2.GenerateTextRequest(model=model, stop=list(stop), priority=tier(priority))
    if messages is not None:
        req.chat.SetInParent()  # selects chat even when the list is empty
        req.chat.messages.extend(chat_message(m) for m in messages)
    elif prompt is not None:
        req.prompt = prompt
    for name, value in (
        ("max_tokens", max_tokens),
        ("temperature", temperature),
        ("top_p", top_p),
        ("top_k", top_k),
        ("n", n),
        ("seed", seed),
        ("parallel_tool_calls", parallel_tool_calls),
        ("logprobs", logprobs),
        ("presence_penalty", presence_penalty),
        ("frequency_penalty", frequency_penalty),
        ("repetition_penalty", repetition_penalty),
    ):
        if value is not None:
            setattr(req, name, value)
    if json_schema is not None and json_object:
        raise ValueError("give json_schema or json_object, not both")
    if json_schema is not None:
        req.response_format.json_schema.schema_json = json_text(json_schema)
    elif json_object:
        req.response_format.json_object.SetInParent()
    req.tools.extend(tool(t) for t in tools or ())
    if tool_choice is not None:
        req.tool_choice.CopyFrom(choice(tool_choice))
    for token, bias in (logit_bias or {}).items():
        req.logit_bias[int(token)] = bias
    return req


def json_text(value: Any) -> str:
    """JSON text as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def chat_message(m: Message) -> text_pb2.ChatMessage:
    if isinstance(m, text_pb2.ChatMessage):
        return m
    if not isinstance(m, Mapping):
        role, content = m
        return text_pb2.ChatMessage(role=role, content=content)
    return text_pb2.ChatMessage(
        role=m["role"],
        content=m.get("content") or "",  # OpenAI's assistant message with tool calls: null
        tool_calls=[tool_call(c) for c in m.get("tool_calls") or ()],
        tool_call_id=m.get("tool_call_id") or "",
        name=m.get("name") or "",
    )


def tool_call(c: Mapping[str, Any] | text_pb2.ToolCall) -> text_pb2.ToolCall:
    """A call in an assistant message: a `ToolCall` (a completion's, sent back), OpenAI's
    {"id", "type": "function", "function": {"name", "arguments"}} or {"id", "name",
    "arguments"}; arguments as JSON text or a dict."""
    if isinstance(c, text_pb2.ToolCall):
        return c
    fn = c.get("function", c)
    return text_pb2.ToolCall(
        id=c.get("id") or "", name=fn["name"], arguments=json_text(fn.get("arguments") or {})
    )


def tool(t: ToolSpec) -> text_pb2.Tool:
    """A `Tool`, OpenAI's tool object, its inner function dict, or (name, description,
    parameters) where description and parameters (a dict or JSON text) may be left off."""
    if isinstance(t, text_pb2.Tool):
        return t
    if isinstance(t, tuple):
        if not 1 <= len(t) <= 3:
            raise ValueError(f"a tool tuple is (name, description, parameters), not {t!r}")
        fn: Mapping[str, Any] = dict(zip(("name", "description", "parameters"), t, strict=False))
    else:
        if t.get("type", "function") != "function":
            raise ValueError(f"only function tools are supported, not {t.get('type')!r}")
        fn = t.get("function", t)
    if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
        raise ValueError(f"a tool needs a function name: {t!r}")
    parameters = fn.get("parameters")
    return text_pb2.Tool(
        name=fn["name"],
        description=fn.get("description") or "",
        parameters_json="" if parameters is None else json_text(parameters),
    )


def choice(value: str | Mapping[str, Any]) -> text_pb2.ToolChoice:
    """A tool choice: "none", "auto", "required", a function's name, or OpenAI's
    {"type": "function", "function": {"name": ...}}."""
    if isinstance(value, Mapping):
        return text_pb2.ToolChoice(function=value["function"]["name"])
    if value in TOOL_CHOICE_MODES:
        return text_pb2.ToolChoice(mode=TOOL_CHOICE_MODES[value])
    return text_pb2.ToolChoice(function=value)


class StreamCollector:
    """Joins `GenerateTextStreamResponse`s into the `GenerateTextResponse` that `Generate`
    returns: each completion's text, logprobs, tool calls (their pieces joined), finish reason,
    and the stream's usage. A completion's own `completion_tokens` stays 0 (a stream gives
    only the total, in `usage`)."""

    def __init__(self) -> None:
        self.response = text_pb2.GenerateTextResponse()
        self._completions: dict[int, text_pb2.Completion] = {}

    def add(self, chunk: text_pb2.GenerateTextStreamResponse) -> None:
        self.response.id, self.response.model = chunk.id, chunk.model
        c = self._completions.setdefault(chunk.index, text_pb2.Completion(index=chunk.index))
        c.text += chunk.delta
        c.logprobs.extend(chunk.logprobs)
        for piece in chunk.tool_calls:
            while len(c.tool_calls) <= piece.index:
                c.tool_calls.add()
            call = c.tool_calls[piece.index]
            call.id = piece.id or call.id
            call.name = piece.name or call.name
            call.arguments += piece.arguments
        if chunk.finish_reason:
            c.finish_reason = chunk.finish_reason
        if chunk.HasField("usage"):
            self.response.usage.CopyFrom(chunk.usage)

    def result(self) -> text_pb2.GenerateTextResponse:
        out = text_pb2.GenerateTextResponse()
        out.CopyFrom(self.response)
        out.completions.extend(self._completions[i] for i in sorted(self._completions))
        return out


def collect(chunks: Iterable[text_pb2.GenerateTextStreamResponse]) -> text_pb2.GenerateTextResponse:
    """A whole stream as one response (see `StreamCollector`)."""
    collector = StreamCollector()
    for chunk in chunks:
        collector.add(chunk)
    return collector.result()


def image_request(
    model: str = "",
    count: int | None = None,
    seed: int | None = None,
    label: str = "",
    raw: bool = False,
    priority: str | int | None = None,
) -> image_pb2.GenerateImageRequest:
    req = image_pb2.GenerateImageRequest(
        model=model,
        label=label,
        priority=tier(priority),
        format=image_pb2.IMAGE_FORMAT_RAW if raw else image_pb2.IMAGE_FORMAT_PNG,
    )
    if count is not None:
        req.count = count
    if seed is not None:
        req.seed = seed
    return req


def speech_request(
    text: str,
    model: str = "",
    voice: str = "",
    speed: float | None = None,
    seed: int | None = None,
    pcm16: bool = False,
    priority: str | int | None = None,
) -> audio_pb2.SynthesizeRequest:
    req = audio_pb2.SynthesizeRequest(
        text=text,
        model=model,
        voice=voice,
        priority=tier(priority),
        format=audio_pb2.AUDIO_FORMAT_PCM16 if pcm16 else audio_pb2.AUDIO_FORMAT_UNSPECIFIED,
    )
    if speed is not None:
        req.speed = speed
    if seed is not None:
        req.seed = seed
    return req


# ---- batches ------------------------------------------------------------------------------
DEFAULT_ENDPOINT = "/v1/chat/completions"
UPLOAD_CHUNK = 2**20
# (custom_id, body), OpenAI's input line {"custom_id", "body", "method", "url"}, or a BatchLine;
# a body is a dict or its JSON text
LineSpec = tuple[str, Mapping[str, Any] | str] | Mapping[str, Any] | batches_pb2.BatchLine
# OpenAI's batch states, as BatchStatus names them
BATCH_STATES = {
    v: k.removeprefix("BATCH_STATUS_").lower()
    for k, v in batches_pb2.BatchStatus.items()
    if v != batches_pb2.BATCH_STATUS_UNSPECIFIED
}


def operation_name(name: str) -> str:
    """An operation's name from itself or from its batch's id."""
    return name if name.startswith(OPERATION_PREFIX) else OPERATION_PREFIX + name


def batch_line(spec: LineSpec, endpoint: str | None = None) -> batches_pb2.BatchLine:
    """A `BatchLine` from (custom_id, body) or from a line of OpenAI's input file (whose url,
    if given, must be the batch's endpoint)."""
    if isinstance(spec, batches_pb2.BatchLine):
        return spec
    body: Any
    if isinstance(spec, tuple):
        custom_id, body = spec
    else:
        custom_id, body = spec.get("custom_id", ""), spec.get("body")
        url, method = spec.get("url"), spec.get("method", "POST")
        if url is not None and endpoint is not None and url != endpoint:
            raise ValueError(f"line {custom_id!r}: url {url!r} is not the endpoint {endpoint}")
        if method != "POST":
            raise ValueError(f"line {custom_id!r}: method must be POST, not {method!r}")
    if not isinstance(body, Mapping | str):
        raise ValueError(f"line {custom_id!r}: the body is a JSON object (dict or JSON text)")
    return batches_pb2.BatchLine(custom_id=str(custom_id), body_json=json_text(body))


def batch_request(
    lines: Iterable[LineSpec] | None = None,
    *,
    input_file_id: str = "",
    endpoint: str = DEFAULT_ENDPOINT,
    completion_window: str = "24h",
    metadata: Mapping[str, str] | None = None,
) -> batches_pb2.CreateBatchRequest:
    """A `CreateBatchRequest` over lines given here or an uploaded file (one of the two)."""
    return batches_pb2.CreateBatchRequest(
        endpoint=endpoint,
        lines=[batch_line(x, endpoint) for x in lines or ()],
        input_file_id=input_file_id,
        completion_window=completion_window,
        metadata=dict(metadata or {}),
    )


def upload_requests(
    data: bytes, purpose: str = "batch", filename: str = "upload.jsonl"
) -> Iterator[batches_pb2.UploadFileRequest]:
    """UploadFile's request stream: the purpose and name first, the bytes in pieces."""
    yield batches_pb2.UploadFileRequest(
        purpose=purpose, filename=filename, data=data[:UPLOAD_CHUNK]
    )
    for start in range(UPLOAD_CHUNK, len(data), UPLOAD_CHUNK):
        yield batches_pb2.UploadFileRequest(data=data[start : start + UPLOAD_CHUNK])


def batch_metadata(op: operations_pb2.Operation) -> batches_pb2.BatchMetadata:
    """A batch operation's progress: status, request counts, times, result file ids."""
    meta = batches_pb2.BatchMetadata()
    if not op.metadata.Unpack(meta):
        raise ValueError(f"operation {op.name} is not a batch (metadata {op.metadata.type_url})")
    return meta


def batch_of(op: operations_pb2.Operation) -> batches_pb2.Batch | None:
    """The `Batch` of a done operation (its response, or the one its error carries)."""
    batch = batches_pb2.Batch()
    if op.HasField("response") and op.response.Unpack(batch):
        return batch
    for detail in op.error.details if op.HasField("error") else ():
        if detail.Unpack(batch):
            return batch
    return None


def batch_status(op: operations_pb2.Operation) -> str:
    """OpenAI's name of a batch operation's status: "in_progress", "completed", ..."""
    return BATCH_STATES.get(batch_metadata(op).status, "unspecified")


def _file_bytes(source: bytes | str | Path) -> tuple[bytes, str]:
    if isinstance(source, bytes):
        return source, "upload.jsonl"
    path = Path(source)
    return path.read_bytes(), path.name


def auth_metadata(api_key: str | None) -> list[tuple[str, str]]:
    """gRPC metadata that carries an API key (empty without one)."""
    return [("authorization", f"Bearer {api_key}")] if api_key else []


class Stubs:
    """One stub per aigc.v1 service (and grpc.health.v1) on a blocking or an asyncio channel."""

    def __init__(self, channel: Any) -> None:
        self.text = text_pb2_grpc.TextGenerationStub(channel)
        self.image = image_pb2_grpc.ImageGenerationStub(channel)
        self.audio = audio_pb2_grpc.AudioSynthesisStub(channel)
        self.models = models_pb2_grpc.ModelsStub(channel)
        self.video = video_pb2_grpc.VideoGenerationStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)
        self.batches = batches_pb2_grpc.BatchesStub(channel)
        self.operations = operations_pb2_grpc.OperationsStub(channel)


class _Calls:
    """The API's methods, written once for both clients.

    Each returns what the stub returns: on `Client` the response (or an iterator of chunks);
    on `AsyncClient` the call object, which is awaited (or iterated with `async for`).
    """

    _grpc: Any = grpc  # grpc or grpc.aio: both make channels with the same arguments

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        api_key: str | None = None,
        timeout: float | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.channel = (
            self._grpc.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
            if credentials
            else self._grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        )
        self.stubs = Stubs(self.channel)
        self.metadata = auth_metadata(api_key)
        self.timeout = timeout

    def _kw(self, timeout: float | None) -> dict[str, Any]:
        return {"metadata": self.metadata, "timeout": timeout or self.timeout}

    def generate_text(
        self, prompt: str | None = None, *, timeout: float | None = None, **kw: Any
    ) -> Any:
        """`GenerateTextResponse`; keywords as for `text_request`."""
        return self.stubs.text.Generate(text_request(prompt, **kw), **self._kw(timeout))

    def stream_text(
        self, prompt: str | None = None, *, timeout: float | None = None, **kw: Any
    ) -> Any:
        """Chunks (`GenerateTextStreamResponse`); `.cancel()` on the call stops generation."""
        return self.stubs.text.GenerateStream(text_request(prompt, **kw), **self._kw(timeout))

    def generate_images(self, *, timeout: float | None = None, **kw: Any) -> Any:
        """`GenerateImageResponse`; keywords as for `image_request`."""
        return self.stubs.image.Generate(image_request(**kw), **self._kw(timeout))

    def synthesize(self, text: str, *, timeout: float | None = None, **kw: Any) -> Any:
        """`SynthesizeResponse`; keywords as for `speech_request`."""
        return self.stubs.audio.Synthesize(speech_request(text, **kw), **self._kw(timeout))

    def stream_speech(self, text: str, *, timeout: float | None = None, **kw: Any) -> Any:
        """`AudioChunk`s of 16-bit PCM, one per sentence."""
        req = speech_request(text, pcm16=True, **kw)
        return self.stubs.audio.SynthesizeStream(req, **self._kw(timeout))

    def create_video(
        self, prompt: str, *, timeout: float | None = None, seed: int | None = None, **kw: Any
    ) -> Any:
        """`Video` (a queued job); keywords: `model`, `seconds`, `size`, `narration`, `voice`,
        `remix_of`. Poll with `get_video` until its status is completed or failed."""
        req = video_pb2.CreateVideoRequest(prompt=prompt, **kw)
        if seed is not None:
            req.seed = seed
        return self.stubs.video.CreateVideo(req, **self._kw(timeout))

    def get_video(self, video_id: str, *, timeout: float | None = None) -> Any:
        """`Video`: status (queued, in_progress, completed, failed), progress 0-100, error."""
        return self.stubs.video.GetVideo(
            video_pb2.GetVideoRequest(id=video_id), **self._kw(timeout)
        )

    def list_videos(self, limit: int = 20, after: str = "", *, timeout: float | None = None) -> Any:
        """`ListVideosResponse`: jobs newest first (`after`: those created before that one)."""
        req = video_pb2.ListVideosRequest(limit=limit, after=after)
        return self.stubs.video.ListVideos(req, **self._kw(timeout))

    def delete_video(self, video_id: str, *, timeout: float | None = None) -> Any:
        req = video_pb2.GetVideoRequest(id=video_id)
        return self.stubs.video.DeleteVideo(req, **self._kw(timeout))

    def video_content(
        self, video_id: str, variant: str = "video", *, timeout: float | None = None
    ) -> Any:
        """`VideoContent` chunks of a completed job's MP4 (or `thumbnail`, `spritesheet` PNG)."""
        req = video_pb2.GetVideoContentRequest(id=video_id, variant=variant)
        return self.stubs.video.GetVideoContent(req, **self._kw(timeout))

    def list_models(self, *, timeout: float | None = None) -> Any:
        """`ListModelsResponse`."""
        return self.stubs.models.ListModels(models_pb2.ListModelsRequest(), **self._kw(timeout))

    def health_check(self, service: str = "", *, timeout: float | None = 5.0) -> Any:
        """`HealthCheckResponse` (grpc.health.v1); `health()` gives the status name."""
        req = health_pb2.HealthCheckRequest(service=service)
        return self.stubs.health.Check(req, **self._kw(timeout))

    # ---- batches and their operations ----------------------------------------------------
    def create_batch(
        self, lines: Iterable[LineSpec] | None = None, *, timeout: float | None = None, **kw: Any
    ) -> Any:
        """`Operation` of a new batch; keywords as for `batch_request`."""
        return self.stubs.batches.CreateBatch(batch_request(lines, **kw), **self._kw(timeout))

    def upload_file(
        self,
        source: bytes | str | Path,
        *,
        purpose: str = "batch",
        filename: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """`File`: bytes, or a file's path, stored (for a batch: JSONL request lines)."""
        data, name = _file_bytes(source)
        requests = upload_requests(data, purpose, filename or name)
        return self.stubs.batches.UploadFile(requests, **self._kw(timeout))

    def file_chunks(self, file_id: str, *, timeout: float | None = None) -> Any:
        """A stored file's `FileChunk`s (`file_content` joins them)."""
        req = batches_pb2.GetFileContentRequest(file_id=file_id)
        return self.stubs.batches.GetFileContent(req, **self._kw(timeout))

    def get_operation(self, name: str, *, timeout: float | None = None) -> Any:
        """`Operation` by its name or its batch's id."""
        req = operations_pb2.GetOperationRequest(name=operation_name(name))
        return self.stubs.operations.GetOperation(req, **self._kw(timeout))

    def list_operations(
        self,
        filter: str = "",
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Any:
        """`ListOperationsResponse`, newest first; `filter`: e.g. "done = false",
        "status = in_progress" (terms joined by AND); `next_page_token` pages on."""
        req = operations_pb2.ListOperationsRequest(
            name="operations", filter=filter, page_size=page_size, page_token=page_token
        )
        return self.stubs.operations.ListOperations(req, **self._kw(timeout))

    def cancel_operation(self, name: str, *, timeout: float | None = None) -> Any:
        """Asks a running batch to stop (what ran is kept); `get_operation` shows it end."""
        req = operations_pb2.CancelOperationRequest(name=operation_name(name))
        return self.stubs.operations.CancelOperation(req, **self._kw(timeout))

    def delete_operation(self, name: str, *, timeout: float | None = None) -> Any:
        """Removes a finished batch and its result files (FAILED_PRECONDITION while it runs)."""
        req = operations_pb2.DeleteOperationRequest(name=operation_name(name))
        return self.stubs.operations.DeleteOperation(req, **self._kw(timeout))

    def wait_operation(
        self, name: str, wait_s: float | None = None, *, timeout: float | None = None
    ) -> Any:
        """`Operation` once done, or as it is after `wait_s` seconds (None: the server's
        bound, 60 s); the call's deadline is `timeout`, else `wait_s` and 10 s more."""
        req = operations_pb2.WaitOperationRequest(name=operation_name(name))
        if wait_s is not None:
            req.timeout.SetInParent()  # a wait of 0 is set too: the operation as it is now
            req.timeout.FromNanoseconds(int(wait_s * 1e9))
        if timeout is None and wait_s is not None:
            timeout = max(wait_s + 10, self.timeout or 0)
        return self.stubs.operations.WaitOperation(req, **self._kw(timeout))


def status_name(resp: health_pb2.HealthCheckResponse) -> str:
    """SERVING, NOT_SERVING, ... for a health response."""
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))


class Client(_Calls):
    """Blocking client. `timeout` (seconds) is the default deadline of every call."""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def health(self, service: str = "", *, timeout: float | None = 5.0) -> str:
        return status_name(self.health_check(service, timeout=timeout))

    def submit_batch(
        self,
        source: str | Path | bytes | Iterable[LineSpec],
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        completion_window: str = "24h",
        metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> operations_pb2.Operation:
        """Starts a batch: `source` is request lines (see `batch_line`), or a JSONL file of
        OpenAI's input lines (a path, or its bytes), uploaded first. Returns its `Operation`."""
        kw: dict[str, Any] = {
            "endpoint": endpoint,
            "completion_window": completion_window,
            "metadata": metadata,
            "timeout": timeout,
        }
        if isinstance(source, str | Path | bytes):
            uploaded = self.upload_file(source, timeout=timeout)
            return cast(
                operations_pb2.Operation, self.create_batch(input_file_id=uploaded.id, **kw)
            )
        return cast(operations_pb2.Operation, self.create_batch(source, **kw))

    def file_content(self, file_id: str, *, timeout: float | None = None) -> bytes:
        """A stored file's bytes (a batch's output or error file)."""
        return b"".join(chunk.data for chunk in self.file_chunks(file_id, timeout=timeout))


class AsyncClient(_Calls):
    """asyncio client with the same methods as `Client` (awaitable / async-iterable)."""

    _grpc = grpc.aio

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    async def health(self, service: str = "", *, timeout: float | None = 5.0) -> str:
        return status_name(await self.health_check(service, timeout=timeout))

    async def submit_batch(
        self,
        source: str | Path | bytes | Iterable[LineSpec],
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        completion_window: str = "24h",
        metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> operations_pb2.Operation:
        """As `Client.submit_batch`."""
        kw: dict[str, Any] = {
            "endpoint": endpoint,
            "completion_window": completion_window,
            "metadata": metadata,
            "timeout": timeout,
        }
        if isinstance(source, str | Path | bytes):
            uploaded = await self.upload_file(source, timeout=timeout)
            return cast(
                operations_pb2.Operation, await self.create_batch(input_file_id=uploaded.id, **kw)
            )
        return cast(operations_pb2.Operation, await self.create_batch(source, **kw))

    async def file_content(self, file_id: str, *, timeout: float | None = None) -> bytes:
        """A stored file's bytes (a batch's output or error file)."""
        return b"".join([chunk.data async for chunk in self.file_chunks(file_id, timeout=timeout)])

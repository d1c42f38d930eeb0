"""The gRPC front end without Ray: servicers on an in-process grpc.aio server (port 0), over the
data plane with stand-in handles (tests/standin.py) that run the real echo engines."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from aigc.client import Client
from aigc.v1 import (
    audio_pb2_grpc,
    common_pb2,
    image_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    text_pb2,
    text_pb2_grpc,
)
from gateway.grpc_api.auth import AuthInterceptor
from gateway.grpc_api.decode import DecodeInterceptor
from gateway.grpc_api.servicers import AudioServicer, ImageServicer, ModelsServicer, TextServicer
from tests.conftest import LoopThread
from tests.standin import counted_cancel, echo_config, settle, standin_plane


class Front:
    def __init__(self, **gateway: Any) -> None:
        self.loop = LoopThread()
        self.plane, self.handles = self.loop.run(standin_plane(echo_config(**gateway)))
        self.port = self.loop.run(self._start())
        self.target = f"127.0.0.1:{self.port}"

    async def _start(self) -> int:
        auth = [AuthInterceptor(self.plane)] if self.plane.auth.enabled else []
        self.server = grpc.aio.server(interceptors=[*auth, DecodeInterceptor()])
        text_pb2_grpc.add_TextGenerationServicer_to_server(TextServicer(self.plane), self.server)
        image_pb2_grpc.add_ImageGenerationServicer_to_server(ImageServicer(self.plane), self.server)
        audio_pb2_grpc.add_AudioSynthesisServicer_to_server(AudioServicer(self.plane), self.server)
        models_pb2_grpc.add_ModelsServicer_to_server(ModelsServicer(self.plane), self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return port

    def metric(self, name: str, **labels: str) -> float:
        return self.plane.metrics.registry.get_sample_value(name, labels) or 0.0

    def close(self) -> None:
        self.loop.run(self.server.stop(0))
        self.loop.close()


@pytest.fixture(scope="module")
def front() -> Iterator[Front]:
    f = Front()
    yield f
    f.close()


def _details(err: grpc.RpcError) -> list[Any]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    out = []
    for d in status.details if status else []:
        for cls in (error_details_pb2.BadRequest, error_details_pb2.RetryInfo):
            if d.Is(cls.DESCRIPTOR):
                msg = cls()
                d.Unpack(msg)
                out.append(msg)
    return out


def requests_total(front: Front, **labels: str) -> float:
    return front.metric("aigc_requests_total", protocol="grpc", **labels)


def test_text_unary_and_stream_through_an_alias(front: Front) -> None:
    generate_ok = {"modality": "text", "model": "echo-text", "method": "Generate", "code": "OK"}
    before = requests_total(front, **generate_ok)
    with Client(front.target, timeout=30) as c:
        r = c.generate_text("a b c", model="text-davinci-002", n=2)
        # counted once, under the model the alias names, before the reply is sent
        assert requests_total(front, **generate_ok) == before + 1
        assert [x.text for x in r.completions] == ["a b c", "a b c"] and r.model == "echo-text"
        chunks = list(c.stream_text("a b c", model="echo-text", n=2))
    assert "".join(x.delta for x in chunks if x.index == 0) == "a b c"
    assert chunks[-1].usage.completion_tokens == 6
    reasons = [x.finish_reason for x in chunks if x.finish_reason]
    assert reasons == [text_pb2.FINISH_REASON_STOP] * 2


def test_bad_field_names_the_field(front: Front) -> None:
    with Client(front.target, timeout=30) as c, pytest.raises(grpc.RpcError) as err:
        c.generate_text("hi", model="echo-text", temperature=5.0)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    (bad,) = _details(err.value)
    assert bad.field_violations[0].field == "temperature"


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"tools": [("get weather",)]}, "tools[0].name"),
        ({"tools": [("f", "", "[]")]}, "tools[0].parameters_json"),
        ({"tools": [("f",)], "tool_choice": "g"}, "tool_choice.function"),
        ({"json_schema": "{"}, "response_format.json_schema.schema_json"),
        ({"logprobs": 21}, "logprobs"),
        ({"logit_bias": {7: 101.0}}, "logit_bias[7]"),
    ],
)
def test_structure_fields_are_named_in_aigc_terms_on_both_rpcs(
    front: Front, kw: dict[str, Any], field: str
) -> None:
    with Client(front.target, timeout=30) as c:
        for call in (c.generate_text, lambda **k: list(c.stream_text(**k))):
            with pytest.raises(grpc.RpcError) as err:
                call(messages=[("user", "hi")], model="echo-text", **kw)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            (bad,) = _details(err.value)
            assert bad.field_violations[0].field == field
            assert err.value.details().startswith(field) or field.startswith("tool_choice")


def test_undecodable_bytes_are_invalid_argument_on_both_lookup_paths(front: Front) -> None:
    """Generated stubs call registered methods; a raw call goes through the generic handlers.
    The decode interceptor sees the handlers of both."""
    bad = {  # a string field with invalid UTF-8: the text prompt (2), the image model (1)
        "/aigc.v1.TextGeneration/Generate": b"\x12\x03\xff\xfe\xfd",
        "/aigc.v1.ImageGeneration/Generate": b"\x0a\x03\xff\xfe\xfd",
    }
    with grpc.insecure_channel(front.target) as channel:
        for registered in (False, True):
            for method, request in bad.items():
                raw = channel.unary_unary(method, _registered_method=registered)
                with pytest.raises(grpc.RpcError) as err:
                    raw(request, timeout=10)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (registered, method)
                assert "does not parse" in err.value.details() and "UTF-8" in err.value.details()
            stream = channel.unary_stream(
                "/aigc.v1.TextGeneration/GenerateStream", _registered_method=registered
            )
            with pytest.raises(grpc.RpcError) as err:
                list(stream(bad["/aigc.v1.TextGeneration/Generate"], timeout=10))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, registered
    with Client(front.target, timeout=30) as c:  # and the front end still serves
        assert c.generate_text("hi", model="echo-text").completions[0].text == "hi"


def test_unknown_model_is_not_found_and_counted_as_unknown(front: Front) -> None:
    unknown = {"modality": "image", "model": "unknown", "method": "Generate", "code": "NOT_FOUND"}
    before = requests_total(front, **unknown)
    with Client(front.target, timeout=30) as c, pytest.raises(grpc.RpcError) as err:
        c.generate_images(model="nope")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert requests_total(front, **unknown) == before + 1


def test_images_and_speech(front: Front) -> None:
    with Client(front.target, timeout=30) as c:
        imgs = c.generate_images(model="echo-image", count=3, seed=5, label="sneaker")
        assert len(imgs.images) == 3 and imgs.images[0].label == "sneaker"
        speech = c.synthesize("Hi there.", model="echo-audio")
        assert speech.audio[:4] == b"RIFF"
        chunks = list(c.stream_speech("One. Two.", model="echo-audio"))
        assert chunks[-1].last


def test_list_models_goes_through_the_call_wrapper(front: Front) -> None:
    listed = {"modality": "all", "model": "all", "method": "ListModels", "code": "OK"}
    before = requests_total(front, **listed)
    with Client(front.target, timeout=30) as c:
        models = c.list_models().models
        wanted = models_pb2.ListModelsRequest(modality=common_pb2.MODALITY_TEXT)
        text_only = c.stubs.models.ListModels(wanted).models
    echo = next(m for m in models if m.name == "echo-text")
    assert list(echo.aliases) == ["text-davinci-002"] and echo.ready
    assert [m.name for m in text_only] == ["echo-text"]
    assert requests_total(front, **listed) == before + 2


def test_cancelled_stream_cancels_the_model_call(front: Front) -> None:
    text = front.handles["echo-text"]
    before = text.stats["cancelled"]
    with Client(front.target, timeout=30) as c:
        stream = c.stream_text(" ".join(["w"] * 200), model="echo-text", max_tokens=200)
        next(stream)
        stream.cancel()  # type: ignore[attr-defined]

    assert front.loop.run(counted_cancel(text, before))
    front.loop.run(settle(front.handles))


def test_the_admission_state_of_each_model_is_on_metrics(front: Front) -> None:
    """Read from the gate at scrape time: bound, in-flight and queued cost, the learned rate."""
    gate = front.plane.admission.gates["echo-image"]
    samples = gate.samples
    with Client(front.target, timeout=30) as c:
        c.generate_images(model="echo-image", count=2)
    assert gate.samples == samples + 1  # the completion taught the rate
    assert front.metric("aigc_admission_rate_samples", model="echo-image") == gate.samples
    assert front.metric("aigc_admission_rate_cost_per_second", model="echo-image") == gate.rate
    assert front.metric("aigc_admission_bound_cost", model="echo-image") == gate.bound > 0
    assert front.metric("aigc_admission_inflight_cost", model="echo-image") == 0.0
    assert front.metric("aigc_admission_queued_requests", model="echo-image") == 0.0
    text = front.plane.admission.gates["echo-text"]
    with Client(front.target, timeout=30) as c:
        # 400 tokens at 10 ms each: still running when its first chunk arrives, however
        # loaded the machine (six tokens once finished first under a parallel test run)
        stream = c.stream_text("word " * 400, model="echo-text", max_tokens=400)
        next(iter(stream))  # admitted and running
        running = front.metric("aigc_admission_inflight_cost", model="echo-text")
        assert running == text.inflight > 0
        stream.cancel()
    for model in front.plane.admission.gates:  # one series per configured model, nothing else
        assert front.metric("aigc_admission_bound_cost", model=model) > 0


def test_auth_refusals_are_counted_as_the_http_front_end_counts_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The data plane authorizes both front ends: the same codes and the same metric labels
    (tests/unit/test_openai_api.py::test_auth_and_rate_limit checks HTTP's)."""
    key = "g" * 24
    monkeypatch.setenv("AIGC_TEST_GRPC_KEYS", f"bob:{key}")
    f = Front(
        security={"api_keys_env": "AIGC_TEST_GRPC_KEYS", "rate_limit_per_s": 0.001,
                   "rate_limit_burst": 1}
    )  # fmt: skip
    try:
        with Client(f.target) as anonymous, pytest.raises(grpc.RpcError) as err:
            anonymous.generate_text("hi", model="echo-text")
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with Client(f.target, api_key=key) as c:
            assert c.generate_text("hi", model="echo-text").completions[0].text == "hi"
            with pytest.raises(grpc.RpcError) as err:
                c.generate_text("hi", model="echo-text")
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        rejected = "aigc_rejected_requests_total"
        assert f.metric(rejected, reason="unauthenticated", protocol="grpc") == 1
        assert f.metric(rejected, reason="rate_limited", protocol="grpc") == 1
    finally:
        f.close()

"""Health, reflection, ListModels and the CLI against the real stack."""

from __future__ import annotations

import wave

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from aigc import cli
from aigc.v1 import common_pb2
from aigc.wire import MODELS_SERVICE, SERVICE_NAMES
from tests.conditions import wait_until

pytestmark = pytest.mark.integration


def test_health_overall_and_per_service(target):
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ["", *SERVICE_NAMES.values(), MODELS_SERVICE]:
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING, service
        err = None
        try:
            stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
        except grpc.RpcError as e:
            err = e
        assert err is not None and err.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_api(target):
    with grpc.insecure_channel(target) as channel:
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
    for name in [*SERVICE_NAMES.values(), MODELS_SERVICE, "grpc.health.v1.Health"]:
        assert name in services


def test_list_models_reports_every_model(client):
    # The stack is up once each modality has a ready model; others may still be starting, and
    # the gateway asks a model for its facts (device, parameters...) after it turns ready.
    def described() -> bool:
        return all(m.ready and m.device for m in client.list_models().models)

    assert wait_until(described, timeout_s=120)
    from tests.tiny_models import SMOLLM2_GGUF

    models = {m.name: m for m in client.list_models().models}
    gguf = {"gguf", "gguf-hermes"} if SMOLLM2_GGUF.is_dir() else set()
    assert set(models) == {
        "tiny",
        "echo-text",
        "slow-text",
        "shapes",
        "echo-image",
        "speech",
        "echo-audio",
        "shapes-video",
        "slow-video",
        *gguf,
    }
    assert all(m.ready for m in models.values())
    assert models["tiny"].modality == common_pb2.MODALITY_TEXT and models["tiny"].default
    assert models["tiny"].parameters > 0 and models["tiny"].engine == "transformers"
    assert models["tiny"].batching.max_batch_size == 8
    assert models["tiny"].scaling.max_ongoing_requests >= 8
    assert list(models["shapes"].labels) == ["circle", "square", "triangle"]
    video = models["shapes-video"]
    assert video.modality == common_pb2.MODALITY_VIDEO and video.default
    assert list(video.labels) == ["circle", "square", "triangle"]
    assert "heart" in models["speech"].voices
    assert models["speech"].license == "Apache-2.0"
    if gguf:
        assert models["gguf"].engine == "llamacpp" and models["gguf"].parameters > 100_000_000


def test_cli_commands(target, tmp_path, capsys):
    t = ["--target", target]
    assert cli.main(["text", "hello", "--stream", "--max-tokens", "8", *t]) == 0
    assert capsys.readouterr().out.strip()
    png = tmp_path / "x.png"
    assert cli.main(["image", "--count", "4", "-o", str(png), *t]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    files = tmp_path / "y.png"
    assert cli.main(["image", "--count", "2", "--no-grid", "-o", str(files), *t]) == 0
    assert (tmp_path / "y-0.png").exists() and (tmp_path / "y-1.png").exists()
    wav = tmp_path / "x.wav"
    assert cli.main(["audio", "Hello there", "-o", str(wav), *t]) == 0
    with wave.open(str(wav)) as w:
        assert w.getnframes() > 0
    streamed = tmp_path / "s.wav"
    assert cli.main(["audio", "One. Two.", "--stream", "-o", str(streamed), *t]) == 0
    with wave.open(str(streamed)) as w:
        assert w.getnframes() > 0
    assert cli.main(["models", *t]) == 0
    assert "shapes" in capsys.readouterr().out
    assert cli.main(["health", *t]) == 0
    assert cli.main(["text", "", *t]) == 2
    assert "INVALID_ARGUMENT" in capsys.readouterr().err

"""Engine registry: modality -> engine name -> its class ("module:Class") and options class.

Adding an engine is one entry here (and its options class in `core.options`); nothing else
branches on engine names. Engine modules are imported only when used, so the config (and the
CLI) can check engine names and options without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

from core import options as o


class EngineSpec(NamedTuple):
    target: str  # "module:Class", imported when a replica builds the engine
    options: type[o.EngineOptions]  # validates `models[].options` at config load


ENGINES: dict[str, dict[str, EngineSpec]] = {
    "text": {
        "transformers": EngineSpec(
            "services.text.transformers_engine:TransformersTextEngine", o.TransformersTextOptions
        ),
        "vllm": EngineSpec("services.text.vllm_engine:VllmTextEngine", o.VllmTextOptions),
        "llamacpp": EngineSpec(
            "services.text.llamacpp_engine:LlamaCppTextEngine", o.LlamaCppTextOptions
        ),
        "echo": EngineSpec("services.text.echo_engine:EchoTextEngine", o.EchoTextOptions),
    },
    "image": {
        "gan": EngineSpec("services.image.gan_engine:GanImageEngine", o.GanImageOptions),
        "vae": EngineSpec("services.image.vae_engine:VaeImageEngine", o.VaeImageOptions),
        "echo": EngineSpec("services.image.echo_engine:EchoImageEngine", o.EchoImageOptions),
    },
    "audio": {
        "hibari": EngineSpec(
            "services.audio.hibari_engine:HibariAudioEngine", o.HibariAudioOptions
        ),
        "vits": EngineSpec("services.audio.vits_engine:VitsAudioEngine", o.VitsAudioOptions),
        "echo": EngineSpec("services.audio.echo_engine:EchoAudioEngine", o.EchoAudioOptions),
    },
    "video": {
        "gan": EngineSpec("services.video.gan_engine:GanVideoEngine", o.GanVideoOptions),
        "echo": EngineSpec("services.video.echo_engine:EchoVideoEngine", o.EchoVideoOptions),
    },
}


# The Serve deployment class serving each modality (each implements its modality's protocol in
# core/replica.py: TextDeployment is a TextReplica).
REPLICAS: dict[str, str] = {
    "text": "services.text.deployment:TextDeployment",
    "image": "services.image.deployment:ImageDeployment",
    "audio": "services.audio.deployment:AudioDeployment",
    "video": "services.video.deployment:VideoDeployment",
}


def load_object(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def engine_class(modality: str, name: str) -> Any:
    return load_object(ENGINES[modality][name].target)


def options_class(modality: str, name: str) -> type[o.EngineOptions]:
    return ENGINES[modality][name].options

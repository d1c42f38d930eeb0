"""Engine registry: modality -> engine name -> "module:Class", imported only when used.

Adding an engine is one line here; nothing else branches on engine names. Kept free of heavy
imports so that the config (and the CLI) can validate engine names without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

ENGINES: dict[str, dict[str, str]] = {
    "text": {
        "transformers": "services.text.transformers_engine:TransformersTextEngine",
        "vllm": "services.text.vllm_engine:VllmTextEngine",
        "echo": "services.text.echo_engine:EchoTextEngine",
    },
    "image": {
        "gan": "services.image.gan_engine:GanImageEngine",
        "vae": "services.image.vae_engine:VaeImageEngine",
        "echo": "services.image.echo_engine:EchoImageEngine",
    },
    "audio": {
        "hibari": "services.audio.hibari_engine:HibariAudioEngine",
        "vits": "services.audio.vits_engine:VitsAudioEngine",
        "echo": "services.audio.echo_engine:EchoAudioEngine",
    },
}


# The Serve deployment class serving each modality.
REPLICAS: dict[str, str] = {
    "text": "services.text.deployment:TextReplica",
    "image": "services.image.deployment:ImageReplica",
    "audio": "services.audio.deployment:AudioReplica",
}


def load_object(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def engine_class(modality: str, name: str) -> Any:
    return load_object(ENGINES[modality][name])

"""What `/v1/models` says of each served model: OpenAI's fields, plus what a playground or
dashboard needs (state, engine, replicas, limits, labels, voices, image size), as vLLM adds
`root` and `max_model_len`."""

from __future__ import annotations

from typing import Any

from core.config import Modality, ModelConfig
from core.replica import ModelFacts
from gateway.dataplane import DataPlane
from gateway.registry import ModelState


def model_entries(plane: DataPlane, created: int) -> list[dict[str, Any]]:
    """One entry per served name (each alias too), in config order."""
    out = []
    for view in plane.models():
        m, st = view.config, view.state
        for served in (m.name, *m.aliases):
            out.append(
                {
                    "id": served,
                    "object": "model",
                    "created": created,
                    "owned_by": "aigc-serve",
                    "root": m.name,
                    "modality": m.modality.value,
                    "ready": st.ready,
                    "default": view.default,
                    # What a playground or dashboard shows; OpenAI clients ignore these.
                    "state": model_state(st),
                    "engine": m.engine,
                    "description": m.description,
                    "replicas": {
                        "running": st.running_replicas,
                        "starting": st.starting_replicas,
                        "min": m.scaling.min_replicas,
                        "max": m.scaling.max_replicas,
                    },
                    "limits": _limits(m),
                    **_shown_facts(view.facts),
                }
            )
    return out


def _shown_facts(facts: ModelFacts) -> dict[str, Any]:
    """The facts a playground needs to build a request form, where the model has them."""
    shown: dict[str, Any] = {"labels": list(facts.labels), "voices": list(facts.voices)}
    shown["image_size"] = facts.image_size
    return {k: v for k, v in shown.items() if v}


def model_state(st: ModelState) -> str:
    """ready: serving; starting: no replica serves yet but one is starting; unavailable."""
    if st.ready:
        return "ready"
    return "starting" if st.starting_replicas else "unavailable"


def _limits(m: ModelConfig) -> dict[str, int]:
    """The request limits of the model's modality (a request past one is refused with 400)."""
    lim = m.limits
    if m.modality == Modality.TEXT:
        return {"max_tokens": lim.max_tokens, "max_n": lim.max_n}
    if m.modality == Modality.IMAGE:
        return {"max_images": lim.max_images}
    return {"max_text_chars": lim.max_text_chars}

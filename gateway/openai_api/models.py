"""What `/v1/models` says of each served model: OpenAI's fields, plus what a playground or
dashboard needs (state, engine, replicas, limits, labels, voices, image size), as vLLM adds
`root` and `max_model_len`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from core.config import Modality, ModelConfig
from core.registry import options_class
from core.replica import ModelFacts
from gateway.dataplane import DataPlane
from gateway.registry import ModelState


class Replicas(BaseModel):
    running: int
    starting: int
    min: int
    max: int


class ModelEntry(BaseModel):
    """One entry of /v1/models: OpenAI's fields (id, object, created, owned_by), vLLM's `root`,
    then ours. labels, voices and image_size appear only where the model has them."""

    model_config = ConfigDict(extra="allow")  # the facts a model has (see _shown_facts)

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "aigc-serve"
    root: str
    modality: str
    ready: bool
    default: bool
    # What a playground or dashboard shows; OpenAI clients ignore these.
    state: str
    engine: str
    description: str
    replicas: Replicas
    limits: dict[str, int]


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelEntry]


def model_entries(plane: DataPlane, created: int) -> list[ModelEntry]:
    """One entry per served name (each alias too), in config order."""
    out = []
    for view in plane.models():
        m, st = view.config, view.state
        replicas = Replicas(
            running=st.running_replicas,
            starting=st.starting_replicas,
            min=m.scaling.min_replicas,
            max=m.scaling.max_replicas,
        )
        for served in (m.name, *m.aliases):
            out.append(
                ModelEntry(
                    id=served,
                    created=created,
                    root=m.name,
                    modality=m.modality.value,
                    ready=st.ready,
                    default=view.default,
                    state=model_state(st),
                    engine=m.engine,
                    description=m.description,
                    replicas=replicas,
                    limits=_limits(m),
                    **_shown_facts(view.facts),
                )
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
    if m.modality == Modality.VIDEO:
        options = options_class(m.modality.value, m.engine).model_validate(m.options)
        return {
            "min_seconds": int(getattr(options, "min_seconds", 1)),
            "max_seconds": int(getattr(options, "max_seconds", 1)),
            "fps": int(getattr(options, "fps", 1)),
            "max_prompt_chars": lim.max_prompt_chars,
        }
    return {"max_text_chars": lim.max_text_chars}

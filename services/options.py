"""Engine options (`models[].options`), one pydantic model per engine; torch-free, so config
loading can validate options without loading any model code."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EngineOptions(BaseModel):
    """Base of every engine's options: unknown keys are errors, values are read-only."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class VaeOptions(EngineOptions):
    """The conditional VAE image engine (`engine: vae`). It runs its decoder like a GAN's
    generator, so it takes the GAN engine's options, plus the latent sampling temperature."""

    temperature: float = Field(
        1.0,
        gt=0.0,
        le=4.0,
        description="Latent sampling temperature: z ~ N(0, temperature^2 I). Below 1 gives "
        "more typical, less varied images; above 1 more varied, less typical ones.",
    )
    max_forward_batch: int = Field(256, ge=1, description="Images per forward pass.")
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    compile: bool | Literal["default", "reduce-overhead", "max-autotune"] = False
    buckets: list[int] | None = None
    encode_threads: int = Field(2, ge=1)
    png_level: int = Field(1, ge=0, le=9)

"""Every engine's options (`models[].options` in the config), typed and documented.

Torch-free on purpose: `core.registry` names each engine's class here, so the config is checked
at load (a misspelt option fails naming its field path) without importing any engine. Engines
read their options as `self.options`, an instance of their class here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Dtype = Literal["float32", "float16", "bfloat16"]
Compile = Literal[False, True, "default", "reduce-overhead", "max-autotune"]


class EngineOptions(BaseModel):
    """Options every engine takes; the replica reads these, not the engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start_timeout_s: float = Field(
        900.0, gt=0, description="Seconds the replica waits for the model to load before failing."
    )


# ---- text ------------------------------------------------------------------------------------
class TextOptions(EngineOptions):
    default_max_tokens: int = Field(
        64, ge=1, description="Tokens generated when a request does not set max_tokens."
    )


class ModelTextOptions(TextOptions):
    """Text engines that run a real model, with a tokenizer and maybe a chat template."""

    prompt_format: Literal["raw", "chat"] = Field(
        "raw",
        description="How a plain prompt reaches the model: raw = as sent; chat = as one user "
        "message through the model's chat template (for instruction-tuned models).",
    )


class TransformersTextOptions(ModelTextOptions):
    """Hugging Face causal LMs (`services.text.transformers_engine`)."""

    dtype: Literal["auto", Dtype] = Field(
        "auto",
        description="Weights' dtype; auto = bfloat16 on CUDA, float32 on CPU. float16 needs CUDA.",
    )
    add_bos_token: bool = Field(
        False, description="Put the tokenizer's BOS token before a plain prompt (not chat)."
    )
    max_context: int | None = Field(
        None, ge=2, description="Prompt + generated tokens; default: the model's position limit."
    )


class VllmTextOptions(ModelTextOptions):
    """vLLM (`services.text.vllm_engine`, GPU)."""

    default_max_tokens: int = Field(
        256, ge=1, description="Tokens generated when a request does not set max_tokens."
    )
    engine_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Passed to vllm.AsyncEngineArgs as is (e.g. gpu_memory_utilization, "
        "max_model_len, dtype, tensor_parallel_size); vLLM checks them when the model loads.",
    )


class LlamaCppTextOptions(ModelTextOptions):
    """GGUF models through llama.cpp (`services.text.llamacpp_engine`, CPU): the file is served
    as it is, quantized weights included. One llama.cpp context holds every running sequence
    (`batching.max_batch_size` of them, one sequence id each); each step decodes one batch
    mixing their next tokens with newcomers' prompt chunks."""

    threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description="Threads llama.cpp computes with (decode and prompt); default: "
        "resources.torch_threads.",
    )
    context_per_sequence: int | None = Field(
        None,
        ge=16,
        description="Prompt + generated tokens one sequence may hold; default: the model's "
        "training context, at most 2048.",
    )
    kv_cells: int | None = Field(
        None,
        ge=16,
        description="KV cache cells shared by all sequences (unified cache); default: "
        "context_per_sequence x max_batch_size, so every sequence can reach its limit. A smaller "
        "cache saves memory: a sequence starts only when its prompt + max_tokens fit beside "
        "the others (it waits otherwise).",
    )
    batch_tokens: int = Field(
        512,
        ge=16,
        description="Most tokens in one decode call (running sequences' next tokens plus "
        "prompt chunks); longer prompts are prefilled over several steps.",
    )
    temperature: float = Field(
        0.0,
        ge=0,
        description="Sampling temperature when a request sets none (0 = greedy).",
    )
    prefix_cache: bool = Field(
        True,
        description="Keep a finished sequence's KV cells while its id is idle, and start a "
        "prompt that begins with the same tokens (the chat template's system prompt, an "
        "earlier turn of the conversation) from them instead of computing them again, as "
        "llama-server's prompt cache does. Cached cells are evicted first when space is needed.",
    )
    flash_attention: Literal["auto", "on", "off"] = Field(
        "auto", description="llama.cpp flash attention (auto: where the backend supports it)."
    )


class EchoTextOptions(TextOptions):
    """Model-free text engine that streams the prompt's words back (overhead measurements)."""

    delay_s: float = Field(
        0.0,
        ge=0,
        le=60,
        description="Pace: word k is due k x delay_s after the start (a model's steady decode).",
    )


# ---- image -----------------------------------------------------------------------------------
class GanImageOptions(EngineOptions):
    """GAN generators (`services.image.gan_engine`)."""

    max_forward_batch: int = Field(256, ge=1, description="Most images per forward pass.")
    dtype: Dtype = Field(
        "float32",
        description="Generator dtype (float16 needs CUDA). Latents are drawn in float32 from each "
        "seed whatever the dtype, so a seed gives the same picture up to rounding.",
    )
    compile: Compile = Field(
        False,
        description="torch.compile the generator: true = reduce-overhead (CUDA graphs) on CUDA, "
        "default on CPU; or a mode. Compiled passes are padded to a bucket (static shapes).",
    )
    buckets: list[int] | None = Field(
        None,
        min_length=1,
        description="Forward-pass sizes compiled at load (with compile); default: powers of two "
        "up to max_forward_batch. The largest must reach max_forward_batch.",
    )
    encode_threads: int = Field(2, ge=1, le=64, description="Threads encoding PNGs.")
    png_level: int = Field(1, ge=0, le=9, description="zlib compression level of PNGs.")

    @model_validator(mode="after")
    def _buckets_cover(self) -> GanImageOptions:
        if self.buckets is not None and (
            min(self.buckets) < 1 or max(self.buckets) < self.max_forward_batch
        ):
            raise ValueError("buckets must be positive and reach max_forward_batch")
        return self


class VaeImageOptions(GanImageOptions):
    """Conditional VAE decoders (`services.image.vae_engine`): run like a GAN generator, so the
    GAN engine's options, plus the latent sampling temperature."""

    temperature: float = Field(
        1.0,
        gt=0.0,
        le=4.0,
        description="Latent sampling temperature: eps ~ N(0, temperature^2 I), mapped "
        "through the label's fitted prior when the artifact has one. Below 1 gives more "
        "typical, less varied images; above 1 more varied, less typical ones.",
    )


class EchoImageOptions(EngineOptions):
    """Model-free image engine: a flat image whose colour comes from the seed."""

    size: int = Field(8, ge=1, le=4096, description="Width and height of the images.")
    labels: list[str] = Field(
        default_factory=list, description="Labels it accepts (to exercise label validation)."
    )
    delay_s: float = Field(
        0.0, ge=0, le=60, description="A batch takes at least this long, as a model would."
    )


# ---- audio -----------------------------------------------------------------------------------
class AudioOptions(EngineOptions):
    default_voice: str | None = Field(
        None, description="Voice used when a request names none; default: the first voice."
    )


class HibariAudioOptions(AudioOptions):
    """hibari-tts (`services.audio.hibari_engine`)."""

    voices: list[str] | None = Field(
        None, description="Voices to serve; default: every voice available offline."
    )
    workers: int = Field(1, ge=1, le=64, description="Threads running utterances in parallel.")


class VitsAudioOptions(AudioOptions):
    """Hugging Face VITS checkpoints (`services.audio.vits_engine`)."""

    noise_scale: float | None = Field(
        None,
        ge=0,
        description="Overrides the checkpoint's sampling noise; 0 (with noise_scale_duration 0) "
        "makes the output deterministic.",
    )
    noise_scale_duration: float | None = Field(
        None, ge=0, description="Overrides the checkpoint's duration noise."
    )
    max_forward_batch: int = Field(16, ge=1, description="Most utterances per forward pass.")
    dtype: Dtype = Field(
        "float32",
        description="float16 (CUDA) and bfloat16 run under autocast over float32 weights.",
    )


class EchoAudioOptions(AudioOptions):
    """Model-free speech engine: a tone whose length follows the text."""

    voices: list[str] = Field(
        default_factory=lambda: ["tone"], min_length=1, description="Voices it accepts."
    )
    seconds_per_char: float = Field(
        0.05, gt=0, le=10, description="Audio seconds per character of text."
    )


# ---- video -----------------------------------------------------------------------------------
class VideoOptions(EngineOptions):
    """What every video engine takes: the clip's frame rate, the lengths a request may ask
    for, and how the MP4 and the spritesheet are made."""

    fps: int = Field(8, ge=1, le=60, description="Frames per second of every clip.")
    min_seconds: int = Field(1, ge=1, le=600, description="Shortest clip a request may ask for.")
    max_seconds: int = Field(12, ge=1, le=600, description="Longest clip a request may ask for.")
    default_seconds: int = Field(4, ge=1, le=600, description="A request that names no length.")
    crf: int = Field(18, ge=0, le=51, description="x264's constant rate factor (0: lossless).")
    sprite_columns: int = Field(8, ge=1, le=64, description="Frames per row of the spritesheet.")
    sprite_frames: int = Field(32, ge=1, le=1024, description="Most frames in the spritesheet.")

    @model_validator(mode="after")
    def _range(self) -> VideoOptions:
        if not self.min_seconds <= self.default_seconds <= self.max_seconds:
            raise ValueError("need min_seconds <= default_seconds <= max_seconds")
        return self


class GanVideoOptions(VideoOptions):
    """Clips from a GAN generator (`services.video.gan_engine`): a walk through its latent
    space between seeded points (and, for a conditional model, between the labels the prompt
    names), at the generator's native size, encoded H.264 in MP4."""

    seconds_per_point: float = Field(
        1.0,
        gt=0,
        le=60,
        description="Seconds between two seeded points of an unconditional walk (a "
        "conditional walk spends the clip evenly on the labels the prompt names).",
    )
    max_forward_batch: int = Field(64, ge=1, description="Most frames per forward pass.")


class EchoVideoOptions(VideoOptions):
    """Model-free video engine: flat frames whose colour walks from the seed's."""

    size: int = Field(16, ge=2, le=1024, description="Width and height of the frames (even).")
    labels: list[str] = Field(
        default_factory=list, description="Labels it accepts (to exercise prompt reading)."
    )
    delay_s: float = Field(0.0, ge=0, le=60, description="Each second of clip takes this long.")

"""Video jobs, transport-neutral: what `/v1/videos` (gateway/openai_api/videos.py) and a gRPC
front end would share. A request is checked against its model before a job exists, each
refusal an InvalidArgument naming its field: `seconds` outside the model's range, a `size`
other than the model's native one, a prompt naming a label the model does not draw (the labels
listed), a narration too long or a voice the speech model lacks. The clip is made by the video
runner (gateway/jobs/video_runner.py) calling `make`: through the data plane, batch tier.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from core.config import JobsConfig, Modality, ModelConfig
from core.errors import InvalidArgument, NotFound, Unavailable
from core.options import VideoOptions
from core.registry import options_class
from core.types import AudioFormat, AudioRequest, Priority, VideoRequest, VideoResult
from core.video import read_labels
from gateway.dataplane import DataPlane
from gateway.jobs.store import new_id
from gateway.jobs.video_runner import VideoRunner
from gateway.jobs.videos import VARIANTS, VideoRecord, VideoStore


class VideoJobs:
    def __init__(
        self, config: JobsConfig, plane: DataPlane, store: VideoStore,
        runner: VideoRunner | None = None,
    ) -> None:  # fmt: skip
        self.config = config
        self.plane = plane
        self.store = store
        self.runner = runner

    async def create(self, body: dict[str, Any], source: VideoRecord | None = None) -> VideoRecord:
        """Checks a request against its model (each refusal naming its field) and queues its
        job. `body`: the fields as a client sent them (the wire's strings); `source`: the job
        a remix starts from (its model, length, seed and narration unless the body names
        others)."""
        name = body.get("model") or (source.model if source else "")
        if not isinstance(name, str):
            raise InvalidArgument("model must be a string", field="model")
        model = self.plane.registry.resolve(Modality.VIDEO, name)
        options = video_options(model)
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidArgument("prompt is required", field="prompt")
        most = model.limits.max_prompt_chars
        if len(prompt) > most:
            raise InvalidArgument(
                f"prompt has {len(prompt)} characters; the limit is {most}",
                field="prompt",
            )
        seconds = _seconds(body.get("seconds"), options, source)
        facts = self.plane.facts(model)
        if facts.image_size is None:
            raise Unavailable(f"model {model.name!r} is starting; try again shortly")
        native = f"{facts.image_size}x{facts.image_size}"
        size = body.get("size") or native
        if size != native:
            raise InvalidArgument(
                f"size must be {native} for model {model.name!r} (its native size), got {size!r}",
                field="size",
            )
        if facts.labels:
            read_labels(prompt, facts.labels, model.name)
        seed = _seed(body.get("seed"), source)
        narration, voice = self._narration(body, source)
        record = await asyncio.to_thread(
            self.store.create, model.name, prompt, seconds, native, seed,
            source.id if source else None, narration, voice,
        )  # fmt: skip
        if self.runner is not None:
            self.runner.wake()
        return record

    def _narration(
        self, body: dict[str, Any], source: VideoRecord | None
    ) -> tuple[str | None, str | None]:
        """`narration` (our extension): text the default speech model says as the clip's
        audio track, in `voice` (the model's default when none)."""
        text = body.get("narration")
        voice = body.get("voice") or (source.voice if source else None)
        if text in (None, ""):
            return (source.narration, voice) if source else (None, None)
        if not isinstance(text, str):
            raise InvalidArgument("narration must be a string", field="narration")
        if not self.plane.config.models_of(Modality.AUDIO):
            raise InvalidArgument("no speech model is served to say a narration", "narration")
        speech = self.plane.registry.resolve(Modality.AUDIO, "")
        if len(text) > speech.limits.max_text_chars:
            raise InvalidArgument(
                f"narration has {len(text)} characters; the limit is "
                f"{speech.limits.max_text_chars}",
                field="narration",
            )
        if voice is not None and not isinstance(voice, str):
            raise InvalidArgument("voice must be a string", field="voice")
        voices = self.plane.facts(speech).voices
        if voice and voices and voice not in voices:
            raise InvalidArgument(
                f"unknown voice {voice!r}; valid voices: {', '.join(voices)}", field="voice"
            )
        return text, voice

    async def get(self, video_id: str) -> VideoRecord:
        record = await asyncio.to_thread(self.store.get, video_id)
        if record is None:
            raise NotFound(f"no video with id {video_id!r}", field="video_id")
        return record

    async def delete(self, video_id: str) -> VideoRecord:
        """Removes the job and its files; a clip being made stops. The job as it was."""
        record = await asyncio.to_thread(self.store.delete, video_id)
        if record is None:
            raise NotFound(f"no video with id {video_id!r}", field="video_id")
        return record

    async def content(self, video_id: str, variant: str) -> bytes:
        """The MP4, thumbnail or spritesheet of a completed, unexpired job."""
        if variant not in VARIANTS:
            raise InvalidArgument(
                f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}", field="variant"
            )
        record = await self.get(video_id)
        if record.status != "completed":
            raise InvalidArgument(
                f"video {video_id} is {record.status}; its content is there once completed",
                field="video_id",
            )
        if record.expires_at is not None and time.time() >= record.expires_at:
            raise NotFound(f"the content of video {video_id} has expired", field="video_id")
        data = await asyncio.to_thread(self.store.content, record, variant)
        if data is None:
            raise NotFound(f"video {video_id} has no {variant}", field="variant")
        return data

    # ---- the runner's call ---------------------------------------------------------------
    async def make(self, job: VideoRecord, report: Callable[[int], Awaitable[None]]) -> VideoResult:
        """One clip through the data plane, on the batch tier, progress reported as it comes."""
        rid = new_id("video_req_")
        deadline = time.time() + self.config.video_timeout_s
        async with self.plane.call(
            "jobs", "/v1/videos", Modality.VIDEO, job.model, rid, deadline
        ) as call:
            model = self.plane.resolve(call, job.model)
            pcm, rate = await self._say(job, deadline) if job.narration else (b"", 0)
            request = VideoRequest(
                rid, model.name, job.prompt, job.seconds, seed=job.seed, deadline=deadline,
                priority=Priority.BATCH, narration=pcm, narration_rate=rate,
            )  # fmt: skip
            async for chunk in self.plane.stream_video(call, model, request):
                if chunk.result is not None:
                    return chunk.result
                await report(chunk.progress)
        raise Unavailable(f"model {job.model!r} ended the clip's stream without the clip")

    async def _say(self, job: VideoRecord, deadline: float) -> tuple[bytes, int]:
        """The narration as PCM16 mono, said by the default speech model."""
        rid = new_id("video_req_")
        async with self.plane.call(
            "jobs", "/v1/audio/speech", Modality.AUDIO, "", rid, deadline
        ) as call:
            speech = self.plane.resolve(call, "")
            said = await self.plane.synthesize(
                call, speech,
                AudioRequest(
                    rid, speech.name, job.narration or "", voice=job.voice, seed=job.seed,
                    format=AudioFormat.PCM16, deadline=deadline, priority=Priority.BATCH,
                ),
            )  # fmt: skip
        return said.audio, said.sample_rate


def video_options(model: ModelConfig) -> VideoOptions:
    options = options_class(model.modality.value, model.engine).model_validate(model.options)
    assert isinstance(options, VideoOptions)
    return options


def _seconds(raw: Any, options: VideoOptions, source: VideoRecord | None) -> int:
    if raw in (None, ""):
        return source.seconds if source else options.default_seconds
    text = str(raw).strip()
    if isinstance(raw, bool) or not text.isdigit():
        raise InvalidArgument(f"seconds must be a whole number, got {raw!r}", field="seconds")
    seconds = int(text)
    if not options.min_seconds <= seconds <= options.max_seconds:
        raise InvalidArgument(
            f"seconds must be {options.min_seconds} to {options.max_seconds} for this model, "
            f"got {seconds}",
            field="seconds",
        )
    return seconds


def _seed(raw: Any, source: VideoRecord | None) -> int:
    if raw in (None, ""):
        return source.seed if source else secrets.randbits(63)
    text = str(raw).strip()
    if isinstance(raw, bool) or not text.isdigit() or int(text) >= 2**63:
        raise InvalidArgument(f"seed must be 0 to 2^63-1, got {raw!r}", field="seed")
    return int(text)

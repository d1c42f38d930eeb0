"""How big a model's work is, per modality: the one policy that admission (gateway/admission.py)
counts in and config validation (core/model_config.py) checks against.

Work is counted in cost units: text in tokens, images in images, audio in characters / 100,
video in seconds of clip.
A replica's capacity is counted in batch slots: requests (text: sequences; audio: utterances),
or images where the model's batcher counts images (`batch_counts_cost`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from core.types import AudioRequest, ImageRequest, TextRequest, VideoRequest

if TYPE_CHECKING:
    from core.model_config import ModelConfig

TYPICAL_TEXT_TOKENS = 64


def cost_of(request: TextRequest | ImageRequest | AudioRequest | VideoRequest) -> float:
    """Text: tokens asked for (n x max_tokens, default 64) + prompt chars / 4; image: images;
    audio: characters / 100; video: seconds of clip. Only consistency matters: the rate is
    learned in the same units."""
    if isinstance(request, TextRequest):
        chars = len(request.prompt or "") + sum(len(m.content) for m in request.messages)
        return request.n * (request.max_tokens or TYPICAL_TEXT_TOKENS) + chars / 4
    if isinstance(request, ImageRequest):
        return float(request.count)
    if isinstance(request, VideoRequest):
        return float(max(1, request.seconds))
    return float(max(1, math.ceil(len(request.text) / 100)))


def typical_cost(model: ModelConfig) -> float:
    """The cost of a request before any was seen: 64 tokens of text, one image or one line."""
    return float(TYPICAL_TEXT_TOKENS) if model.modality.value == "text" else 1.0


def batch_counts_cost(model: ModelConfig) -> bool:
    """Whether the model's batches are sized in cost units rather than requests: an image
    replica's batcher counts images (services/image/deployment.py), which is the image cost, so
    a batch of 64 holds 8 requests of 8 images. Text batches sequences, audio requests."""
    return model.modality.value == "image"


def admission_step(model: ModelConfig) -> float:
    """Slots that free up at once at a replica, so that admission's queue drains in such steps:
    a text engine batches continuously (a finished sequence's slot is refilled at the next
    decode step), so one; image and audio replicas run whole batches."""
    return 1.0 if model.modality.value == "text" else float(model.batching.max_batch_size)


def batch_slots(model: ModelConfig) -> float:
    """Batch slots the in-flight bound allows one replica: `inflight_batches` batches of every
    concurrent batch slot."""
    b = model.batching
    return model.admission.inflight_batches * b.max_batch_size * b.max_concurrent_batches


def serve_requests_per_replica(model: ModelConfig) -> float:
    """Requests the gateway lets reach one replica at most (the rest wait in its admission
    queue): the batch slots, capped by what the replica accepts (max_ongoing_requests). All
    that Serve's autoscaler ever sees of the model, per replica."""
    return min(batch_slots(model), float(model.max_ongoing_requests))


def requests_per_replica(model: ModelConfig) -> float:
    """The in-flight bound per replica in admission's slots: requests (text: sequences), or
    images where `batch_counts_cost` (the request cap then applies in the gate, in requests)."""
    if batch_counts_cost(model):
        return float(batch_slots(model))
    return float(serve_requests_per_replica(model))


def inflight_requests_per_replica(model: ModelConfig, request_cost: float) -> int:
    """Requests of `request_cost` each that one replica's share of the in-flight bound holds
    (what a closed loop needs to keep its batches full without queueing at the gate)."""
    slots = requests_per_replica(model)
    if batch_counts_cost(model):
        return max(1, min(int(slots // request_cost), model.max_ongoing_requests))
    return max(1, int(slots))

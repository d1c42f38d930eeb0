"""Names the client and the gateway share on the wire: the aigc.v1 gRPC services (as
grpc.health.v1 reports them), the Batch API's, and the admission tiers a request may name.

Only generated protobuf modules are imported, so the gateway, the control plane's
Kubernetes checks and the SDK all read these from one place.
"""

from __future__ import annotations

from google.longrunning import operations_pb2

from aigc.v1 import (
    audio_pb2,
    batches_pb2,
    common_pb2,
    image_pb2,
    models_pb2,
    text_pb2,
    video_pb2,
)

# Modality -> its generation service's full name.
SERVICE_NAMES: dict[str, str] = {
    "text": text_pb2.DESCRIPTOR.services_by_name["TextGeneration"].full_name,
    "image": image_pb2.DESCRIPTOR.services_by_name["ImageGeneration"].full_name,
    "audio": audio_pb2.DESCRIPTOR.services_by_name["AudioSynthesis"].full_name,
    "video": video_pb2.DESCRIPTOR.services_by_name["VideoGeneration"].full_name,
}
MODELS_SERVICE = models_pb2.DESCRIPTOR.services_by_name["Models"].full_name
# The Batch API (where the gateway has a job store): a batch is a google.longrunning operation.
BATCHES_SERVICE = batches_pb2.DESCRIPTOR.services_by_name["Batches"].full_name
OPERATIONS_SERVICE = operations_pb2.DESCRIPTOR.services_by_name["Operations"].full_name
# A batch's google.longrunning Operation is named OPERATION_PREFIX + the batch id.
OPERATION_PREFIX = "operations/"
# What a batch's lines may call (its `endpoint`), on both front ends.
BATCH_ENDPOINTS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/images/generations",
    "/v1/audio/speech",  # our extension: the audio, base64, in the line's body
)
# Services the gateway reports in grpc.health.v1 (besides "" for the whole server).
HEALTH_SERVICES = (*SERVICE_NAMES.values(), MODELS_SERVICE)

# Admission tier name -> its aigc.v1.Priority value. PRIORITY_UNSPECIFIED means "interactive".
TIERS: dict[str, int] = {
    "interactive": common_pb2.PRIORITY_INTERACTIVE,
    "batch": common_pb2.PRIORITY_BATCH,
}
PRIORITIES = tuple(TIERS)

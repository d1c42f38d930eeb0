"""What the load generator sends: a weighted mix of (modality, model, streaming) items.

`--workload text:fortune,weight=3,stream=true,max_tokens=64 --workload image:faces,count=4`
Request i is built from its own seeded RNG, so a run's requests do not depend on timing.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aigc.client import image_request, speech_request, text_request
from aigc.v1 import common_pb2

MODALITIES = ("text", "image", "audio")
# --priority: the tier each request carries (aigc.v1.Priority); mix = 50/50 at random.
PRIORITIES = ("interactive", "batch", "mix")
_PRIORITY_PROTO = {
    "interactive": common_pb2.PRIORITY_INTERACTIVE,
    "batch": common_pb2.PRIORITY_BATCH,
}
# Streaming is the default where the API has a stream (text, audio); images are unary only.
_STREAMS = {"text": True, "image": False, "audio": True}
_WORDS = (
    "time light river stone city voice garden winter morning song quiet mountain letter "
    "window ocean friend story paper dream fire road night summer forest bird memory "
    "question answer simple strange little great old new bright dark warm cold early late"
).split()


@dataclass(frozen=True)
class WorkItem:
    modality: str
    model: str = ""  # empty: the server's default model of the modality
    weight: float = 1.0
    stream: bool = True
    max_tokens: int | None = None  # text
    count: int = 1  # images per image request
    prompt_words: int = 12  # synthetic prompt length (text), words (audio)

    @property
    def method(self) -> str:
        if self.modality == "text":
            return "GenerateStream" if self.stream else "Generate"
        if self.modality == "audio":
            return "SynthesizeStream" if self.stream else "Synthesize"
        return "Generate"


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected a boolean, got {value!r}")


def parse_item(spec: str) -> WorkItem:
    """`MODALITY[:MODEL][,key=value...]`; keys: weight, stream, max_tokens, count, prompt_words."""
    head, *pairs = [p.strip() for p in spec.split(",") if p.strip()]
    modality, _, model = head.partition(":")
    if modality not in MODALITIES:
        raise ValueError(f"workload {spec!r}: modality must be one of {', '.join(MODALITIES)}")
    item = WorkItem(modality=modality, model=model, stream=_STREAMS[modality])
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"workload {spec!r}: expected key=value, got {pair!r}")
        if key == "weight":
            item = replace(item, weight=float(value))
        elif key == "stream":
            item = replace(item, stream=_bool(value))
        elif key == "max_tokens":
            item = replace(item, max_tokens=int(value))
        elif key == "count":
            item = replace(item, count=int(value))
        elif key == "prompt_words":
            item = replace(item, prompt_words=int(value))
        else:
            raise ValueError(f"workload {spec!r}: unknown key {key!r}")
    if item.weight <= 0:
        raise ValueError(f"workload {spec!r}: weight must be positive")
    if item.modality == "image" and item.stream:
        raise ValueError(f"workload {spec!r}: image generation has no streaming call")
    return item


def load_prompts(path: str | Path) -> list[str]:
    """One prompt per line, or JSON lines with a "prompt" (or "text") field."""
    prompts = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            data = json.loads(line)
            line = str(data.get("prompt") or data.get("text") or "").strip()
        if line:
            prompts.append(line)
    if not prompts:
        raise ValueError(f"{path}: no prompts")
    return prompts


def synthetic_prompt(rng: random.Random, words: int) -> str:
    """English-looking words: tokenizers see ordinary text, not random bytes."""
    text = " ".join(rng.choice(_WORDS) for _ in range(max(1, words)))
    return text[0].upper() + text[1:] + "."


@dataclass(frozen=True)
class PlannedRequest:
    index: int
    item: WorkItem
    request: Any  # the protobuf request
    priority: str = "interactive"  # interactive | batch


class Workload:
    def __init__(
        self,
        items: list[WorkItem],
        seed: int = 0,
        prompts: list[str] | None = None,
        priority: str = "interactive",
    ) -> None:
        if not items:
            raise ValueError("a workload needs at least one item")
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
        self.priority = priority
        self.items = items
        self.seed = seed
        self.prompts = prompts
        self.weights = [i.weight for i in items]

    def request(self, index: int) -> PlannedRequest:
        rng = random.Random(self.seed * 1_000_003 + index)
        item = rng.choices(self.items, self.weights)[0]
        text = (
            rng.choice(self.prompts) if self.prompts else synthetic_prompt(rng, item.prompt_words)
        )
        seed = rng.getrandbits(32)
        if item.modality == "text":
            req: Any = text_request(text, model=item.model, max_tokens=item.max_tokens, seed=seed)
        elif item.modality == "image":
            req = image_request(model=item.model, count=item.count, seed=seed)
        else:
            req = speech_request(text, model=item.model, seed=seed, pcm16=item.stream)
        # Drawn last, so that --priority leaves every other field of request i unchanged.
        tier = self.priority
        if tier == "mix":
            tier = "batch" if rng.random() < 0.5 else "interactive"
        req.priority = _PRIORITY_PROTO[tier]
        return PlannedRequest(index, item, req, tier)

"""Reading a video prompt: the labels a conditional model's clip passes through, in order.

"a sneaker turning into a bag" is two parts joined by a turn ("turning into", "into", "to",
"then", "becoming", "->", a comma); each part must name one of the model's labels (a plural,
and spaces for hyphens, are accepted: "ankle boots"). A part that names none is refused,
listing the labels, so a prompt the model cannot read is a 400, not a clip of something else.
The gateway reads the prompt when a job is created (a bad one is refused at once) and the
engine reads it again when it runs.
"""

from __future__ import annotations

import re

from core.errors import InvalidArgument

_TURNS = re.compile(
    r"\s*(?:->|→|,|;|\bturning\s+into\b|\bturns\s+into\b|\bmorphing\s+into\b|\bmorphs\s+into\b"
    r"|\bbecoming\b|\bbecomes\b|\bthen\b|\binto\b|\bto\b|\band\b)\s*",
    re.IGNORECASE,
)
_FILLER = re.compile(r"^(?:(?:a|an|the|one|some|from)\s+)+", re.IGNORECASE)


def _forms(label: str) -> list[str]:
    base = label.lower()
    spaced = re.sub(r"[-_]+", " ", base)
    joined = re.sub(r"[-_ ]+", "", base)
    return sorted({base, spaced, joined}, key=len, reverse=True)


def _label_of(part: str, labels: tuple[str, ...]) -> str | None:
    text = " ".join(part.lower().split())
    # longest first: "t-shirt" is read before "shirt" could match inside it
    for label in sorted(labels, key=lambda x: len(x), reverse=True):
        for form in _forms(label):
            if re.search(rf"(?<![a-z0-9]){re.escape(form)}(?:s|es)?(?![a-z0-9])", text):
                return label
    return None


def read_labels(prompt: str, labels: tuple[str, ...], model: str = "") -> tuple[str, ...]:
    """The labels `prompt` names, in order (at least one). Raises InvalidArgument (field
    `prompt`) naming the part it cannot read and listing `labels`."""
    parts = [_FILLER.sub("", p.strip(" .!?")).strip() for p in _TURNS.split(prompt)]
    parts = [p for p in parts if p]
    valid = ", ".join(labels)
    if not parts:
        raise InvalidArgument(
            f"the prompt names no label of model {model!r}; valid labels: {valid}", field="prompt"
        )
    found: list[str] = []
    for part in parts:
        label = _label_of(part, labels)
        if label is None:
            raise InvalidArgument(
                f"unknown label {part!r} in the prompt for model {model!r}; valid labels: "
                f"{valid} (for example: 'a {labels[0]} turning into a {labels[-1]}')",
                field="prompt",
            )
        found.append(label)
    return tuple(found)

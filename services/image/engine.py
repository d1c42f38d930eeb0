"""The image engine protocol: a batch of requests in, one result (or error) per request out."""

from __future__ import annotations

import abc
from dataclasses import replace

from core.errors import InvalidArgument
from core.replica import ModelFacts
from core.types import ImageRequest, ImageResult
from services.engine import Engine


class ImageEngine(Engine):
    labels: tuple[str, ...] = ()

    def validate(self, request: ImageRequest) -> None:
        """Checks what only the model knows (its labels) before a request joins a batch."""
        if not request.label:
            return
        if not self.labels:
            raise InvalidArgument(
                f"model {self.config.name!r} is unconditional; leave label empty", field="label"
            )
        if request.label not in self.labels:
            raise InvalidArgument(
                f"unknown label {request.label!r} for model {self.config.name!r}; "
                f"valid labels: {', '.join(self.labels)}",
                field="label",
            )

    @abc.abstractmethod
    async def generate_batch(self, requests: list[ImageRequest]) -> list[ImageResult | Exception]:
        """All images of all requests, generated together; one result per request, in order
        (a failure of the forward pass fails the whole batch: it raises)."""

    def facts(self) -> ModelFacts:
        return replace(super().facts(), labels=self.labels)

"""Weights that `make assets` fetches (the default models' own: SmolLM2's GGUF for the llamacpp
engine, the faces GAN). `make unit`, `make integration` and `make test` run `make assets`
first, so a test that needs one fails when it is missing, naming the step; it does not skip."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def require_asset(path: Path, step: str = "make assets") -> None:
    """Fails the calling test (or fixture) when `path` is missing, naming the step that fetches
    it."""
    if not path.exists():
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        pytest.fail(f"{shown} missing: run `{step}` (it fetches the default models' weights)",
                    pytrace=False)  # fmt: skip

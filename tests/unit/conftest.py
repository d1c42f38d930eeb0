"""Fixtures the unit tests of more than one module share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.tiny_models import make_text_model


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_dir: Path) -> Any:
    """The tiny text model's tokenizer (transformers), whose chat template a test may set."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(make_text_model(tiny_dir / "tiny-text"))

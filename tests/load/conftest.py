"""Load-test helpers. The stack itself is the project's one per-session `stack` fixture
(tests/conftest.py); nothing here starts a second one."""

from __future__ import annotations

import pytest

from aigc.client import Client


@pytest.fixture(scope="session")
def served_workload(stack) -> list[str]:  # type: ignore[no-untyped-def]
    """One workload item per modality the stack serves, on its default models."""
    with Client(f"127.0.0.1:{stack.gateway.port}", timeout=30) as client:
        models = client.list_models().models
    modalities = {m.modality for m in models}
    items = []
    if 1 in modalities:  # MODALITY_TEXT
        items += ["text,stream=true,max_tokens=8,weight=2", "text,stream=false,max_tokens=4"]
    if 2 in modalities:
        items.append("image,count=2")
    if 3 in modalities:
        items += ["audio,stream=true,prompt_words=4", "audio,stream=false,prompt_words=4"]
    assert items, "the stack serves no model"
    return items

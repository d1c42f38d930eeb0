"""The vllm-cpu tier (`make test-vllm`): one local stack whose smollm2 runs on `engine: vllm`,
vLLM's real engine (vllm-cpu 0.32.0, float32 on CPU), started once per session.

Without vLLM installed (the main venv, `make test`) every test here is skipped, with the reason;
`make test-vllm` sets AIGC_REQUIRE_VLLM=1, so there a missing vLLM or missing weights fail."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from load_tests.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "vllm-cpu.yaml"
WEIGHTS = ROOT / "models" / "smollm2"
REQUIRED = os.environ.get("AIGC_REQUIRE_VLLM") == "1"


def why_not() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed here: the vllm-cpu tier runs with `make test-vllm`"
    if not (WEIGHTS / "config.json").exists():
        return "models/smollm2 is missing (make assets-transformers)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = why_not()
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.vllm)
            if reason and not REQUIRED:
                item.add_marker(pytest.mark.skip(reason=reason))


def vllm_stack_config() -> dict[str, Any]:
    """configs/vllm-cpu.yaml's smollm2 on free ports (the file's gateway and Ray settings
    otherwise)."""
    import yaml

    data = yaml.safe_load(CONFIG.read_text())
    data["gateway"].update(port=0, metrics_port=0, http_port=0)
    data["ray"]["metrics_export_port"] = free_port()
    data["ray"]["namespace"] = "aigc-test-vllm"
    return data


@pytest.fixture(scope="session")
def vllm_stack() -> Iterator[Any]:
    reason = why_not()
    if reason:
        pytest.fail(f"the vllm-cpu tier cannot run: {reason}")
    from core.config import parse_config
    from tests.conftest import started_stack

    data = vllm_stack_config()
    config = parse_config(data, source=str(CONFIG), base_dir=CONFIG.parent)
    with started_stack(config, data["ray"]["metrics_export_port"], ready_s=900) as local:
        yield local


@pytest.fixture(scope="session")
def vtarget(vllm_stack: Any) -> str:
    return f"127.0.0.1:{vllm_stack.gateway.port}"


@pytest.fixture()
def vclient(vtarget: str) -> Iterator[Any]:
    from aigc import Client

    with Client(vtarget, timeout=120) as c:
        yield c


@pytest.fixture()
def oai(vllm_stack: Any) -> Any:
    import openai

    base = f"http://127.0.0.1:{vllm_stack.gateway.http_port}/v1"
    return openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=120)

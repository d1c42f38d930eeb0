#!/usr/bin/env bash
# Fetches the cp312 wheels that scripts/gpu_check.py needs on the GPU machine and is missing
# there, and lays them out for two back-to-back device `run` calls (docs/gpu.md):
#
#   .whl-ray-a/  call 1: first part of the Ray wheel (bytes, not a loadable wheel)
#   .whl-ray-b/  call 2: second part of the Ray wheel and its sha256
#   .whl/        call 2: every other wheel (loadable)
#   .whl-src/    here only (never carried): the Ray wheel as downloaded, and as carried
#
# Idempotent: wheels already present are not fetched again, wheels no longer listed are removed,
# the Ray parts are re-cut each run. Prints each call's size and fails if one is over 64 MiB.
#
# The Ray wheel travels without ray/jars/ (a 32 MB Java-only jar): Ray runs without it (it
# starts Java workers only when that folder exists and `java` is on PATH), and with it the
# set does not fit in two calls beside models/faces.
#
#   scripts/device_wheels.sh            # fetch, cut, check
#   PYTHON=python3.11 scripts/device_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LIMIT=$((64 * 1024 * 1024))
SLACK=$((512 * 1024)) # files added before the run (notes, logs): keep this much free per call

RAY=ray==2.60.0
# The versions are those of the project's tested CPU environment (make venv). The GPU image
# (docs/gpu.md) already has torch, numpy, safetensors, tokenizers 0.23.2, huggingface-hub
# 1.33.0, onnxruntime, click, filelock, msgpack, packaging, pyyaml, requests, aiohttp, anyio,
# h11, uvloop, jinja2, prometheus-client, typer, regex, tqdm: those are not carried.
PKGS=(
  # gRPC and protobuf at the versions the generated stubs (aigc/v1/*_pb2*.py) were made with
  protobuf==7.36.2
  grpcio==1.85.3
  grpcio-health-checking==1.85.1
  grpcio-reflection==1.85.1
  grpcio-status==1.85.3
  googleapis-common-protos==1.76.0 # grpcio-status
  # transformers >= 5.20 (pyproject); the image has 5.17.0. Its huggingface-hub (>=1.31,<3)
  # and tokenizers (>=0.23.1,<0.24) needs are met by the image's 1.33.0 and 0.23.2.
  transformers==5.24.0
  # pydantic (core.config, Ray Serve); not in the image
  pydantic==2.14.4
  pydantic-core==2.50.5
  annotated-types==0.8.0
  typing-inspection==0.4.5
  typing-extensions==4.16.0 # pydantic needs >=4.16.0; the image's version is unknown
  # Ray's own requirements that the image lacks
  jsonschema==4.26.0
  jsonschema-specifications==2025.9.1
  referencing==0.37.0
  rpds-py==2026.9.1
  # ray[serve]: `from ray import serve` imports fastapi, which imports opentelemetry (the API
  # only), starlette and uvicorn. Ray runs "minimal" without the rest of ray[serve]
  # (opencensus, opentelemetry-sdk/-exporter-prometheus, aiohttp-cors, ...): its dashboard
  # agent then exports no Ray metrics, which gpu_check.py does not read.
  fastapi==0.165.0
  opentelemetry-api==1.45.2
  starlette==1.10.0
  uvicorn==0.54.0
)

PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

WHL=.whl RAY_A=.whl-ray-a RAY_B=.whl-ray-b SRC=.whl-src

# Gitignored paths can still be named in `carry`; untracked ones that are not ignored would
# travel in every call.
exclude=$(git rev-parse --git-path info/exclude)
if ! grep -qxF '/.whl*/' "$exclude" 2>/dev/null; then
  mkdir -p "$(dirname "$exclude")"
  echo '/.whl*/' >>"$exclude"
  echo "added /.whl*/ to $exclude"
fi

# wheel file name prefix of NAME==VERSION: lower case, runs of -_. as _
prefix() { local n=${1%%==*} v=${1#*==}; n=$(echo "$n" | tr 'A-Z' 'a-z' | sed -E 's/[-_.]+/_/g'); echo "$n-$v-"; }

fetch() { # fetch SPEC DIR: download unless a wheel of that name and version is there
  local spec=$1 dir=$2 p n
  p=$(prefix "$spec")
  if compgen -G "$dir/$p*.whl" >/dev/null; then return; fi
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${PLATFORMS[@]}" -d "$dir" "$spec" && return
  for n in 24 31 34 35 39; do # pip matches manylinux_2_N exactly
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform "manylinux_2_${n}_x86_64" -d "$dir" "$spec" && return
  done
  echo "no cp312 x86-64 wheel for $spec" >&2
  return 1
}

mkdir -p "$WHL" "$RAY_A" "$RAY_B" "$SRC"
want=()
for spec in "${PKGS[@]}"; do
  fetch "$spec" "$WHL"
  want+=("$(prefix "$spec")")
done
for f in "$WHL"/*.whl; do # drop wheels no longer listed (one version of each package)
  base=$(basename "$f" | tr 'A-Z' 'a-z')
  keep=0
  for p in "${want[@]}"; do [[ $base == "$p"* ]] && keep=1; done
  if ((!keep)); then
    echo "removing $f (not listed)"
    rm -f "$f"
  fi
done

# Ray: download, drop ray/jars/ (and its RECORD lines), then cut the bytes in two.
fetch "$RAY" "$SRC"
orig=$(ls "$SRC/$(prefix "$RAY")"*.whl | head -1)
name=$(basename "$orig")
carried="$SRC/carried-$name"
if [[ ! -f $carried || $carried -ot $orig ]]; then
  "$PY" - "$orig" "$carried" <<'EOF'
import sys, zipfile
src, dst = sys.argv[1:]
drop = "ray/jars/"
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst + ".tmp", "w") as zout:
    for info in zin.infolist():
        if info.filename.startswith(drop):
            continue
        data = zin.read(info)
        if info.filename.endswith(".dist-info/RECORD"):
            lines = data.decode().splitlines(keepends=True)
            data = "".join(l for l in lines if not l.startswith(drop)).encode()
        zout.writestr(info, data, compress_type=info.compress_type)
import os
os.replace(dst + ".tmp", dst)
EOF
fi

bytes() { du -sb --apparent-size "$@" 2>/dev/null | awk '{s += $1} END {print s + 0}'; }
mib() { awk -v b="$1" 'BEGIN {printf "%6.2f MiB", b / 1048576}'; }

# What travels in every call: tracked files and untracked ones that are not ignored.
tree=$( (git ls-files -z --cached --others --exclude-standard |
  xargs -0 -r stat -c %s -- 2>/dev/null || true) | awk '{s += $1} END {print s + 0}')
faces=0
if [[ -f models/faces/model.safetensors ]]; then
  faces=$(bytes models/faces)
else
  echo "WARNING: models/faces/ is missing (make assets); gpu_check.py then uses random weights" \
    "and skips the served image model" >&2
fi
whl=$(bytes "$WHL")
ray=$(stat -c %s "$carried")
# Cut so that both calls have the same headroom: faces + a == whl + (ray - a).
a=$(((whl + ray - faces) / 2))
((a < 1)) && a=1
((a >= ray)) && a=$((ray - 1))
rm -f "$RAY_A"/* "$RAY_B"/* "$SRC"/ray.whl.part-*
split -b "$a" -d -a 2 "$carried" "$SRC/ray.whl.part-"
mv "$SRC/ray.whl.part-00" "$RAY_A/"
mv "$SRC/ray.whl.part-01" "$RAY_B/"
(cd "$SRC" && sha256sum "carried-$name" | sed "s/carried-//") >"$RAY_B/ray.whl.sha256"
if compgen -G "$SRC/ray.whl.part-*" >/dev/null; then
  echo "split made more than two parts" >&2
  exit 1
fi

call1=$((tree + $(bytes "$RAY_A") + faces))
call2=$((tree + $(bytes "$RAY_B") + whl))
echo
echo "ray wheel as downloaded $(mib "$(stat -c %s "$orig")")  as carried (no ray/jars) $(mib "$ray")"
printf '%-14s %s  (%s files)\n' "$WHL" "$(mib "$whl")" "$(ls "$WHL" | wc -l)"
ls -l "$WHL" | awk 'NR > 1 {printf "    %9d  %s\n", $5, $9}'
printf '%-14s %s\n' "$RAY_A" "$(mib "$(bytes "$RAY_A")")" "$RAY_B" "$(mib "$(bytes "$RAY_B")")" \
  "models/faces" "$(mib "$faces")" "working tree" "$(mib "$tree")"
echo "call 1: carry [\"$RAY_A\", \"models/faces\"]                $(mib "$call1") of 64 MiB"
echo "call 2: carry [\"$RAY_B\", \"$WHL\"]                      $(mib "$call2") of 64 MiB"
ok=1
for c in "$call1" "$call2"; do ((c + SLACK > LIMIT)) && ok=0; done
if ((!ok)); then
  echo "OVER the 64 MiB a call (with $(mib $SLACK) slack): carry less" >&2
  exit 1
fi
echo "both calls fit (each with at least $(mib $SLACK) to spare)"

"""Native builds from the pinned llama-cpp-python sdist, made once per machine and cached.

- ``wheel``: the llama-cpp-python wheel (llama.cpp compiled for this CPU, ``GGML_NATIVE``),
  which ``make venv`` installs with ``--only-binary``: a fresh clone on a machine that built it
  once (CI included) installs it in seconds instead of compiling for about 7 minutes.
- ``server``: ``llama-server`` from the llama.cpp source inside the same sdist, for the
  side-by-side LLM benchmark (``python -m load_tests.llm``): the same kernels as our engine.

The cache lives outside the clone (``$AIGC_CACHE``, default ``~/.cache/aigc-serve``), keyed by
version, Python, machine and the CPU features the native build depends on. Each build goes to
a temporary folder and is moved into place when complete, so an interrupted build never looks
done. Prints the folder holding the result.

    python scripts/native_builds.py wheel     # -> folder with llama_cpp_python-*.whl
    python scripts/native_builds.py server    # -> folder with bin/llama-server
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "demo_models"))
from wheels import sha256

VERSION = "0.3.36"
SDIST = f"llama_cpp_python-{VERSION}.tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
# llava/mtmd (images) is not served: skipping it saves a third of the build.
WHEEL_CMAKE_ARGS = "-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF"
SERVER_CMAKE_ARGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # would download the web UI
]
CPU_FLAGS = ("avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512bw", "avx512_vnni", "amx_tile")


def cache_root() -> Path:
    return Path(os.environ.get("AIGC_CACHE", Path.home() / ".cache" / "aigc-serve"))


def machine_key() -> str:
    """Python, machine and the CPU features a GGML_NATIVE build compiles for."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    features = ",".join(f for f in CPU_FLAGS if f in flags)
    digest = hashlib.sha256(f"{platform.machine()} {features}".encode()).hexdigest()[:10]
    return f"{tag}-{platform.machine()}-{digest}"


def fetch_sdist(dest: Path) -> Path:
    """The pinned sdist (pip download, sha256 checked), kept beside the builds."""
    path = dest / SDIST
    if path.exists() and sha256(path) == SDIST_SHA256:
        return path
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"llama-cpp-python=={VERSION}",
                "-d",
                tmp,
            ],
            check=True,
        )
        got = Path(tmp) / SDIST
        if sha256(got) != SDIST_SHA256:
            raise SystemExit(f"{SDIST}: sha256 {sha256(got)}, expected {SDIST_SHA256}")
        got.replace(path)
    return path


def publish(staging: Path, final: Path) -> None:
    shutil.rmtree(final, ignore_errors=True)
    staging.replace(final)


def build_wheel() -> Path:
    final = cache_root() / f"llama-cpp-python-{VERSION}-{machine_key()}"
    if list(final.glob("llama_cpp_python-*.whl")):
        return final
    sdist = fetch_sdist(cache_root())
    staging = Path(tempfile.mkdtemp(prefix=".wheel-", dir=cache_root()))
    print(
        f"building the llama-cpp-python {VERSION} wheel for this machine (once; ~7 min on 2 "
        f"cores) into {final}",
        file=sys.stderr,
    )
    t0 = time.monotonic()
    env = {
        **os.environ,
        "CMAKE_ARGS": WHEEL_CMAKE_ARGS,
        "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2),
    }
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(staging), str(sdist)],
        check=True,
        env=env,
    )
    (staging / "build-seconds.txt").write_text(f"{time.monotonic() - t0:.0f}\n")
    publish(staging, final)
    return final


def build_server() -> Path:
    final = cache_root() / f"llama-server-{VERSION}-{machine_key()}"
    if (final / "bin" / "llama-server").exists():
        return final
    sdist = fetch_sdist(cache_root())
    staging = Path(tempfile.mkdtemp(prefix=".server-", dir=cache_root()))
    print(
        f"building llama-server from the llama.cpp inside {SDIST} (once) into {final}",
        file=sys.stderr,
    )
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(dir=cache_root()) as tmp:
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        src = Path(tmp) / f"llama_cpp_python-{VERSION}" / "vendor" / "llama.cpp"
        build = Path(tmp) / "build"
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        subprocess.run(
            ["cmake", "-S", str(src), "-B", str(build), *generator, *SERVER_CMAKE_ARGS], check=True
        )
        subprocess.run(
            [
                "cmake",
                "--build",
                str(build),
                "--target",
                "llama-server",
                "-j",
                str(os.cpu_count() or 2),
            ],
            check=True,
        )
        (staging / "bin").mkdir()
        shutil.copy2(build / "bin" / "llama-server", staging / "bin" / "llama-server")
    (staging / "build-seconds.txt").write_text(f"{time.monotonic() - t0:.0f}\n")
    publish(staging, final)
    return final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["wheel", "server"])
    args = parser.parse_args()
    cache_root().mkdir(parents=True, exist_ok=True)
    print(build_wheel() if args.what == "wheel" else build_server())


if __name__ == "__main__":
    main()

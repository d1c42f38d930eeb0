"""Generates aigc/v1's stubs from protos/ with the locked grpcio-tools (`make protos`);
tests/unit/test_protos.py compares the committed stubs with what this makes.

aigc.v1 builds on google.longrunning (the Operations service and its Operation) and google.rpc,
whose Python modules are googleapis-common-protos' (grpcio-status, a client dependency, brings
it). Their .proto sources are in the same wheel, but google/longrunning/operations.proto is
installed as operations_proto.proto: protoc reads a copy under its real name. Only protos/aigc
is generated; the google modules stay the wheel's own.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
# the .proto a generated import names -> the file googleapis-common-protos installs it as
RENAMED = {"google/longrunning/operations.proto": "google/longrunning/operations_proto.proto"}


def googleapis_root() -> Path:
    """The directory holding googleapis-common-protos' google/ (its .proto files)."""
    from google.rpc import status_pb2

    return Path(status_pb2.__file__).resolve().parents[2]


def generate(protos_dir: Path, out: Path) -> list[Path]:
    """protoc over protos_dir/aigc (python, pyi, grpc) into out; the files it wrote."""
    protos = sorted(str(p.relative_to(protos_dir)) for p in (protos_dir / "aigc").rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        for name, installed in RENAMED.items():
            (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(googleapis_root() / installed, Path(tmp) / name)
        args = [
            "protoc",
            f"-I{protos_dir}",
            f"-I{tmp}",
            f"-I{googleapis_root()}",
            f"-I{Path(protoc.__file__).parent / '_proto'}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(args)}")
    stems = [p.removesuffix(".proto") for p in protos]
    return [out / f"{s}{kind}" for s in stems for kind in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")]


def main() -> int:
    for path in generate(ROOT / "protos", ROOT):
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())

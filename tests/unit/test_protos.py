"""The committed stubs in aigc/v1 match protos/ (regenerate with `make protos`).

They are compared with what the locked grpcio-tools (requirements/main.lock) generates, so a
release on the registry cannot make them stale; a .proto changed without `make protos` does."""

from __future__ import annotations

import shutil
import sys
from importlib import metadata
from pathlib import Path

from scripts import locks, protos

ROOT = Path(__file__).resolve().parents[2]


def test_the_generator_is_the_locked_one() -> None:
    locked = locks.pins(locks.LOCKS["main"].path)["grpcio-tools"]
    assert metadata.version("grpcio-tools") == locked, (
        f"grpcio-tools {metadata.version('grpcio-tools')} is not the lock's {locked}: "
        "rebuild the venv (`make venv`)"
    )
    generated = (ROOT / "aigc" / "v1" / "text_pb2_grpc.py").read_text()
    assert f"GRPC_GENERATED_VERSION = '{locked}'" in generated, "stubs not from the locked tools"


def stale_stubs(protos_dir: Path, out: Path) -> list[str]:
    """The committed stubs that differ from what protoc makes of protos_dir now (the same
    generation as `make protos`: scripts/protos.py)."""
    generated = [p.relative_to(out) for p in protos.generate(protos_dir, out)]
    missing = [str(rel) for rel in generated if not (out / rel).exists()]
    assert generated and not missing, f"protoc did not write {missing}"
    return [
        str(rel)
        for rel in generated
        if not (ROOT / rel).exists() or (ROOT / rel).read_bytes() != (out / rel).read_bytes()
    ]


def test_generated_stubs_are_fresh(tmp_path: Path) -> None:
    stale = stale_stubs(ROOT / "protos", tmp_path)
    assert not stale, f"stale stubs (run `make protos`): {stale} (python {sys.version_info[:2]})"


def test_a_proto_changed_without_make_protos_is_caught(tmp_path: Path) -> None:
    copy = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", copy)
    text = copy / "aigc" / "v1" / "text.proto"
    text.write_text(text.read_text() + "\nmessage NotYetGenerated { string field = 1; }\n")
    (tmp_path / "out").mkdir()
    stale = stale_stubs(copy, tmp_path / "out")
    assert "aigc/v1/text_pb2.py" in stale and "aigc/v1/text_pb2.pyi" in stale, stale


def test_operations_are_google_longrunning() -> None:
    """A batch is a google.longrunning operation: aigc.v1 imports the messages and service of
    googleapis-common-protos (what any gRPC tooling knows), it defines no Operations of its own."""
    from google.longrunning import operations_pb2

    from aigc.v1 import batches_pb2

    create = batches_pb2.DESCRIPTOR.services_by_name["Batches"].methods_by_name["CreateBatch"]
    assert create.output_type is operations_pb2.Operation.DESCRIPTOR
    info = create.GetOptions().Extensions[operations_pb2.operation_info]
    assert (info.response_type, info.metadata_type) == ("aigc.v1.Batch", "aigc.v1.BatchMetadata")
    assert not (ROOT / "aigc" / "v1" / "operations_pb2.py").exists()

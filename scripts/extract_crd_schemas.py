"""Refresh k8s/crds/ (the compact CRD schemas the offline validation reads) from upstream files.

    .venv/bin/python scripts/extract_crd_schemas.py     # ../shared/k8s/crds -> k8s/crds
    .venv/bin/python scripts/extract_crd_schemas.py --from DIR --to DIR

The upstream directory holds KubeRay's and prometheus-operator's CustomResourceDefinition YAML
files (ray-operator/config/crd/bases/, example/prometheus-operator-crd/ at the versions in
control/k8s/crds.py UPSTREAMS). Only the schema structure is kept; see k8s/crds/README.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from control.k8s.crds import extract

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--from", dest="source", default=str(REPO.parent / "shared/k8s/crds"))
    p.add_argument("--to", dest="target", default=str(REPO / "k8s/crds"))
    args = p.parse_args(argv)
    target = Path(args.target)
    target.mkdir(parents=True, exist_ok=True)
    files = extract(Path(args.source))
    for stale in sorted(target.glob("*.json")):
        if stale.name not in files:
            stale.unlink()
            print(f"removed {stale}")
    for name, text in files.items():
        (target / name).write_text(text)
        print(f"wrote {target / name} ({len(text) // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

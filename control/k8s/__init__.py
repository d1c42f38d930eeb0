"""`aigc k8s`: render the Kubernetes manifests from the model config, and check them offline.

- layout.py    where a checkout keeps configs/ and k8s/ (from --repo/--k8s-dir, not this package)
- render.py    configs/k8s-*.yaml -> the overlay's generated serveConfigV2 and gateway config
- kustomize.py `kubectl kustomize` an overlay into the objects `kubectl apply -k` would send
- validate.py  built-in kinds (kubernetes-validate, strict) and serveConfigV2 (Ray's schema)
- crds.py      KubeRay / Prometheus Operator CRD schemas: extract the compact copies in k8s/crds,
               validate custom resources against them
- rules.py     project rules (ports, probes, API keys, images, capacity, Dockerfile pin)
- cli.py       `aigc k8s render|check`

The checks need no cluster and no network; `make test` runs them through tests/k8s.
"""

from control.k8s.cli import main

__all__ = ["main"]

"""Reading a gateway's Prometheus endpoint: the benchmarks and the tests share these."""

from __future__ import annotations

import urllib.request
from collections import defaultdict

Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Metrics:
    """A Prometheus endpoint's samples, keyed by name and sorted labels."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    out: Metrics = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] += s.value
    return out


def total(m: Metrics, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels`."""
    return sum(
        v for (n, ls), v in m.items() if n == name and all((k, labels[k]) in ls for k in labels)
    )

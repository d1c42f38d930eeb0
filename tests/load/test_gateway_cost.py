"""load_tests.gateway_cost: how py-spy's samples are sorted into a request's stages, and the
levers table's comparisons with the plain server, from hand-made inputs."""

from __future__ import annotations

from pathlib import Path

from load_tests.gateway_cost import bench_config, categorize, levers_table, stage_of


def test_a_sample_belongs_to_its_innermost_known_stage(tmp_path: Path) -> None:
    serve = "assign_request (ray/serve/_private/router.py:1214)"
    pickle = "dumps (ray/cloudpickle/cloudpickle.py:1543)"
    ours = "DataPlane.generate_texts (gateway/dataplane.py:228)"
    # the data plane called Serve's router, which was pickling: serialization
    assert stage_of([ours, serve, pickle]).startswith("serialization")
    assert stage_of([ours, serve]).startswith("Serve's router")
    assert stage_of(["Runner.run (asyncio/runners.py:118)"]).startswith("event loop")
    raw = tmp_path / "raw.txt"
    raw.write_text(f"{ours};{serve} 3\n{ours} 1\n\n")
    shares = categorize(raw)
    assert shares.pop("samples") == 4
    assert shares == {"Serve's router and handle (incl. its metrics)": 0.75, "data plane": 0.25}


def test_levers_are_compared_with_the_plain_server() -> None:
    def row(label: str, c: int, p50: float, rate: float, refused: int = 0) -> dict:
        return {"label": label, "concurrency": c, "p50_ms": p50, "req_s": rate,
                "refused": refused}  # fmt: skip

    rows = [
        row("plain grpc.aio echo", 1, 0.5, 2000),
        row("plain grpc.aio echo", 64, 20.0, 4000),
        row("gateway as shipped", 1, 2.0, 500),
        row("gateway as shipped", 64, 80.0, 1000, refused=3),
    ]
    table = levers_table(rows)
    assert "| gateway as shipped | 2.00 ms (+1.50) | 500 (25%) | 80.00 ms (+60.00) |" in table
    assert "1000 (25%), 3 refused |" in table


def test_a_variants_config_changes_every_model(tmp_path: Path) -> None:
    import yaml

    path = bench_config(tmp_path, "logged", access_log=True)
    models = yaml.safe_load(path.read_text())["models"]
    assert models and all(m["access_log"] is True for m in models)

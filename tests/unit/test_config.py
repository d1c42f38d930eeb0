"""The config file: validation errors name the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.config import ConfigError, Modality, load_config, parse_config
from core.deployment import deployment_options

ROOT = Path(__file__).resolve().parents[2]


def _model(**kw):
    base = {"name": "m", "modality": "text", "engine": "echo"}
    return {**base, **kw}


def test_local_config_loads_and_resolves_weights_next_to_the_file():
    cfg = load_config(ROOT / "configs/local.yaml")
    fortune = cfg.by_name()["fortune"]
    assert fortune.weights == str(ROOT / "models/fortune")
    assert cfg.default_model(Modality.IMAGE).name == "faces"
    assert {m.value for m in cfg.modalities()} == {"text", "image", "audio", "video"}
    assert cfg.default_model(Modality.VIDEO).name == "fashion-video"


def _error(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    return str(err.value)


def test_bad_field_error_names_file_model_and_field(tmp_path):
    msg = _error(tmp_path, {"models": [_model(batching={"max_batch_size": 0})]})
    assert str(tmp_path / "bad.yaml") in msg
    assert "models[0](m).batching.max_batch_size" in msg


def test_unknown_keys_are_rejected(tmp_path):
    msg = _error(tmp_path, {"models": [_model(batching={"max_batch_sise": 4})]})
    assert "max_batch_sise" in msg and "Extra inputs" in msg


def test_unknown_engine_lists_the_known_ones(tmp_path):
    msg = _error(tmp_path, {"models": [_model(engine="tensorrt")]})
    assert "tensorrt" in msg and "transformers" in msg


@pytest.mark.parametrize(
    ("models", "needle"),
    [
        ([_model(), _model()], "unique"),
        ([_model(default=True), _model(name="n", default=True)], "more than one default"),
        ([_model(scaling={"min_replicas": 3, "max_replicas": 2})], "min_replicas"),
        (
            [_model(batching={"max_batch_size": 32}, scaling={"max_ongoing_requests": 8})],
            "max_ongoing_requests",
        ),
        ([_model(modality="image", limits={"max_images": 64})], "max_images"),
        (
            [
                _model(
                    modality="image",
                    batching={"max_batch_size": 16, "max_concurrent_batches": 2},
                    scaling={"max_ongoing_requests": 24},
                )
            ],
            "max_concurrent_batches = 32",
        ),
        ([_model(batching={"max_concurrent_batches": 2})], "must be 1 for text models"),
        ([_model(name="Bad Name")], "name"),
        ([], "models"),
    ],
)
def test_inconsistent_configs(tmp_path, models, needle):
    assert needle in _error(tmp_path, {"models": models})


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("models: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_deployment_options_from_config():
    cfg = parse_config(
        {
            "models": [
                _model(
                    batching={"max_batch_size": 8},
                    scaling={"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 4},
                    resources={"num_cpus": 0.25, "num_gpus": 0.5},
                )
            ]
        }
    )
    opts = deployment_options(cfg.models[0])
    assert opts["max_ongoing_requests"] == 16  # 2 x max_batch_size by default
    assert opts["autoscaling_config"]["max_replicas"] == 3
    assert opts["autoscaling_config"]["look_back_period_s"] == 30.0  # Serve's default
    assert opts["ray_actor_options"] == {"num_cpus": 0.25, "num_gpus": 0.5}
    overlapped = _model(
        modality="image",
        batching={"max_batch_size": 8, "max_concurrent_batches": 2},
        limits={"max_images": 8},
    )
    assert (
        deployment_options(parse_config({"models": [overlapped]}).models[0])["max_ongoing_requests"]
        == 32
    )  # 2 x 8 x 2 batches in flight
    fixed = parse_config({"models": [_model()]}).models[0]
    assert deployment_options(fixed)["num_replicas"] == 1
    assert "max_replicas_per_node" not in deployment_options(fixed)  # Serve's default: no limit
    # Serve's access log is off unless asked for (a line per request cost the replica CPU)
    assert deployment_options(fixed)["logging_config"] == {"enable_access_log": False}
    logged = parse_config({"models": [_model(access_log=True)]}).models[0]
    assert deployment_options(logged)["logging_config"] == {"enable_access_log": True}


def test_autoscaling_target_must_be_reachable_through_the_gateway():
    # max_batch_size 1: the gateway sends a replica at most max_ongoing_requests = 2
    scaled = {"min_replicas": 1, "max_replicas": 3}
    batching = {"max_batch_size": 1}
    ok = _model(batching=batching, scaling={**scaled, "target_ongoing_requests": 1})
    assert parse_config({"models": [ok]}).models[0].scaling.target_ongoing_requests == 1
    never = _model(batching=batching, scaling={**scaled, "target_ongoing_requests": 2})
    with pytest.raises(ConfigError, match="never see enough to add a replica"):
        parse_config({"models": [never]})
    fixed = _model(batching=batching, scaling={"target_ongoing_requests": 2})  # no autoscaling
    assert parse_config({"models": [fixed]}).models[0].scaling.min_replicas == 1


def test_transport_auto_is_direct_for_a_fixed_replica_count_only():
    fixed, scaled = {"min_replicas": 2, "max_replicas": 2}, {"min_replicas": 1, "max_replicas": 3}
    models = parse_config(
        {
            "models": [
                _model(name="a", scaling=fixed),
                _model(name="b", scaling=scaled),
                _model(name="c", scaling=fixed, transport="serve"),
                _model(name="d", scaling=fixed, transport="direct"),
            ]
        }
    ).models
    assert [m.direct_calls for m in models] == [True, False, False, True]
    with pytest.raises(ConfigError, match="transport direct needs a fixed replica count"):
        parse_config({"models": [_model(scaling=scaled, transport="direct")]})


def test_max_replicas_per_node_reaches_serve():
    from ray import serve

    cfg = parse_config(
        {
            "models": [
                _model(scaling={"min_replicas": 1, "max_replicas": 4, "max_replicas_per_node": 2})
            ]
        }
    )
    opts = deployment_options(cfg.models[0])
    assert opts["max_replicas_per_node"] == 2
    # Serve itself takes the options (it checks max_replicas_per_node and its companions)
    dep = serve.deployment(name="m")(type("M", (), {})).options(**opts)
    assert dep._replica_config.max_replicas_per_node == 2
    with pytest.raises(ConfigError, match="max_replicas_per_node"):
        parse_config({"models": [_model(scaling={"max_replicas_per_node": 0})]})


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path):
    from core.registry import ENGINES

    cfg = load_config(path)  # raises naming the field when anything is off
    assert cfg.models, "a config serves at least one model"
    for modality in cfg.modalities():
        marked = [m.name for m in cfg.models_of(modality) if m.default]
        assert len(marked) <= 1, f"{modality}: more than one default model: {marked}"
    for m in cfg.models:
        assert m.engine in ENGINES[m.modality.value], (m.name, m.engine)
    served = [n for m in cfg.models for n in (m.name, *m.aliases)]
    assert len(served) == len(set(served)), "a name or alias is served twice"

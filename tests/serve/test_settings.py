"""Settings of the HTTP service: defaults, validation errors that name the field, YAML, the Serve config."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from serve.app import build_app, resolve_model
from serve.settings import MiB, ServeSettings, make_settings, read_yaml

CONFIG = Path(__file__).parents[2] / "serve" / "config.yaml"


def test_defaults():
    import torch

    s = make_settings({"model": "org/name"})
    assert (s.host, s.port, s.max_body_bytes, s.replicas) == ("127.0.0.1", 8000, 2 * MiB, 1)
    assert s.num_gpus == (1.0 if torch.cuda.is_available() else 0.0)
    assert s.replica_options() == {"ray_actor_options": {"num_cpus": 1.0, "num_gpus": s.num_gpus},
                                   "max_ongoing_requests": 32, "max_queued_requests": 64, "num_replicas": 1,
                                   "health_check_period_s": 10.0, "health_check_timeout_s": 30.0}


def test_aliases_and_autoscaling():
    s = make_settings({"model": "m", "task": "sentiment-analysis", "num_gpus": 1,
                       "autoscaling": {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 16}})
    assert s.task == "text-classification"
    options = s.replica_options()
    assert options["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 16}
    assert "num_replicas" not in options and options["ray_actor_options"]["num_gpus"] == 1


@pytest.mark.parametrize(("values", "words"), [
    ({}, ["model", "Field required"]),
    ({"model": ""}, ["model"]),
    ({"model": "m", "port": 70000}, ["port", "70000"]),
    ({"model": "m", "replicas": 0}, ["replicas"]),
    ({"model": "m", "task": "summarization"}, ["task", "summarization"]),
    ({"model": "m", "colour": "blue"}, ["colour", "Extra inputs"]),
    ({"model": "m", "dtype": "float8"}, ["dtype"]),
    ({"model": "m", "replicas": 2, "autoscaling": {"max_replicas": 3}}, ["replicas or autoscaling"]),
    ({"model": "m", "autoscaling": {"min_replicas": 5, "max_replicas": 2}}, ["min_replicas 5", "max_replicas 2"]),
    ({"model": "m", "max_batch_size": 64, "max_ongoing_requests": 8}, ["max_ongoing_requests 8", "64"]),
    ({"model": "m", "max_length": 64, "stride": 64}, ["stride 64", "max_length 64"]),
    ({"model": "m", "route_prefix": "api"}, ["route_prefix"]),
    ({"model": "m", "max_body_bytes": 0}, ["max_body_bytes"]),
    ({"model": "m", "request_timeout_s": 0}, ["request_timeout_s"]),
    ({"model": "m", "request_timeout_s": 60, "stuck_after_s": 30}, ["stuck_after_s 30", "request_timeout_s 60"]),
    ({"model": "m", "health_check_period_s": 0}, ["health_check_period_s"]),
])
def test_bad_settings_name_the_field(values, words):
    with pytest.raises(ValueError, match="invalid serve settings") as e:
        make_settings(values)
    for word in words:
        assert word in str(e.value)


def test_yaml_flat_and_serve_config(tmp_path):
    flat = tmp_path / "flat.yaml"
    flat.write_text("model: ./m\nport: 9000\nmax_batch_size: 4\n")
    assert read_yaml(flat) == {"model": "./m", "port": 9000, "max_batch_size": 4}
    assert ServeSettings.from_yaml(flat, port=9100).port == 9100
    values = read_yaml(CONFIG)
    s = make_settings(values)
    assert (s.host, s.port, s.app_name, s.route_prefix, s.task) == ("127.0.0.1", 8000, "bigbird", "/",
                                                                         "text-classification")


@pytest.mark.parametrize(("text", "words"), [
    (None, ["does not exist"]),
    ("model: [unclosed", ["not valid YAML"]),
    ("- a\n- b\n", ["mapping"]),
    ("applications:\n  - import_path: other:app\n", ["exactly one application"]),
])
def test_bad_yaml(tmp_path, text, words):
    path = tmp_path / "s.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ValueError) as e:
        read_yaml(path)
    for word in words:
        assert word in str(e.value)


def test_config_yaml_is_a_valid_serve_config():
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(yaml.safe_load(CONFIG.read_text()))
    (app,) = schema.applications
    assert app.import_path == "serve.app:build_app"
    assert make_settings(app.args).task == "text-classification"


def test_resolve_model_reads_the_task_and_card(task_models):
    for task, folder in task_models.items():
        settings, card = resolve_model(make_settings({"model": str(folder)}))
        assert settings.task == task == card["task"]
        assert card["max_length"] == 256 and card["attention_type"] == "block_sparse"
    _, card = resolve_model(make_settings({"model": str(task_models["token-classification"]), "max_length": 64,
                                           "stride": 16}))
    assert card["max_length"] == 64 and card["labels"] == ["O", "B-LOC", "I-LOC"]


def test_resolve_model_errors(tmp_path, task_models):
    with pytest.raises(ValueError, match="cannot read model"):
        resolve_model(make_settings({"model": str(tmp_path / "missing")}))
    with pytest.raises(ValueError, match="max_length 512 exceeds"):
        resolve_model(make_settings({"model": str(task_models["fill-mask"]), "max_length": 512}))


def test_build_app_from_args(task_models):
    assert len(inspect.signature(build_app).parameters) == 1  # what Serve requires of a builder
    app = build_app({"model": str(task_models["fill-mask"]), "replicas": 2})
    assert type(app).__name__ == "Application"
    with pytest.raises(ValueError, match="http_options"):
        build_app({"model": str(task_models["fill-mask"]), "port": 9000})
    with pytest.raises(ValueError, match="max_queued_requests"):
        build_app({"model": str(task_models["fill-mask"]), "max_queued_requests": -1})

"""The settings loader the shells share: YAML files, ``key=value`` overrides, one-line pydantic errors."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bigbird.settings_io import (
    apply_overrides,
    format_errors,
    load_settings,
    parse_override,
    read_yaml,
    validate,
)


class Train(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float = Field(1e-3, gt=0)
    epochs: int = 1


class Job(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    train: Train = Field(default_factory=Train)

    @model_validator(mode="after")
    def _check(self) -> Job:
        if self.name == "bad":
            raise ValueError("name 'bad' is reserved")
        return self


def test_read_yaml_names_the_file_and_the_problem(tmp_path):
    missing = tmp_path / "none.yaml"
    with pytest.raises(FileNotFoundError, match=f"no such job file: '{missing}'"):
        read_yaml(missing, what="job file")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ValueError, match=r"bad.yaml: not valid YAML \("):
        read_yaml(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(ValueError, match="a job file must be a mapping of sections, got list"):
        read_yaml(tmp_path / "list.yaml", what="job file", holds="sections")
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    assert read_yaml(tmp_path / "empty.yaml") == {}
    (tmp_path / "ok.yaml").write_text("name: x\ntrain: {lr: 3.0e-4}\n")
    assert read_yaml(tmp_path / "ok.yaml") == {"name": "x", "train": {"lr": 3e-4}}


def test_overrides_are_dotted_keys_with_yaml_values():
    assert parse_override("train.epochs=3") == (["train", "epochs"], 3)
    assert parse_override("train.lr=1.0e-3") == (["train", "lr"], 1e-3)
    assert parse_override("train.lr=1e-3") == (["train", "lr"], "1e-3")  # YAML 1.1; pydantic reads it as a float
    assert parse_override("run.name = x-1 ") == (["run", "name"], "x-1")
    assert parse_override("a.b=") == (["a", "b"], None)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    for bad in ("train.lr", "=1", "a..b=1", " =1"):
        with pytest.raises(ValueError, match=f"override '{bad}' must look like section.key=value"):
            parse_override(bad)
    data = {"name": "x", "train": {"lr": 1.0}}
    out = apply_overrides(data, ["train.epochs=3", "run.dir=/tmp/r", "name=y"])
    assert out == {"name": "y", "train": {"lr": 1.0, "epochs": 3}, "run": {"dir": "/tmp/r"}}
    assert data == {"name": "x", "train": {"lr": 1.0}}  # the input and its sections are untouched
    with pytest.raises(ValueError, match=r"override 'name.first=a': 'name' is a value, not a section"):
        apply_overrides(data, ["name.first=a"])


def test_errors_are_one_line_naming_each_field():
    with pytest.raises(ValueError) as e:
        validate(Job, {"train": {"lr": -1, "epochs": "many", "lrate": 2}}, what="job settings")
    message = str(e.value)
    assert message.startswith("invalid job settings: ") and "\n" not in message
    for clause in ("name: Field required", "train.lr: Input should be greater than 0",
                   "train.epochs: Input should be a valid integer", "train.lrate: Extra inputs are not permitted"):
        assert clause in message, clause
    with pytest.raises(ValueError, match=r"^invalid settings: name 'bad' is reserved$"):  # no "Value error, "
        validate(Job, {"name": "bad"})
    with pytest.raises(ValueError, match="settings must be a mapping, got list"):
        validate(Job, ["name"])
    with pytest.raises(ValidationError) as error:
        Job.model_validate({"name": "x", "train": {"lr": -1}})
    assert format_errors(error.value) == "train.lr: Input should be greater than 0"
    assert format_errors(error.value, show_input=True) == "train.lr: Input should be greater than 0 (got -1)"


def test_load_settings_file_then_overrides(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("name: x\ntrain: {lr: 0.5}\n")
    job = load_settings(Job, path, ["train.epochs=4"])
    assert job == Job(name="x", train=Train(lr=0.5, epochs=4))
    assert load_settings(Job, data={"name": "d"}, overrides=["train.lr=2e-3"]).train.lr == 2e-3
    with pytest.raises(ValueError, match="pass a YAML path or a settings dict"):
        load_settings(Job)
    with pytest.raises(ValueError, match="invalid settings: train.lr: Input should be greater than 0"):
        load_settings(Job, path, ["train.lr=0"])

"""Settings of the HTTP service: one pydantic model, from YAML, a Serve config's ``args`` or CLI flags.

Config flows one way: YAML / flags -> :class:`ServeSettings` -> the deployments' options and the task
pipeline's arguments. Every value is checked here, so a bad one fails before Ray starts anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bigbird import settings_io
from bigbird.tasks.spec import DEFAULT_STRIDE
from serve.cpus import default_num_cpus

MiB = 1024 * 1024


def _default_num_gpus() -> float:
    import torch

    return 1.0 if torch.cuda.is_available() else 0.0


def _replica_device(num_gpus: float) -> Any:
    import torch

    return torch.device("cuda" if num_gpus > 0 else "cpu")


class Limits(BaseModel):
    """The ingress's share of the settings (it needs no more, and so never imports torch)."""

    max_body_bytes: int
    request_timeout_s: float
    retry_after_s: int
    body_timeout_s: float = 10.0
    max_body_reads: int = 256
    api_keys_file: str | None = None


class AutoscalingSettings(BaseModel):
    """Replica autoscaling of the model deployment (Ray Serve's ``autoscaling_config``)."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(8.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} must not exceed max_replicas {self.max_replicas}")
        return self


class ServeSettings(BaseModel):
    """Everything the service needs; defaults suit one CPU replica on 127.0.0.1:8000.

    Attributes:
        model: A model folder or a hub id (``org/name``).
        task: The task to serve (default: read from the checkpoint's ``architectures``).
        revision: Hub revision of ``model``.
        dtype: Weight dtype (``float32``, ``bfloat16``; ``float16`` with ``num_gpus`` > 0 only).
        quantize: ``int8``: dynamic int8 linear layers (CPU replicas: ``num_gpus`` 0).
        host, port: Where ``bigbird serve`` listens (a Serve config file sets ``http_options`` instead).
        route_prefix, app_name: Where and under which name the application runs.
        replicas: Fixed number of model replicas (exclusive with ``autoscaling``).
        autoscaling: min/max replicas and target ongoing requests per replica.
        num_gpus, num_cpus: Resources of each model replica. ``num_cpus`` unset: all the CPUs of the largest
            node for one fixed CPU replica, else 1 (:mod:`serve.cpus`); the replica runs that many torch threads.
        max_ongoing_requests: Requests a model replica holds at once (at least ``max_batch_size``).
        max_queued_requests: Requests waiting per caller before Serve rejects them (503).
        max_batch_size, batch_wait_timeout_s: ``@serve.batch`` parameters.
        forward_batch_size, forward_max_tokens: Windows per forward pass, and an optional cap on
            ``windows x padded length`` per forward pass.
        max_length, stride: Tokens per window (default: the model's limit) and the overlap of windows.
        max_body_bytes: Largest request body (413 beyond).
        body_timeout_s: Time a client may take to send its whole body (408 beyond).
        max_body_reads: Bodies an ingress replica reads at once; a request finding them all busy (slow or
            stalled uploads) gets 503 with Retry-After instead of waiting (below ``ingress_max_ongoing_requests``).
        max_tokens: Most tokens per request, all inputs together (413 beyond).
        request_timeout_s: Time a request may wait for its result (503 beyond).
        retry_after_s: ``Retry-After`` sent with 503 answers.
        ingress_replicas, ingress_max_ongoing_requests: The HTTP ingress deployment's size.
        health_check_period_s, health_check_timeout_s: How often Serve calls a model replica's
            ``check_health`` and how long it waits for it (three failures in a row: the replica is replaced).
        stuck_after_s: A scoring pass running longer than this fails the health check (a hung replica).
        api_keys_file: A file of API keys, one a line (:mod:`serve.auth`), re-read when it changes; with it (or
            ``BIGBIRD_API_KEY`` in the environment) every route but ``/healthz`` requires
            ``Authorization: Bearer <key>``. A key itself is never a setting (settings show in ``serve status``).
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(min_length=1)
    task: str | None = None
    revision: str | None = None
    dtype: Literal["float32", "float16", "bfloat16"] | None = None
    quantize: Literal["int8"] | None = None
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    route_prefix: str = "/"
    app_name: str = Field("bigbird", min_length=1)
    replicas: int = Field(1, ge=1)
    autoscaling: AutoscalingSettings | None = None
    num_gpus: float = Field(default_factory=_default_num_gpus, ge=0)
    num_cpus: float | None = Field(None, ge=0)
    max_ongoing_requests: int = Field(32, ge=1)
    max_queued_requests: int = Field(64, ge=0)
    max_batch_size: int = Field(16, ge=1)
    batch_wait_timeout_s: float = Field(0.01, ge=0)
    forward_batch_size: int = Field(16, ge=1)
    forward_max_tokens: int | None = Field(None, ge=1)
    max_length: int | None = Field(None, ge=8)
    stride: int = Field(DEFAULT_STRIDE, ge=0)
    max_body_bytes: int = Field(2 * MiB, ge=1)
    body_timeout_s: float = Field(10.0, gt=0)
    max_body_reads: int = Field(256, ge=1)
    max_tokens: int = Field(32768, ge=1)
    request_timeout_s: float = Field(30.0, gt=0)
    retry_after_s: int = Field(1, ge=0)
    ingress_replicas: int = Field(1, ge=1)
    ingress_max_ongoing_requests: int = Field(512, ge=1)
    health_check_period_s: float = Field(10.0, gt=0)
    health_check_timeout_s: float = Field(30.0, gt=0)
    stuck_after_s: float = Field(300.0, gt=0)
    api_keys_file: str | None = Field(None, min_length=1)

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str | None) -> str | None:
        if task is None:
            return None
        from bigbird.tasks import task_class

        return task_class(task).task  # resolves aliases; ValueError lists the known tasks

    @field_validator("api_keys_file")
    @classmethod
    def _absolute(cls, path: str | None) -> str | None:
        # The ingress replica reads it, in a process whose working directory may differ from this one's.
        return None if path is None else str(Path(path).expanduser().resolve())

    @field_validator("route_prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        if not prefix.startswith("/") or (len(prefix) > 1 and prefix.endswith("/")):
            raise ValueError(f"route_prefix must start with '/' and not end with one, got {prefix!r}")
        return prefix

    @model_validator(mode="after")
    def _consistent(self) -> ServeSettings:
        if self.autoscaling is not None and "replicas" in self.model_fields_set:
            raise ValueError("set either replicas or autoscaling, not both")
        if self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(f"max_ongoing_requests {self.max_ongoing_requests} is below max_batch_size "
                             f"{self.max_batch_size}: batches could never fill")
        from bigbird.tasks.loading import resolve_precision

        resolve_precision(self.dtype, self.quantize, _replica_device(self.num_gpus))  # the loader's own rule
        if self.max_length is not None and self.stride >= self.max_length:
            raise ValueError(f"stride {self.stride} must be smaller than max_length {self.max_length}")
        if self.stuck_after_s <= self.request_timeout_s:
            raise ValueError(f"stuck_after_s {self.stuck_after_s:g} must exceed request_timeout_s "
                             f"{self.request_timeout_s:g}: a pass within the request timeout is not stuck")
        if self.max_body_reads >= self.ingress_max_ongoing_requests:
            raise ValueError(f"max_body_reads {self.max_body_reads} must be below ingress_max_ongoing_requests "
                             f"{self.ingress_max_ongoing_requests}: stalled uploads would hold every slot")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> ServeSettings:
        """Settings from a YAML file (see :func:`read_yaml`), with ``overrides`` on top.

        Raises:
            ValueError: If the file or a value is invalid.
        """
        return make_settings({**read_yaml(path), **overrides})

    def limits(self) -> dict[str, Any]:
        """What the ingress needs: body size and deadline, concurrent body reads, timeout and Retry-After."""
        return {"max_body_bytes": self.max_body_bytes, "request_timeout_s": self.request_timeout_s,
                "retry_after_s": self.retry_after_s, "body_timeout_s": self.body_timeout_s,
                "max_body_reads": self.max_body_reads, "api_keys_file": self.api_keys_file}

    def replica_cpus(self, node_cpus: float | None) -> float:
        """``num_cpus`` of a model replica: the setting, else :func:`serve.cpus.default_num_cpus`."""
        if self.num_cpus is not None:
            return self.num_cpus
        return default_num_cpus(node_cpus=node_cpus, replicas=self.replicas, autoscaling=self.autoscaling is not None,
                                num_gpus=self.num_gpus)

    def replica_options(self, node_cpus: float | None = None) -> dict[str, Any]:
        """Ray Serve options of the model deployment (``node_cpus``: the largest node's, for the default
        ``num_cpus``)."""
        scaling: dict[str, Any] = {"num_replicas": self.replicas}
        if self.autoscaling is not None:
            scaling = {"autoscaling_config": self.autoscaling.model_dump()}
        return {"ray_actor_options": {"num_cpus": self.replica_cpus(node_cpus), "num_gpus": self.num_gpus},
                "max_ongoing_requests": self.max_ongoing_requests,
                "max_queued_requests": self.max_queued_requests, "health_check_period_s": self.health_check_period_s,
                "health_check_timeout_s": self.health_check_timeout_s, **scaling}


def format_errors(error: ValidationError) -> str:
    """One clause per bad field: ``port: Input should be less than or equal to 65535 (got 70000)``
    (:func:`bigbird.settings_io.format_errors` with the rejected values)."""
    return settings_io.format_errors(error, show_input=True)


def make_settings(values: dict[str, Any]) -> ServeSettings:
    """Validate a mapping of settings.

    Raises:
        ValueError: Naming every bad field and its value.
    """
    return settings_io.validate(ServeSettings, values, what="serve settings", show_input=True)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Settings from a YAML file: a flat mapping of settings, or a Serve config file (``applications:``),
    whose application running ``serve.app:build_app`` gives ``args`` and whose ``http_options`` give
    host and port.

    Raises:
        ValueError: If the file is missing (``config file 'x.yaml' does not exist``), not YAML, or holds no
            usable settings.
    """
    path = Path(path)
    try:
        data = settings_io.read_yaml(path, what="config file")
    except FileNotFoundError:
        raise ValueError(f"config file {str(path)!r} does not exist") from None
    if "applications" not in data:
        return data
    apps = [a for a in data["applications"] or [] if str(a.get("import_path", "")).startswith("serve.app:")]
    if len(apps) != 1:
        raise ValueError(f"config file {str(path)!r} must hold exactly one application with import_path "
                         f"serve.app:build_app, found {len(apps)}")
    app, http = apps[0], data.get("http_options") or {}
    values = dict(app.get("args") or {})
    values.update({k: http[k] for k in ("host", "port") if k in http})
    values.update({k: app[k] for k in ("route_prefix",) if k in app})
    if "name" in app:
        values["app_name"] = app["name"]
    return values

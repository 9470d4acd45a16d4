"""The Ray Serve application: a FastAPI ingress in front of a batching model deployment.

``build_app(args)`` is the builder of Serve config files (``import_path: serve.app:build_app``);
``build_application(settings)`` is what ``bigbird serve`` and the tests call. The ingress validates bodies
(pydantic), enforces size limits, maps overload and failures to HTTP statuses, and forwards each request
to :class:`serve.model.TaskModel`, which batches concurrent requests. Only the model's task gets an
endpoint (at ``/v1/<task>`` and at the root ``/``, where huggingface_hub's ``InferenceClient(base_url=...)``
posts); other task paths answer 404.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the request model of each route from
# its annotation, which is chosen per task at run time.
import asyncio
import logging
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from ray import serve
from ray.exceptions import RayActorError, RayTaskError, TaskCancelledError, WorkerCrashedError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException

from serve.auth import KeyCheck, env_keys
from serve.cpus import largest_node_cpus
from serve.errors import (
    ERROR_RESPONSES,
    SafeJSONResponse,
    describe_validation,
    error_response,
    unparsable_body,
)
from serve.guard import Guard
from serve.metrics import IngressMetrics
from serve.model import Outcome, TaskModel
from serve.schemas import TASK_API, ErrorBody, Health, ModelCard, ModelList
from serve.settings import Limits, ServeSettings, make_settings

logger = logging.getLogger("ray.serve")

# Errors that mean "no replica can take this now": answered 503 with Retry-After.
DOCS_ASSETS = "/docs-assets"  # where /docs and /redoc load their scripts and styles from
UNAVAILABLE = (BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError, RayActorError,
               TaskCancelledError, WorkerCrashedError)
# Errors that mean the replica answering a request died or vanished before it answered (ActorDiedError and
# ActorUnavailableError are RayActorErrors); such a request is sent once more, to a live replica.
REPLICA_LOST = (RayActorError, ReplicaUnavailableError, WorkerCrashedError)


async def awaited(response: Any) -> Outcome:
    """The outcome of a model call (a coroutine, for ``asyncio.wait_for``)."""
    return await response


def replica_lost(error: BaseException) -> bool:
    """Whether a failed model call lost its replica (worth one retry on another), as opposed to an exception the
    model itself raised (a ``RayTaskError``, even one carrying an actor error from inside the model) or an
    overload."""
    return isinstance(error, REPLICA_LOST) and not isinstance(error, RayTaskError)


@serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0})  # parses JSON, awaits: no CPU kept
@serve.ingress()
class Ingress:
    """HTTP front of one model: FastAPI routes built per task when the replica starts.

    Args:
        model: Handle of the :class:`serve.model.TaskModel` deployment.
        limits: :class:`serve.settings.Limits` as a dict.
        card: What ``GET /v1/models`` reports about the model.
        keys: API keys every route but ``/healthz`` requires (from ``BIGBIRD_API_KEY`` where the application
            was built), on top of those of ``limits["api_keys_file"]``; none of either: the service is open.
    """

    def __init__(self, model: DeploymentHandle, limits: dict[str, Any], card: dict[str, Any],
                 keys: list[str] | None = None) -> None:
        self.model = model
        self.limits = Limits.model_validate(limits)
        self.card = ModelCard.model_validate(card)
        self.metrics = IngressMetrics()
        self.keys = KeyCheck(list(keys or ()), self.limits.api_keys_file)
        if not self.keys.enabled:
            logger.warning("no API keys configured (BIGBIRD_API_KEY, api_keys_file): the service is open to "
                           "anyone who reaches its port")

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_api(self)

    def unavailable(self, message: str, request_id: str) -> JSONResponse:
        return error_response(503, message, request_id, retry_after=self.limits.retry_after_s)

    async def predict(self, payload: dict[str, Any], request_id: str) -> JSONResponse:
        """Forward one request to the model deployment and map its outcome (or failure) to HTTP.

        Inference is idempotent (the answer depends on the body only), so a request whose replica died while
        holding it is sent once more, within the same request timeout; Serve routes it to a live replica.
        Nothing else is retried: client errors and model errors are outcomes, and overload stays a 503."""
        timeout = self.limits.request_timeout_s
        deadline = time.monotonic() + timeout
        for attempt in (1, 2):
            response = self.model.predict.remote({**payload, "request_id": request_id})
            try:
                outcome = await asyncio.wait_for(awaited(response), max(deadline - time.monotonic(), 0.0))
            except asyncio.TimeoutError:
                response.cancel()
                return self.unavailable(f"no result within the {timeout:g} s request timeout; the server is "
                                        "overloaded, retry later", request_id)
            except BackPressureError as e:
                return self.unavailable(f"server overloaded ({e}); retry later", request_id)
            except UNAVAILABLE as e:
                if attempt == 1 and replica_lost(e):
                    logger.warning("request %s: its model replica was lost (%s); retrying once on a live replica",
                                   request_id, type(e).__name__)
                    continue
                logger.warning("request %s: model unavailable: %s", request_id, e)
                again = " (also after one retry)" if attempt == 2 else ""
                return self.unavailable(f"model replica unavailable{again} (restarting?); retry later", request_id)
            break
        if outcome.status == 200:
            return SafeJSONResponse(outcome.result)
        return error_response(outcome.status, outcome.error or "error", request_id)

    async def health(self, request_id: str) -> JSONResponse:
        try:
            await asyncio.wait_for(self.ping(), min(5.0, self.limits.request_timeout_s))
        except (asyncio.TimeoutError, *UNAVAILABLE) as e:
            return self.unavailable(f"model not ready: {type(e).__name__}", request_id)
        return SafeJSONResponse(Health(status="ok", task=self.card.task).model_dump())

    async def ping(self) -> None:
        await self.model.ready.remote()


def create_api(ingress: Ingress) -> FastAPI:
    """The FastAPI app of an ingress replica: the served task's endpoint, /healthz, /v1/models, /docs."""
    card = ingress.card
    spec = TASK_API[card.task]
    path = f"/v1/{spec.name}"
    # /docs and /redoc from the Swagger UI and ReDoc files that fastapi-offline ships (no CDN; the cluster may
    # have no internet), under DOCS_ASSETS.
    api = FastAPIOffline(static_url=DOCS_ASSETS, title="BigBird inference", version="1", description=(
        f"Serves `{card.id}` for **{card.task}** (HuggingFace Inference API conventions): "
        f"`POST {path}` with `{{\"inputs\": ..., \"parameters\": {{...}}}}`."))

    def rid(request: Request) -> str:
        return getattr(request.state, "request_id", "") or uuid.uuid4().hex

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, detail = describe_validation(list(exc.errors()))
        return error_response(422, message, rid(request), detail=detail)

    @api.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        malformed = unparsable_body(exc.__cause__) if exc.status_code == 400 else None
        if malformed is not None:  # one status for every malformed body: 422, like invalid JSON
            return error_response(422, malformed, rid(request))
        return error_response(exc.status_code, str(exc.detail), rid(request))

    Body = spec.request  # noqa: N806 - a class chosen per task

    # The task's path, and the service root: huggingface_hub's InferenceClient(base_url=...) posts there.
    @api.post("/", response_model=spec.response, responses=ERROR_RESPONSES, summary=f"{spec.summary} (root)",
              tags=["inference"])
    @api.post(path, response_model=spec.response, responses=ERROR_RESPONSES, summary=spec.summary,
              tags=["inference"])
    async def predict(body: Body, request: Request) -> Any:  # type: ignore[valid-type]
        inputs = body.inputs
        if isinstance(inputs, list):
            inputs = [x.model_dump() if hasattr(x, "model_dump") else x for x in inputs]
        elif hasattr(inputs, "model_dump"):
            inputs = inputs.model_dump()
        payload = {"inputs": inputs, "parameters": body.parameters.model_dump(exclude_unset=True)}
        return await ingress.predict(payload, rid(request))

    @api.post("/v1/{task}", responses={404: {"model": ErrorBody}}, include_in_schema=False)
    async def other_task(task: str, request: Request) -> JSONResponse:
        return error_response(404, f"task {task!r} is not served by this application; it serves "
                                   f"{card.task!r} at {path}", rid(request))

    @api.get("/healthz", response_model=Health, responses={503: {"model": ErrorBody}}, tags=["service"])
    async def healthz(request: Request) -> Any:
        return await ingress.health(rid(request))

    @api.get("/v1/models", response_model=ModelList, tags=["service"])
    async def models() -> ModelList:
        return ModelList(data=[card])

    limits = ingress.limits
    api.add_middleware(Guard, max_body_bytes=limits.max_body_bytes, metrics=ingress.metrics, keys=ingress.keys,
                       routes={"/", path, "/healthz", "/v1/models", "/docs", "/redoc", "/openapi.json"},
                       body_timeout_s=limits.body_timeout_s, max_body_reads=limits.max_body_reads,
                       retry_after_s=limits.retry_after_s)
    return api


def resolve_model(settings: ServeSettings) -> tuple[ServeSettings, dict[str, Any]]:
    """Read the checkpoint's config: fill in the task from its ``architectures`` and build the model card.

    Raises:
        ValueError: If the model cannot be found, its task is ambiguous, or max_length does not fit it.
    """
    from bigbird.config import BigBirdConfig
    from bigbird.tasks import SPECS

    try:
        config = BigBirdConfig.from_pretrained(settings.model, revision=settings.revision)
    except (FileNotFoundError, OSError) as e:
        raise ValueError(f"cannot read model {settings.model!r}: {e}") from None
    task = settings.task
    if task is None:
        archs = list(getattr(config, "architectures", None) or [])
        found = sorted({t for t, spec in SPECS.items() if spec.model_class.__name__ in archs})
        if len(found) != 1:
            raise ValueError(f"cannot tell the task of {settings.model!r} from its architectures {archs}; "
                             f"set task to one of {sorted(SPECS)}")
        task = found[0]
    limit = config.max_position_embeddings
    max_length = settings.max_length or limit
    if max_length > limit:
        raise ValueError(f"max_length {max_length} exceeds the model's max_position_embeddings {limit}")
    id2label = getattr(config, "id2label", None) or {}
    labels = [id2label[k] for k in sorted(id2label)] if task.endswith("classification") and id2label else None
    card = {"id": settings.model, "task": task, "max_length": max_length, "max_position_embeddings": limit,
            "attention_type": config.attention_type, "block_size": config.block_size, "labels": labels}
    return settings.model_copy(update={"task": task}), card


def build_app(args: dict[str, Any]) -> serve.Application:
    """The builder of Serve config files (``import_path: serve.app:build_app``); ``args`` are settings.

    Host and port belong to the config's ``http_options``, name and route prefix to its application entry.

    Raises:
        ValueError: On invalid settings or an unusable model.
    """
    misplaced = sorted({"host", "port", "route_prefix", "app_name"} & set(args or {}))
    if misplaced:
        raise ValueError(f"{misplaced} are not application args: a Serve config sets host and port under "
                         "http_options and name and route_prefix on the application")
    return build_application(make_settings(dict(args or {})))


def build_application(settings: ServeSettings, *, model_class: type = TaskModel) -> serve.Application:
    """The application: ``Ingress`` (FastAPI) bound to a ``TaskModel`` deployment.

    Args:
        settings: The service settings.
        model_class: The model deployment's class (tests pass a subclass that injects failures).

    Raises:
        ValueError: If the model cannot be read or does not fit the settings, or ``api_keys_file`` cannot be
            read.
    """
    settings, card = resolve_model(settings)
    keys = env_keys()
    KeyCheck(keys, settings.api_keys_file)  # an unreadable keys file fails here, before anything is deployed
    num_cpus = settings.replica_cpus(largest_node_cpus())
    settings = settings.model_copy(update={"num_cpus": num_cpus})  # the replica counts its threads from it
    model = serve.deployment(model_class, name="TaskModel").options(**settings.replica_options())
    ingress = Ingress.options(num_replicas=settings.ingress_replicas,
                              max_ongoing_requests=settings.ingress_max_ongoing_requests)
    return ingress.bind(model.bind(settings.model_dump()), settings.limits(), card, keys)

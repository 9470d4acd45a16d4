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
import json
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
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException

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
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in (
        (404, "Task not served by this application"), (408, "Body not received within the body deadline"),
        (413, "Body or token count over the limit"),
        (422, "Malformed body (not JSON, not UTF-8, nested too deeply, unknown field), bad parameter or "
              "unusable input"), (500, "Internal error (see request_id)"),
        (503, "Overloaded or restarting; retry after Retry-After seconds"))}


class SafeJSONResponse(JSONResponse):
    """JSON that always encodes: text holding a lone surrogate (echoed from a bad request, e.g. a field
    name) is written with ASCII escapes instead of failing the response."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def error_response(status: int, message: str, request_id: str, *, retry_after: int | None = None,
                   detail: list[dict[str, Any]] | None = None) -> JSONResponse:
    """The JSON error body every failure gets: ``{"error", "status", "request_id"[, "detail"]}``."""
    body: dict[str, Any] = {"error": message, "status": status, "request_id": request_id}
    if detail is not None:
        body["detail"] = detail
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return SafeJSONResponse(body, status_code=status, headers=headers)


async def awaited(response: Any) -> Outcome:
    """The outcome of a model call (a coroutine, for ``asyncio.wait_for``)."""
    return await response


def replica_lost(error: BaseException) -> bool:
    """Whether a failed model call lost its replica (worth one retry on another), as opposed to an exception the
    model itself raised (a ``RayTaskError``, even one carrying an actor error from inside the model) or an
    overload."""
    return isinstance(error, REPLICA_LOST) and not isinstance(error, RayTaskError)


def unparsable_body(error: BaseException | None) -> str | None:
    """Why a body FastAPI could not parse is malformed (it answers a bare 400), or None if it is not that."""
    if isinstance(error, UnicodeDecodeError):
        return f"body: not valid UTF-8 (byte 0x{error.object[error.start]:02x} at offset {error.start})"
    if isinstance(error, RecursionError):
        return "body: JSON nested too deeply to parse"
    if isinstance(error, ValueError):
        return f"body: not valid JSON ({error})"
    return None


def describe_validation(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """FastAPI validation errors -> ``"inputs: Field required; parameters.top_k: ..."`` and a JSON-safe list."""
    parts, detail = [], []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())]
        if e.get("type") == "json_invalid":  # loc is ("body", character position)
            parts.append(f"body: {e.get('msg')} at character {loc[-1] if len(loc) > 1 else '?'}")
        else:
            where = ".".join(loc[1:] if len(loc) > 1 and loc[0] == "body" else loc) or "body"
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        detail.append({"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))})
    return "; ".join(parts), detail


class IngressMetrics:
    """Request counters and latency of the ingress (Serve adds deployment, replica and application tags)."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self.requests = metrics.Counter("bigbird_serve_requests", description="HTTP requests by route and status",
                                        tag_keys=("route", "status"))
        self.errors = metrics.Counter("bigbird_serve_errors", description="HTTP error answers by route and status",
                                      tag_keys=("route", "status"))
        self.latency = metrics.Histogram(
            "bigbird_serve_request_latency_s", description="Seconds from request to answer", tag_keys=("route",),
            boundaries=[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30])

    def record(self, route: str, status: int, seconds: float) -> None:
        tags = {"route": route, "status": str(status)}
        self.requests.inc(tags=tags)
        if status >= 400:
            self.errors.inc(tags=tags)
        self.latency.observe(seconds, tags={"route": route})


class BodyTimeout(Exception):
    """The client did not send its whole body within the body deadline."""


class Guard:
    """ASGI middleware: request id, body limits, metrics, and a JSON 500 with the request id for anything the
    routes did not handle.

    Body limits: its size (Content-Length and bytes read; 413), a deadline for receiving it (408), and a bound
    on bodies read at once (503 with Retry-After), so slow or stalled uploads cannot hold every slot of the
    ingress while good requests wait.

    The Serve proxy sets ``x-request-id`` on the request and echoes it as ``X-Request-ID``; without a
    proxy (another ASGI server) this middleware makes one and sets the header itself.
    """

    def __init__(self, app: Any, *, max_body_bytes: int, routes: set[str], metrics: IngressMetrics,
                 body_timeout_s: float = 10.0, max_body_reads: int = 256, retry_after_s: int = 1) -> None:
        self.app, self.max_body_bytes, self.routes, self.metrics = app, max_body_bytes, routes, metrics
        self.body_timeout_s, self.retry_after_s = body_timeout_s, retry_after_s
        self.max_body_reads, self.reading = max_body_reads, 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = Headers(scope=scope)
        request_id = headers.get("x-request-id")
        own_id = request_id is None
        request_id = request_id or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = {"code": 500, "started": False}

        async def send_tracked(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.update(code=message["status"], started=True)
                if own_id:
                    MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        route = scope.get("path", "")[len(scope.get("root_path", "")):] or "/"
        route = route if route in self.routes else "other"
        try:
            if self.reading >= self.max_body_reads:
                await error_response(503, f"server overloaded: {self.reading} request bodies are being received; "
                                     "retry later",
                                     request_id, retry_after=self.retry_after_s)(scope, receive, send_tracked)
                return
            self.reading += 1
            try:
                body = await asyncio.wait_for(self.read_body(headers, receive), self.body_timeout_s)
            except asyncio.TimeoutError:
                await error_response(408, f"request body not received within {self.body_timeout_s:g} s",
                                     request_id)(scope, receive, send_tracked)
                return
            finally:
                self.reading -= 1
            if body is None:
                await error_response(413, f"request body exceeds the limit of {self.max_body_bytes} bytes",
                                     request_id)(scope, receive, send_tracked)
                return
            await self.app(scope, replay(body, receive), send_tracked)
        except Exception:
            logger.exception("request %s failed", request_id)
            if not status["started"]:
                await error_response(500, "internal server error", request_id)(scope, receive, send_tracked)
        finally:
            self.metrics.record(route, int(status["code"]), time.perf_counter() - start)

    async def read_body(self, headers: Headers, receive: Any) -> bytes | None:
        """The whole body, or None once it is known to exceed the limit (declared or actual size)."""
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return None
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


def replay(body: bytes, receive: Any) -> Any:
    """A ``receive`` that gives the already read body once, then defers to the real one (disconnects)."""
    sent = False

    async def receive_again() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again


@serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0})  # parses JSON, awaits: no CPU kept
@serve.ingress()
class Ingress:
    """HTTP front of one model: FastAPI routes built per task when the replica starts.

    Args:
        model: Handle of the :class:`serve.model.TaskModel` deployment.
        limits: :class:`serve.settings.Limits` as a dict.
        card: What ``GET /v1/models`` reports about the model.
    """

    def __init__(self, model: DeploymentHandle, limits: dict[str, Any], card: dict[str, Any]) -> None:
        self.model = model
        self.limits = Limits.model_validate(limits)
        self.card = ModelCard.model_validate(card)
        self.metrics = IngressMetrics()

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
    api.add_middleware(Guard, max_body_bytes=limits.max_body_bytes, metrics=ingress.metrics,
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
        ValueError: If the model cannot be read or does not fit the settings.
    """
    settings, card = resolve_model(settings)
    model = serve.deployment(model_class, name="TaskModel").options(**settings.replica_options())
    ingress = Ingress.options(num_replicas=settings.ingress_replicas,
                              max_ongoing_requests=settings.ingress_max_ongoing_requests)
    return ingress.bind(model.bind(settings.model_dump()), settings.limits(), card)

"""The ingress's ASGI middleware: request id, API keys, body limits, metrics, and a JSON 500 for the rest."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from starlette.datastructures import Headers, MutableHeaders

from serve.auth import OPEN_PATHS, KeyCheck
from serve.errors import error_response
from serve.metrics import IngressMetrics

logger = logging.getLogger("ray.serve")


class Guard:
    """ASGI middleware in front of the FastAPI routes.

    In order: the request id; the API key (when ``keys`` are configured, every path but ``/healthz`` needs
    ``Authorization: Bearer <key>``: 401 with ``WWW-Authenticate: Bearer`` before the body is read); the body
    limits: its size (Content-Length and bytes read; 413), a deadline for receiving it (408), and a bound
    on bodies read at once (503 with Retry-After), so slow or stalled uploads cannot hold every slot of the
    ingress while good requests wait; then metrics, and a JSON 500 with the request id for anything the routes
    did not handle.

    The Serve proxy sets ``x-request-id`` on the request and echoes it as ``X-Request-ID``; without a
    proxy (another ASGI server) this middleware makes one and sets the header itself.
    """

    def __init__(self, app: Any, *, max_body_bytes: int, routes: set[str], metrics: IngressMetrics,
                 keys: KeyCheck | None = None, body_timeout_s: float = 10.0, max_body_reads: int = 256,
                 retry_after_s: int = 1) -> None:
        self.app, self.max_body_bytes, self.routes, self.metrics = app, max_body_bytes, routes, metrics
        self.keys = keys if keys is not None and keys.enabled else None
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

        path = scope.get("path", "")[len(scope.get("root_path", "")):] or "/"
        route = path if path in self.routes else "other"
        try:
            if self.keys is not None and path not in OPEN_PATHS:
                refusal = self.keys.refusal(headers.get("authorization"))
                if refusal is not None:
                    challenge = "Bearer" if refusal.startswith("missing") else 'Bearer error="invalid_token"'
                    await error_response(401, refusal, request_id, headers={"WWW-Authenticate": challenge})(
                        scope, receive, send_tracked)
                    return
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

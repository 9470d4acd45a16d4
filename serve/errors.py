"""The service's HTTP errors: one JSON body for every failure, and the messages for bodies FastAPI rejects.

Every error answer is ``{"error", "status", "request_id"[, "detail"]}``; ``ERROR_RESPONSES`` documents the
statuses in the OpenAPI schema.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse

from serve.schemas import ErrorBody

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in (
        (401, "API key missing or wrong (when the service has keys): send Authorization: Bearer <key>"),
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
                   detail: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error body every failure gets: ``{"error", "status", "request_id"[, "detail"]}``."""
    body: dict[str, Any] = {"error": message, "status": status, "request_id": request_id}
    if detail is not None:
        body["detail"] = detail
    headers = dict(headers or {})
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return SafeJSONResponse(body, status_code=status, headers=headers or None)


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

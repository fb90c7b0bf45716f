"""The service's FastAPI app and its one JSON error body for every mistake, a client's or ours:
`{"error": {"message", "type", "param", "code", "field", "fix", ...}, "request_id"}` (OpenAI's error
shape, plus the field and the fix), never the framework's own `{"detail": ...}`."""

# No `from __future__ import annotations`: FastAPI must see real types.
import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.exceptions import RayServeException
from starlette.exceptions import HTTPException as StarletteHTTPException

from reflectrm.requests import InvalidRequest

log = logging.getLogger("ray.serve")
app = FastAPI(title="reflectrm", description="Self-reflective generative reward model (ReflectRM) as a service.")


class ApiError(Exception):
    def __init__(
        self, status: int, field: str, message: str, fix: str, *, headers: dict[str, str] | None = None, **extra: Any
    ):
        super().__init__(message)
        self.status, self.field, self.message, self.fix, self.extra = status, field, message, fix, extra
        self.headers = headers or {}


FIXES = {
    "missing": "add the field",
    "extra_forbidden": "remove it (see /docs for the accepted fields)",
    "json_invalid": "send a valid JSON object with Content-Type: application/json",
    "literal_error": "use one of the listed values",
}


CHARS_PER_TOKEN = 64  # more characters than this per token limit: too long without tokenizing (a 30 MB prompt)


def check_text(texts: Iterable[str], limit: int, field: str) -> None:
    """Before tokenizing: 422 for text that is not valid Unicode (a lone surrogate such as \\ud800, which
    JSON allows and tokenizers reject), 413 for text so long no tokenizer could fit it in `limit` tokens."""
    chars = 0
    for text in texts:
        chars += len(text)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            why = f"{field}: a string is not valid Unicode (an unpaired surrogate such as \\ud800)"
            fix = "send valid UTF-8 text (\\ud800-\\udfff escapes only as surrogate pairs)"
            raise ApiError(422, field, why, fix) from None
    if chars > limit * CHARS_PER_TOKEN:
        why = f"the prompt has {chars} characters, far over the limit of {limit} tokens"
        raise ApiError(413, field, why, "shorten the conversation or the responses", prompt_chars=chars, limit=limit)


def request_id(request: Request) -> str:
    """Serve's id of this request: the client's X-Request-ID if it sent one; Serve returns it as a header."""
    try:
        rid = serve.context._get_serve_request_context().request_id  # noqa: SLF001 (no public accessor in Ray 2.60)
    except Exception:  # noqa: BLE001
        rid = ""
    return rid or request.headers.get("x-request-id", "")


ERROR_TYPES = {
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def error_body(
    request: Request,
    status: int,
    field: str,
    message: str,
    fix: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    return JSONResponse(
        {
            "error": {  # OpenAI's error shape (message, type, param, code), plus the field and the fix
                "message": message,
                "type": ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error"),
                "param": field or None,
                "code": status,
                "field": field,
                "fix": fix,
                **extra,
            },
            "request_id": request_id(request),
        },
        status_code=status,
        headers=headers,
    )


def _union_tag(part: Any) -> bool:
    """A part of a validation error's location that names a member of a union type (`str`, `list[str]`),
    not a field: the client fixes `prompt`, not `prompt.str`."""
    return isinstance(part, str) and (part in ("str", "int", "float", "bool", "none") or "[" in part or "-" in part)


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as our JSON body: validation (400/422), ApiError, InvalidRequest (422), the rest (500)."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        loc = [str(p) for p in err.get("loc", ()) if p != "body" and not _union_tag(p)]
        kind = err.get("type", "")
        if kind == "json_invalid":
            return error_body(
                request, 400, "body", f"the body is not valid JSON: {err.get('msg')}", FIXES["json_invalid"]
            )
        field = ".".join(loc) or "body"
        if not loc and kind in ("model_attributes_type", "dict_type"):
            return error_body(request, 422, "body", "the body must be a JSON object", FIXES["json_invalid"])
        fix = (
            FIXES.get(kind)
            or f"send `{field}` as {err.get('msg', '').replace('Input should be', '').strip() or 'documented in /docs'}"
        )
        return error_body(request, 422, field, f"{field}: {err.get('msg')}", fix)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:  # unknown route, wrong method
        if exc.status_code == 400:  # FastAPI could not parse the body (e.g. nested too deeply for its JSON parser)
            return error_body(
                request, 400, "body", f"the body could not be parsed: {exc.detail}", FIXES["json_invalid"]
            )
        fix = "see /docs for the routes and their methods" if exc.status_code in (404, 405) else "see /docs"
        return error_body(request, exc.status_code, "path", f"{request.method} {request.url.path}: {exc.detail}", fix)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_body(request, exc.status, exc.field, exc.message, exc.fix, exc.headers, **exc.extra)

    @app.exception_handler(InvalidRequest)
    async def _invalid_request(request: Request, exc: InvalidRequest) -> JSONResponse:
        return error_body(request, 422, exc.field, exc.message, exc.fix)

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("request %s failed: %s", request_id(request), type(exc).__name__)  # no body, no prompt text
        return error_body(request, 500, "", "internal error", "retry; if it persists, report the request id")


@dataclasses.dataclass
class InFlight:
    """The ingress's own bounded queue: requests in flight in one replica, and its caps (ServeArgs
    max_concurrent_requests and max_body_mb). Above the cap a request gets 503 + Retry-After with our JSON
    body at once (Serve's own ingress back-pressure would answer with its text body). Each ingress replica
    holds one (`in_flight`); the middleware finds it through the replica's context."""

    limit: int = 0  # 0: no cap
    max_body_bytes: int = 0  # 0: no cap
    now: int = 0
    retry_after_s: int = 1
    exempt: tuple[str, ...] = ("/healthz",)


def replica_in_flight() -> InFlight | None:
    """This replica's InFlight (None outside a Serve replica, or before the ingress holds one)."""
    try:
        return getattr(serve.get_replica_context().servable_object, "in_flight", None)
    except RayServeException:  # not in a replica
        return None


@app.middleware("http")
async def bounded(request: Request, call_next: Any) -> Any:
    gate = replica_in_flight()
    if gate is None:
        return await call_next(request)
    size = request.headers.get("content-length", "")
    cap = gate.max_body_bytes
    if cap and size.isdigit() and int(size) > cap:
        why = f"the body has {int(size)} bytes; this server accepts at most {cap}"
        fix = "send fewer or shorter texts per request (max_body_mb)"
        return error_body(request, 413, "body", why, fix, body_bytes=int(size), limit=cap)
    if gate.limit and gate.now >= gate.limit and request.url.path not in gate.exempt:
        why = f"this server has {gate.now} requests in flight, its limit (max_concurrent_requests)"
        headers = {"Retry-After": str(gate.retry_after_s)}
        return error_body(request, 503, "", why, "retry after the Retry-After seconds", headers)
    gate.now += 1
    try:
        return await call_next(request)
    finally:
        gate.now -= 1


install_error_handlers(app)

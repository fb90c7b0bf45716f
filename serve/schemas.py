"""The service's schemas and errors: the app's args (ServeArgs, a typed config like every job's),
the request bodies (pydantic), and one JSON error body for every client mistake,
`{"error": {"type", "field", "message", "fix", ...}, "request_id"}`."""

# No `from __future__ import annotations`: pydantic and FastAPI must see real types.
import dataclasses
import logging
import time
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from ray import serve

from reflectrm.config import JudgeConfig, ModelConfig, PromptConfig, from_dict
from reflectrm.engines.base import Generation
from reflectrm.requests import InvalidRequest

log = logging.getLogger("ray.serve")


@dataclasses.dataclass(frozen=True)
class StageArgs:
    """One engine deployment's batching (serve/config.yaml: args.stage1, args.stage2)."""

    max_batch_size: int = 16  # requests per engine call (keep the deployment's max_ongoing_requests >= this)
    batch_wait_timeout_s: float = 0.02
    threads: int | None = None  # torch CPU threads per replica (None: all cores)

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.batch_wait_timeout_s < 0:
            raise ValueError(f"max_batch_size must be >= 1 and batch_wait_timeout_s >= 0, got {self}")


@dataclasses.dataclass(frozen=True)
class ServeArgs:
    """`args:` of serve/config.yaml, and `reflectrm serve KEY=VALUE ...`; checked whole when the app is built."""

    model: ModelConfig = ModelConfig()  # name, engine, vllm.*, dtype, device, max_prompt_tokens (413 above it), ...
    judge: JudgeConfig = JudgeConfig()  # the defaults of every request (n, max_new_tokens, temperature, seed, ...)
    prompt: PromptConfig = PromptConfig()
    max_n: int = 16  # caps on what one request may ask for
    max_new_tokens_cap: int = 1024
    reward_mode: Literal["greedy", "majority", "reflect"] = "reflect"  # how /get_reward judges
    reward_both_orders: bool = (
        False  # /get_reward also judges (reference, response) and averages: no position bias, 2x cost
    )
    auth_token_env: str = "REFLECTRM_API_TOKEN"  # bearer auth when this env var is set where the app is built
    separate_stages: bool = True  # false: one engine deployment (Stage1) runs both stages: one model copy, stage 2 on stage 1's prefix cache
    stage1: StageArgs = StageArgs()
    stage2: StageArgs = StageArgs()

    def __post_init__(self) -> None:
        if self.max_n < 1 or self.max_new_tokens_cap < 1:
            raise ValueError(f"max_n and max_new_tokens_cap must be >= 1, got {self.max_n}, {self.max_new_tokens_cap}")

    @classmethod
    def parse(cls, args: dict[str, Any] | None) -> "ServeArgs":
        """From the config's mapping (`model: NAME` is short for `model: {name: NAME}`). Raises ConfigError."""
        return from_dict(cls, dict(args or {}))


class ApiError(Exception):
    def __init__(self, status: int, field: str, message: str, fix: str, **extra: Any):
        super().__init__(message)
        self.status, self.field, self.message, self.fix, self.extra = status, field, message, fix, extra


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: StrictStr | list[dict[str, Any]]

    def text(self, where: str) -> str:
        if isinstance(self.content, str):
            return self.content
        parts = [p.get("text") for p in self.content if p.get("type") == "text"]
        if len(parts) != len(self.content) or not all(isinstance(p, str) for p in parts):
            raise ApiError(
                422,
                where,
                "only text content parts are supported",
                'send content as a string or [{"type": "text", "text": "..."}]',
            )
        return "".join(parts)  # type: ignore[arg-type]


class JudgeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: StrictStr | None = None
    messages: list[ChatMessage] | None = Field(None, min_length=1)
    response_1: StrictStr
    response_2: StrictStr
    mode: Literal["greedy", "majority", "reflect"] = "reflect"
    n: StrictInt | None = Field(None, ge=1)
    max_new_tokens: StrictInt | None = Field(None, ge=1)
    seed: StrictInt | None = None
    swap: StrictBool = False
    stage2: Literal["lazy", "full"] | None = None  # None: the server's judge.stage2 (lazy: exact, fewer calls)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI clients send more fields (user, logprobs, ...): ignored
    model: StrictStr | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: StrictFloat | StrictInt = Field(1.0, ge=0, le=2)
    top_p: StrictFloat | StrictInt = Field(1.0, gt=0, le=1)
    max_tokens: StrictInt | None = Field(None, ge=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    n: StrictInt = Field(1, ge=1)
    seed: StrictInt | None = None
    stop: StrictStr | list[StrictStr] | None = None
    stream: StrictBool = False


FIXES = {
    "missing": "add the field",
    "extra_forbidden": "remove it (see /docs for the accepted fields)",
    "json_invalid": "send a valid JSON object with Content-Type: application/json",
    "literal_error": "use one of the listed values",
}


def request_id(request: Request) -> str:
    """Serve's id of this request: the client's X-Request-ID if it sent one; Serve returns it as a header."""
    try:
        rid = serve.context._get_serve_request_context().request_id  # noqa: SLF001 (no public accessor in Ray 2.60)
    except Exception:  # noqa: BLE001
        rid = ""
    return rid or request.headers.get("x-request-id", "")


def error_body(request: Request, status: int, field: str, message: str, fix: str, **extra: Any) -> JSONResponse:
    return JSONResponse(
        {
            "error": {
                "type": "invalid_request" if status < 500 else "server_error",
                "field": field,
                "message": message,
                "fix": fix,
                **extra,
            },
            "request_id": request_id(request),
        },
        status_code=status,
    )


def chat_response(gen: Generation, model: str, rid: str) -> dict[str, Any]:
    """OpenAI's chat.completion object for one generation."""
    completion_tokens = sum(len(c.token_ids) for c in gen.completions)
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": c.text},
            "logprobs": None,
            "finish_reason": c.finish_reason,
        }
        for i, c in enumerate(gen.completions)
    ]
    usage = {
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": gen.prompt_tokens + completion_tokens,
    }
    return {
        "id": f"chatcmpl-{rid}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage,
    }


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as our JSON body: validation (400/422), ApiError, InvalidRequest (422), the rest (500)."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
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

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_body(request, exc.status, exc.field, exc.message, exc.fix, **exc.extra)

    @app.exception_handler(InvalidRequest)
    async def _invalid_request(request: Request, exc: InvalidRequest) -> JSONResponse:
        return error_body(request, 422, exc.field, exc.message, exc.fix)

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("request %s failed: %s", request_id(request), type(exc).__name__)  # no body, no prompt text
        return error_body(request, 500, "", "internal error", "retry; if it persists, report the request id")

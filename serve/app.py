"""The ReflectRM judge on Ray Serve: two engine stages that scale apart, and an HTTP ingress.

    serve run serve/config.yaml                      # or: reflectrm serve --model tiny-random
    serve deploy serve/config.yaml                   # onto a running cluster

    Stage1   the rollouts: N judgments with log-probs. Batches across concurrent requests (@serve.batch).
    Stage2   the reflection calls. The same engine code, its own replicas and GPUs.
             (args.separate_stages=false: Stage1 runs both, one model copy for a single GPU or CPU box.)
    Ingress  FastAPI. Runs the library's pure steps between the stages (reflectrm.inference.ajudge),
             so stage 2 of one request overlaps stage 1 of others. No prompt text or parsing here.

Endpoints: POST /v1/judge, POST /get_reward (OpenRLHF), POST /v1/chat/completions (OpenAI),
GET /healthz, GET /v1/models, GET /docs. Every response carries Serve's X-Request-ID header (the
client's own if it sent one); JSON bodies repeat it as request_id.
Client mistakes get a 4xx JSON body {"error": {"type", "field", "message", "fix"}, "request_id"}.
Request bodies are never logged.
"""

# No `from __future__ import annotations` here: FastAPI must see real types on the ingress methods.
import asyncio
import dataclasses
import hashlib
import hmac
import logging
import os
import time
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from ray import serve
from ray.serve.handle import DeploymentHandle
from ray.util import metrics

from reflectrm.config import JudgeConfig, ModelConfig, PromptConfig, from_dict
from reflectrm.engines.base import Generation, GenerationRequest, SamplingParams
from reflectrm.inference import Steps, ajudge
from reflectrm.prompts import response_prompt
from reflectrm.protocols import read_reward_sample
from reflectrm.records import JudgeResult, Message, PreferencePair
from reflectrm.scoring import UNANSWERED, generate_each

log = logging.getLogger("ray.serve")


# --------------------------------------------------------------------------- configuration


class StageArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_batch_size: int = Field(16, ge=1)  # requests per engine call (keep max_ongoing_requests >= this)
    batch_wait_timeout_s: float = Field(0.02, ge=0)
    threads: int | None = None  # torch CPU threads per replica (None: all cores)


class AppArgs(BaseModel):
    """`args:` of serve/config.yaml (or `reflectrm serve` flags)."""

    model_config = ConfigDict(extra="forbid")
    model: str = "smollm2-135m-instruct"  # alias, local folder or hub id
    engine: Literal["auto", "hf", "vllm"] = "auto"  # auto: vllm where installed, else hf (reflectrm.engines.resolve_engine)
    vllm: dict[str, Any] = {}  # VLLMConfig fields (KV cache, threads, GPU memory, tensor parallel size)
    dtype: str = "auto"
    device: str = "auto"
    trust_remote_code: bool = False
    max_prompt_tokens: int = Field(4096, ge=1)
    judge: dict[str, Any] = {}  # JudgeConfig fields: defaults for requests (n, max_new_tokens, temperature, seed, ...)
    prompt_suffix: str = ""
    max_n: int = Field(16, ge=1)  # caps on what one request may ask for
    max_new_tokens_cap: int = Field(1024, ge=1)
    reward_mode: Literal["greedy", "majority", "reflect"] = "reflect"  # how /get_reward judges
    reward_both_orders: bool = False  # /get_reward also judges (reference, response) and averages: no position bias, 2x cost
    auth_token_env: str = "REFLECTRM_API_TOKEN"  # bearer auth when this env var is set where the app is built
    separate_stages: bool = True  # false: one engine deployment (Stage1, batching of stage1) runs both stages: one model copy, and stage 2 hits stage 1's prefix cache
    stage1: StageArgs = StageArgs()
    stage2: StageArgs = StageArgs()

    def model_cfg(self) -> ModelConfig:
        return from_dict(ModelConfig, dict(name=self.model, engine=self.engine, vllm=self.vllm, dtype=self.dtype, device=self.device,
                                           trust_remote_code=self.trust_remote_code, max_prompt_tokens=self.max_prompt_tokens))


# --------------------------------------------------------------------------- the engine stages


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64)
class EngineStage:
    """One engine per replica; concurrent calls are gathered into one engine call (@serve.batch)."""

    def __init__(self, stage: str, model: dict[str, Any], batching: dict[str, Any]):
        import torch

        from reflectrm.engines import load_engine

        cfg, batch = from_dict(ModelConfig, model), StageArgs(**batching)
        torch.set_num_threads(batch.threads or os.cpu_count() or 1)
        self.stage = stage
        self.engine = load_engine(cfg)
        self.generate_batch.set_max_batch_size(batch.max_batch_size)
        self.generate_batch.set_batch_wait_timeout_s(batch.batch_wait_timeout_s)
        tags = {"stage": stage}
        self.m_batch = metrics.Histogram("reflectrm_stage_batch_size", "Requests per engine call", boundaries=[1, 2, 4, 8, 16, 32, 64], tag_keys=("stage",))
        self.m_batch_s = metrics.Histogram("reflectrm_stage_batch_seconds", "Seconds per engine call", boundaries=[0.1, 0.5, 1, 2, 5, 10, 30, 60], tag_keys=("stage",))
        self.m_queue = metrics.Gauge("reflectrm_stage_queue_length", "Requests waiting or running in this replica", tag_keys=("stage",))
        for m in (self.m_batch, self.m_batch_s, self.m_queue):
            m.set_default_tags(tags)
        self.waiting = 0

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.02)
    async def generate_batch(self, requests: list[GenerationRequest]) -> list[Generation | str]:
        self.m_batch.observe(len(requests))
        t0 = time.perf_counter()
        gens, errors = await asyncio.to_thread(generate_each, self.engine, requests)  # the event loop keeps queueing
        self.m_batch_s.observe(time.perf_counter() - t0)
        return [g if g is not None else e for g, e in zip(gens, errors)]

    async def generate(self, request: GenerationRequest) -> Generation | str:
        """One request's generation, or the reason it could not run (its prompt is over the limit)."""
        self.waiting += 1
        self.m_queue.set(self.waiting)
        try:
            return await self.generate_batch(request)
        finally:
            self.waiting -= 1
            self.m_queue.set(self.waiting)


# --------------------------------------------------------------------------- HTTP schemas


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
            raise ApiError(422, where, "only text content parts are supported", 'send content as a string or [{"type": "text", "text": "..."}]')
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


_FIXES = {
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


def _error_body(request: Request, status: int, field: str, message: str, fix: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"type": "invalid_request" if status < 500 else "server_error", "field": field, "message": message,
                                   "fix": fix, **extra}, "request_id": request_id(request)}, status_code=status)


app = FastAPI(title="reflectrm", description="Self-reflective generative reward model (ReflectRM) as a service.")


@app.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    kind = err.get("type", "")
    if kind == "json_invalid":
        return _error_body(request, 400, "body", f"the body is not valid JSON: {err.get('msg')}", _FIXES["json_invalid"])
    field = ".".join(loc) or "body"
    if not loc and kind in ("model_attributes_type", "dict_type"):
        return _error_body(request, 422, "body", "the body must be a JSON object", _FIXES["json_invalid"])
    fix = _FIXES.get(kind) or f"send `{field}` as {err.get('msg', '').replace('Input should be', '').strip() or 'documented in /docs'}"
    return _error_body(request, 422, field, f"{field}: {err.get('msg')}", fix)


@app.exception_handler(ApiError)
async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return _error_body(request, exc.status, exc.field, exc.message, exc.fix, **exc.extra)


@app.exception_handler(Exception)
async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("request %s failed: %s", request_id(request), type(exc).__name__)  # no body, no prompt text
    return _error_body(request, 500, "", "internal error", "retry; if it persists, report the request id")


# --------------------------------------------------------------------------- the ingress


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=512)
@serve.ingress(app)
class Ingress:
    def __init__(self, stage1: DeploymentHandle, stage2: DeploymentHandle, args: dict[str, Any], token_sha256: str | None):
        from reflectrm.models import load_tokenizer, resolve_model

        self.args = AppArgs(**args)
        self.stage1, self.stage2 = stage1, stage2
        self.token_sha256 = token_sha256
        self.judge_cfg = JudgeConfig(**self.args.judge)
        self.prompt_cfg = PromptConfig(suffix=self.args.prompt_suffix)
        self.tokenizer = load_tokenizer(resolve_model(self.args.model), self.args.trust_remote_code)  # token counts for 413s
        self.m_latency = metrics.Histogram("reflectrm_request_seconds", "End-to-end request latency", boundaries=[0.1, 0.5, 1, 2, 5, 10, 30, 60, 120], tag_keys=("endpoint",))

    # ------------------------------------------------------------------ plumbing

    async def _stage(self, handle: DeploymentHandle, requests: list[GenerationRequest]) -> list[Generation | str]:
        return list(await asyncio.gather(*(handle.generate.remote(r) for r in requests)))

    async def _stage1(self, requests: list[GenerationRequest]) -> list[Generation]:
        gens = await self._stage(self.stage1, requests)
        for g in gens:
            if isinstance(g, str):
                raise ApiError(413, "prompt", g, "shorten the conversation or the responses")
        return gens  # type: ignore[return-value]

    async def _stage2(self, requests: list[GenerationRequest]) -> list[Generation]:
        # A reflection prompt over the limit is an invalid answer: "not better" (method.md §4).
        return [g if not isinstance(g, str) else UNANSWERED for g in await self._stage(self.stage2, requests)]

    def _check_tokens(self, messages: tuple[Message, ...], field: str) -> None:
        from reflectrm.models import count_chat_tokens

        tokens, limit = count_chat_tokens(self.tokenizer, messages), self.args.max_prompt_tokens
        if tokens > limit:
            raise ApiError(413, field, f"the prompt has {tokens} tokens; the limit is {limit}", "shorten the conversation or the responses",
                           prompt_tokens=tokens, limit=limit)

    def _caps(self, n: int | None, max_new_tokens: int | None, n_field: str = "n", tokens_field: str = "max_new_tokens") -> None:
        if n is not None and n > self.args.max_n:
            raise ApiError(422, n_field, f"{n_field}={n} is above this server's cap of {self.args.max_n}", f"send {n_field} <= {self.args.max_n}")
        if max_new_tokens is not None and max_new_tokens > self.args.max_new_tokens_cap:
            raise ApiError(422, tokens_field, f"{tokens_field}={max_new_tokens} is above this server's cap of {self.args.max_new_tokens_cap}",
                           f"send {tokens_field} <= {self.args.max_new_tokens_cap}")

    def _authorize(self, request: Request) -> None:
        if self.token_sha256 is None:
            return
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(hashlib.sha256(token.encode()).hexdigest(), self.token_sha256):
            raise ApiError(401, "Authorization", "missing or wrong bearer token", "send the header Authorization: Bearer <token>")

    async def _judge(self, pair: PreferencePair, mode: str, cfg: JudgeConfig) -> JudgeResult:
        return await ajudge(Steps(cfg, self.prompt_cfg), pair, mode, self._stage1, self._stage2)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ endpoints

    @app.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "model": self.args.model}

    @app.get("/v1/models")
    async def models(self, request: Request) -> dict[str, Any]:
        self._authorize(request)
        return {"object": "list", "data": [{"id": self.args.model, "object": "model", "created": 0, "owned_by": "reflectrm"}]}

    @app.post("/v1/judge")
    async def judge(self, body: JudgeRequest, request: Request) -> dict[str, Any]:
        self._authorize(request)
        t0 = time.perf_counter()
        if (body.prompt is None) == (body.messages is None):
            raise ApiError(422, "prompt", "give exactly one of prompt and messages", 'send "prompt": "..." or "messages": [{"role": "user", "content": "..."}]')
        if body.prompt is not None and not body.prompt.strip():
            raise ApiError(422, "prompt", "prompt is empty", "send the user prompt as a non-empty string")
        for name in ("response_1", "response_2"):
            if not getattr(body, name).strip():
                raise ApiError(422, name, f"{name} is empty", f"send {name} as a non-empty string")
        if body.messages is not None:
            context = tuple(Message(m.role, m.text(f"messages.{i}.content")) for i, m in enumerate(body.messages))
            if context[-1].role != "user":
                raise ApiError(422, "messages", "the last message must be the user's", "end messages with the user turn being answered")
        else:
            context = (Message("user", body.prompt or ""),)
        self._caps(body.n, body.max_new_tokens)
        pair = PreferencePair("", context, body.response_1, body.response_2)
        cfg = dataclasses.replace(self.judge_cfg, n=body.n or self.judge_cfg.n, max_new_tokens=body.max_new_tokens or self.judge_cfg.max_new_tokens,
                                  seed=self.judge_cfg.seed if body.seed is None else body.seed)
        self._check_tokens(response_prompt(pair, self.prompt_cfg), "prompt")
        if body.swap:
            given, swapped = await asyncio.gather(self._judge(pair, body.mode, cfg), self._judge(pair.swapped(), body.mode, cfg))
            out = {**given.to_dict(), "swapped": swapped.to_dict(),
                   "consistent": given.preferred is not None and swapped.preferred == 3 - given.preferred}
        else:
            out = (await self._judge(pair, body.mode, cfg)).to_dict()
        self.m_latency.observe(time.perf_counter() - t0, tags={"endpoint": "judge"})
        return {**out, "request_id": request_id(request)}

    @app.post("/get_reward")
    async def get_reward(self, request: Request) -> dict[str, Any]:
        """OpenRLHF's remote reward protocol: {query, prompts, labels} -> {rewards, scores, extra_logs}."""
        self._authorize(request)
        t0 = time.perf_counter()
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "body", "the body is not valid JSON", _FIXES["json_invalid"]) from None
        if not isinstance(body, dict):
            raise ApiError(422, "body", "the body must be a JSON object", '{"query": [...], "prompts": [...], "labels": [...]}')
        queries = body.get("query")
        if not isinstance(queries, list):
            raise ApiError(422, "query", "query must be a list of strings (prompt + response, as OpenRLHF sends it)", 'send "query": ["..."]')
        n = len(queries)
        lists = {}
        for name in ("prompts", "labels"):
            value = body.get(name)
            if value is None:
                value = [None] * n
            if not isinstance(value, list) or len(value) != n:
                raise ApiError(422, name, f"{name} must be a list as long as query ({n})", f"send one {name[:-1]} per query, or omit {name}")
            lists[name] = value
        if n == 0:
            return {"rewards": [], "scores": [], "extra_logs": {}}
        results = await asyncio.gather(*(self._reward_one(q, p, lab) for q, p, lab in zip(queries, lists["prompts"], lists["labels"])))
        scores = [r[0] for r in results]
        extra_logs = {k: [float(r[1][k]) for r in results] for k in ("no_reference", "error", "valid_rate")}
        self.m_latency.observe(time.perf_counter() - t0, tags={"endpoint": "get_reward"})
        return {"rewards": [2 * s - 1 for s in scores], "scores": scores, "extra_logs": extra_logs}

    async def _reward_one(self, query: Any, prompt: Any, label: Any) -> tuple[float, dict[str, float]]:
        """(score, flags) for one sample. Never raises: a bad sample gets the neutral 0.5 and a flag."""
        sample = read_reward_sample(query, prompt, label)
        if sample.problem:
            return 0.5, {"no_reference": 0, "error": 1, "valid_rate": 0}
        if sample.reference is None:
            return 0.5, {"no_reference": 1, "error": 0, "valid_rate": 0}
        pair = PreferencePair("", sample.context, sample.response, sample.reference)
        try:
            self._check_tokens(response_prompt(pair, self.prompt_cfg), "query")
            if not self.args.reward_both_orders:
                result = await self._judge(pair, self.args.reward_mode, self.judge_cfg)
                return result.score, {"no_reference": 0, "error": 0, "valid_rate": result.valid_rate}
            given, swapped = await asyncio.gather(self._judge(pair, self.args.reward_mode, self.judge_cfg),
                                                  self._judge(pair.swapped(), self.args.reward_mode, self.judge_cfg))
            # swapped.score is the share of votes for the reference (now response 1)
            return (given.score + 1 - swapped.score) / 2, {"no_reference": 0, "error": 0, "valid_rate": (given.valid_rate + swapped.valid_rate) / 2}
        except Exception as err:  # noqa: BLE001 (one bad sample never fails the others: OpenRLHF drops failed requests)
            log.warning("get_reward: a sample failed (%s); neutral score", type(err).__name__)
            return 0.5, {"no_reference": 0, "error": 1, "valid_rate": 0}

    @app.post("/v1/chat/completions")
    async def chat(self, body: ChatRequest, request: Request) -> dict[str, Any]:
        """OpenAI-compatible chat generation with the served model (for clients that bring their own judge prompt)."""
        self._authorize(request)
        if body.stream:
            raise ApiError(400, "stream", "streaming is not supported", "send stream=false")
        messages = tuple(Message(m.role, m.text(f"messages.{i}.content")) for i, m in enumerate(body.messages))
        max_tokens = body.max_completion_tokens or body.max_tokens
        self._caps(body.n, max_tokens, "n", "max_tokens")
        self._check_tokens(messages, "messages")
        stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
        params = SamplingParams(n=body.n, temperature=float(body.temperature), top_p=float(body.top_p),
                                max_new_tokens=max_tokens or self.judge_cfg.max_new_tokens, seed=body.seed, stop=stop)
        gen = (await self._stage1([GenerationRequest(messages, params)]))[0]
        completion_tokens = sum(len(c.token_ids) for c in gen.completions)
        return {
            "id": f"chatcmpl-{request_id(request)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.args.model,
            "choices": [{"index": i, "message": {"role": "assistant", "content": c.text}, "logprobs": None, "finish_reason": c.finish_reason}
                        for i, c in enumerate(gen.completions)],
            "usage": {"prompt_tokens": gen.prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": gen.prompt_tokens + completion_tokens},
        }


# --------------------------------------------------------------------------- the application


def build_app(args: dict[str, Any] | None = None) -> serve.Application:
    """`import_path: serve.app:build_app`. Validates args here, so a bad config fails at deploy time."""
    cfg = AppArgs(**(args or {}))
    model = dataclasses.asdict(cfg.model_cfg())
    token = os.environ.get(cfg.auth_token_env)
    token_sha256 = hashlib.sha256(token.encode()).hexdigest() if token else None  # the token itself never leaves this process
    if not cfg.separate_stages:  # one deployment serves both stages (name Stage1 in the config's `deployments:`)
        both = EngineStage.options(name="Stage1").bind("both", model, cfg.stage1.model_dump())
        return Ingress.bind(both, both, cfg.model_dump(), token_sha256)
    stage1 = EngineStage.options(name="Stage1").bind("stage1", model, cfg.stage1.model_dump())
    stage2 = EngineStage.options(name="Stage2").bind("stage2", model, cfg.stage2.model_dump())
    return Ingress.bind(stage1, stage2, cfg.model_dump(), token_sha256)

"""The service's schemas: the app's args (ServeArgs, a typed config like every job's) and the request
bodies (pydantic). Errors and the app itself: serve/http.py."""

# No `from __future__ import annotations`: pydantic and FastAPI must see real types.
import dataclasses
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from reflectrm.config import JudgeConfig, ModelConfig, PromptConfig, Stage2, from_dict
from reflectrm.inference import Mode
from reflectrm.methods import spec_for
from reflectrm.ranking import Method, Scheme
from reflectrm.records import Message
from serve.http import ApiError


@dataclasses.dataclass(frozen=True)
class StageArgs:
    """One engine deployment's batching (serve/config.yaml: args.stage1, args.stage2)."""

    max_batch_size: int = 16  # requests per engine call (keep the deployment's max_ongoing_requests >= this)
    batch_wait_timeout_s: float = 0.02
    threads: int | None = None  # torch CPU threads per replica (None: all cores)
    # Serve's options of the deployment (a config's `deployments:` entry still wins): requests one replica
    # takes at once (None: 256 continuous, for vLLM's scheduler; 64 static, >= max_batch_size), and the
    # bounded queue in front of the replicas (full: the ingress answers 503 + Retry-After)
    max_ongoing_requests: int | None = None
    max_queued_requests: int = 1024

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.batch_wait_timeout_s < 0:
            raise ValueError(f"max_batch_size must be >= 1 and batch_wait_timeout_s >= 0, got {self}")
        if (self.max_ongoing_requests or 1) < 1 or self.max_queued_requests < 1:
            raise ValueError(f"max_ongoing_requests and max_queued_requests must be >= 1, got {self}")


@dataclasses.dataclass(frozen=True)
class GroupArgs:
    """/get_reward without a reference (args.reward_groups): the responses to one prompt, arriving one per
    request as OpenRLHF sends them, are gathered into a group and judged against each other
    (reflectrm.ranking). size 0: off (such a sample gets the neutral 0.5 and `no_reference`)."""

    size: int = 0  # the responses per prompt the trainer samples (OpenRLHF --n_samples_per_prompt); 0: off
    wait_s: float = 30.0  # a group closes this long after its first response even if not full (>= 2 are ranked)
    scheme: Scheme = "circular"  # circular: 2G judgments; all_pairs: G(G-1)
    method: Method = "win_rate"

    def __post_init__(self) -> None:
        if self.size < 0 or self.size == 1 or self.wait_s <= 0:
            raise ValueError(f"reward_groups: size must be 0 (off) or >= 2 and wait_s > 0, got {self}")


@dataclasses.dataclass(frozen=True)
class ServeArgs:
    """`args:` of serve/config.yaml, and `reflectrm serve KEY=VALUE ...`; checked whole when the app is built."""

    model: ModelConfig = ModelConfig()  # name, engine, vllm.*, dtype, device, max_prompt_tokens (413 above it), ...
    judge: JudgeConfig = JudgeConfig()  # the defaults of every request (n, max_new_tokens, temperature, seed, ...)
    prompt: PromptConfig = PromptConfig()
    max_n: int = 16  # caps on what one request may ask for
    max_new_tokens_cap: int = 1024  # /v1/judge: 422 above it; OpenAI routes clamp to it (finish_reason "length")
    max_group: int = 16  # responses in one /v1/rank request
    reward_mode: Mode | None = None  # how /get_reward judges (None: judge.mode)
    reward_both_orders: bool = (
        False  # /get_reward also judges (reference, response) and averages: no position bias, 2x cost
    )
    auth_token_env: str = "REFLECTRM_API_TOKEN"  # bearer auth when this env var is set where the app is built
    reward_groups: GroupArgs = GroupArgs()
    separate_stages: bool = True  # false: one engine deployment (Stage1) runs both stages: one model copy, stage 2 on stage 1's prefix cache
    stage1: StageArgs = StageArgs()
    stage2: StageArgs = StageArgs()
    # continuous: each request enters vLLM's scheduler on arrival (AsyncLLM); static: @serve.batch gathers
    # calls into one engine call; auto: continuous on the vLLM engine, static on HF (which has no other)
    batching: Literal["auto", "static", "continuous"] = "auto"
    # Past it /v1/judge, /v1/rank and the OpenAI routes answer 504; /get_reward returns what it has and gives
    # the rest the neutral score with a `timeout` flag (under OpenRLHF's 180 s client timeout)
    request_deadline_s: float = 150.0
    # The ingress's bounded queue: above it, 503 + Retry-After (keep it under the Ingress's max_ongoing_requests)
    max_concurrent_requests: int = 256
    max_body_mb: float = 16.0  # a larger request body gets 413 before it is read

    def __post_init__(self) -> None:
        judge = spec_for(self.judge.method)
        judge.check_mode(self.judge.mode)
        judge.check_mode(self.reward_mode or self.judge.mode)
        if self.max_n < 1 or self.max_new_tokens_cap < 1:
            raise ValueError(f"max_n and max_new_tokens_cap must be >= 1, got {self.max_n}, {self.max_new_tokens_cap}")
        if self.request_deadline_s <= 0 or self.max_concurrent_requests < 0:
            raise ValueError(
                f"request_deadline_s must be > 0 and max_concurrent_requests >= 0 (0: no cap), got "
                f"{self.request_deadline_s}, {self.max_concurrent_requests}"
            )

    @classmethod
    def parse(cls, args: dict[str, Any] | None) -> "ServeArgs":
        """From the config's mapping (`model: NAME` is short for `model: {name: NAME}`). Raises ConfigError."""
        return from_dict(cls, dict(args or {}))


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: StrictStr | list[dict[str, Any]] | None

    def text(self, where: str) -> str:
        if self.content is None:
            if self.role == "assistant":  # an assistant turn that only called tools
                return ""
            raise ApiError(422, where, f"a {self.role} message needs content", "send content as a string")
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


def chat_messages(messages: list[ChatMessage]) -> tuple[Message, ...]:
    """OpenAI chat messages as the model's conversation: `developer` (OpenAI's newer name for the system
    prompt) is a system turn; a `tool` result is a user turn that says it is a tool's output (chat
    templates of judge models have no tool role)."""
    out = []
    for i, m in enumerate(messages):
        text = m.text(f"messages.{i}.content")
        if m.role == "developer":
            out.append(Message("system", text))
        elif m.role == "tool":
            out.append(Message("user", f"[tool output]\n{text}"))
        else:
            out.append(Message(m.role, text))
    return tuple(out)


class JudgeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: StrictStr | None = None
    messages: list[ChatMessage] | None = Field(None, min_length=1)
    response_1: StrictStr
    response_2: StrictStr
    mode: Mode | None = None  # None: the server's judge.mode (reflect by default)
    n: StrictInt | None = Field(None, ge=1)
    max_new_tokens: StrictInt | None = Field(None, ge=1)
    seed: StrictInt | None = None
    swap: StrictBool = False
    stage2: Stage2 | None = None  # None: the server's judge.stage2 (lazy: exact, fewer calls)


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
    stream_options: dict[str, Any] | None = None  # {"include_usage": true}: a last chunk with the usage
    logprobs: StrictBool = False
    top_logprobs: StrictInt | None = Field(None, ge=0, le=20)


class CompletionRequest(BaseModel):
    """OpenAI's legacy /v1/completions: a raw prompt, no chat template."""

    model_config = ConfigDict(extra="allow")
    model: StrictStr | None = None
    prompt: StrictStr | list[StrictStr]
    temperature: StrictFloat | StrictInt = Field(1.0, ge=0, le=2)
    top_p: StrictFloat | StrictInt = Field(1.0, gt=0, le=1)
    max_tokens: StrictInt | None = Field(16, ge=1)  # OpenAI's default
    n: StrictInt = Field(1, ge=1)
    seed: StrictInt | None = None
    stop: StrictStr | list[StrictStr] | None = None
    stream: StrictBool = False
    stream_options: dict[str, Any] | None = None
    logprobs: StrictInt | None = Field(None, ge=0, le=20)
    echo: StrictBool = False


class RankRequest(BaseModel):
    """/v1/rank: the responses to one prompt judged against each other (reflectrm.ranking)."""

    model_config = ConfigDict(extra="forbid")
    prompt: StrictStr | None = None
    messages: list[ChatMessage] | None = Field(None, min_length=1)
    responses: list[StrictStr] = Field(min_length=1)  # 2 or more for a pairwise judge; Critic-RM scores even 1
    scheme: Scheme = "circular"
    method: Method = "win_rate"
    mode: Mode | None = None  # None: the server's judge.mode
    n: StrictInt | None = Field(None, ge=1)
    max_new_tokens: StrictInt | None = Field(None, ge=1)
    seed: StrictInt | None = None

"""Critic-RM at inference (arXiv 2411.16646; method.md §6): critique a response, then the reward head reads the
critique. Pointwise: `reward(context, responses)` scores each response alone (no reference, no group), which
is what a reward with no reference needs; `judge(pairs)` compares two responses: r1 and r2 each the mean
reward over m critiques (the paper's inference-time scaling), the score sigmoid(r1 - r2).

    judge = CriticJudge.load("runs/critic/final", m=4)
    judge.judge([pair])[0].to_dict()      # preferred, score, rewards, every critique with its score and reward

m = 1 writes one greedy critique; m > 1 samples them at `temperature` (seeded by the pair's id and the
response's text, so a response gets the same critiques in either order). The head needs the model's hidden
states, so the critiques are written and read by the HF engine.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from reflectrm.config import JudgeConfig, ModelConfig, PromptConfig
from reflectrm.engines.base import GenerationRequest, SamplingParams
from reflectrm.engines.hf import HFEngine
from reflectrm.methods.critic_rm import TEMPLATE_VERSION, critique_prompt, parse_critique
from reflectrm.records import Message, PreferencePair, Usage, Verdict
from reflectrm.seeds import derive_seed
from reflectrm.training.critic import CriticLM, load_reward_head


@dataclass(frozen=True)
class Scored:
    """One response's reward: the mean over its critiques, and each critique with its head reward."""

    reward: float
    critiques: tuple[dict[str, Any], ...]
    usage: Usage = Usage()


@dataclass(frozen=True)
class CriticResult:
    preferred: Verdict  # the response with the higher mean reward; None on an exact tie
    score: float  # sigmoid(r1 - r2): P(response 1 better)
    responses: tuple[Scored, Scored]
    pair_id: str = ""
    m: int = 1
    method: str = field(default="critic_rm")

    @property
    def valid_rate(self) -> float:
        return critique_valid_rate(self.responses)

    @property
    def usage(self) -> Usage:
        return Usage(
            sum(s.usage.prompt_tokens for s in self.responses), sum(s.usage.completion_tokens for s in self.responses)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.pair_id,
            "preferred": self.preferred,
            "method": self.method,
            "mode": f"critic@{self.m}",
            "score": self.score,
            "rewards": [s.reward for s in self.responses],
            "critiques": [list(s.critiques) for s in self.responses],
            "template": TEMPLATE_VERSION,
            "valid_rate": self.valid_rate,
            "usage": {"prompt_tokens": self.usage.prompt_tokens, "completion_tokens": self.usage.completion_tokens},
        }


def needs_head(model: str, method: str) -> bool:
    """Whether judge.method runs Critic-RM on `model`; for critic_rm, first checks that the model has its reward
    head (a FileNotFoundError naming the fix before any worker starts)."""
    from reflectrm.models import resolve_model
    from reflectrm.training.critic import HEAD_FILE

    if method != "critic_rm":
        return False
    if not (Path(resolve_model(model)) / HEAD_FILE).is_file():
        raise FileNotFoundError(
            f"model={model} has no reward head ({HEAD_FILE}): judge.method=critic_rm needs a model trained with "
            "recipe=critic_rm (its export saves the head beside the weights); or choose judge.method=reflectrm|rm_r1"
        )
    return True


def pointwise_score(reward: float) -> float:
    """A reward head's scalar as a score in (0, 1): sigmoid(r), P(better than a response of reward 0)."""
    return 1 / (1 + math.exp(-max(-50.0, min(50.0, reward))))


def critique_valid_rate(scored: Sequence[Scored]) -> float:
    """The share of critiques whose score parsed (the head reads every critique: this is format only)."""
    crit = [c for s in scored for c in s.critiques]
    return sum(c["score"] is not None for c in crit) / len(crit) if crit else 0.0


def compare(s1: Scored, s2: Scored, pair_id: str = "", m: int = 1) -> CriticResult:
    """Two responses' rewards as a pair's result: the higher one preferred, score sigmoid(r1 - r2)."""
    diff = s1.reward - s2.reward
    preferred: Verdict = None if diff == 0 else (1 if diff > 0 else 2)
    return CriticResult(preferred, pointwise_score(diff), (s1, s2), pair_id, m)


class CriticJudge:
    def __init__(
        self,
        engine: HFEngine,
        model: CriticLM,
        m: int = 1,
        temperature: float = 1.0,
        max_new_tokens: int = 256,
        seed: int = 0,
        prompt: PromptConfig = PromptConfig(),
    ):
        if m < 1:
            raise ValueError(f"m={m}: the number of critiques per response must be >= 1")
        self.engine, self.model, self.m = engine, model.eval(), m
        self.temperature, self.max_new_tokens, self.seed, self.prompt = temperature, max_new_tokens, seed, prompt

    @classmethod
    def load(cls, folder: str | Path, model: ModelConfig | None = None, **kw: Any) -> CriticJudge:
        """A Critic-RM export (recipe=critic_rm): the model, and the reward head beside it (a clear error if none).
        `model`: the model settings (dtype, device, token limit); its name is `folder`, its engine HF."""
        cfg = dataclasses.replace(model or ModelConfig(), name=str(folder), engine="hf")
        engine = HFEngine.from_config(cfg)
        head = load_reward_head(folder, engine.model.config.hidden_size).to(engine.device)
        return cls(engine, CriticLM(engine.model, head), **kw)

    @classmethod
    def for_config(cls, model: ModelConfig, judge: JudgeConfig, prompt: PromptConfig = PromptConfig()) -> CriticJudge:
        """The judge that judge.method=critic_rm runs with these settings: model.name's export, m by judge.mode
        (1 greedy critique, else judge.n sampled), judge's temperature, token budget and seed."""
        from reflectrm.methods.critic_rm import critiques_per_response

        m = critiques_per_response(judge.mode, judge.n)
        kw = {"temperature": judge.temperature, "max_new_tokens": judge.max_new_tokens, "seed": judge.seed}
        return cls.load(model.name, model, m=m, prompt=prompt, **kw)

    def reward(
        self,
        context: tuple[Message, ...],
        responses: Sequence[str],
        key: str = "",
        m: int | None = None,
        max_new_tokens: int | None = None,
        seed: int | None = None,
    ) -> list[Scored]:
        """Each response scored alone: m critiques (default self.m), each read by the head, averaged. `m`,
        `max_new_tokens` and `seed` override the judge's own for this call (the service's per-request fields)."""
        m = m or self.m
        temperature = 0.0 if m == 1 else self.temperature
        seed = self.seed if seed is None else seed
        requests = [
            GenerationRequest(
                critique_prompt(context, r, self.prompt),
                SamplingParams(
                    n=m,
                    temperature=temperature,
                    max_new_tokens=max_new_tokens or self.max_new_tokens,
                    seed=derive_seed(seed, key, "critique", r),
                ),
            )
            for r in responses
        ]
        gens = self.engine.generate(requests)
        rows = []
        for req, gen in zip(requests, gens):
            prompt_ids = list(gen.prompt_ids) or self.engine.prompt_ids(req)
            for c in gen.completions:
                ids = list(c.token_ids)
                if not ids or ids[-1] not in self.engine.eos_ids:
                    ids.append(self.engine.tokenizer.eos_token_id)  # the head reads the end of the critique
                rows.append((prompt_ids, ids))
        rewards = iter(self._rewards(rows))
        out = []
        for gen in gens:
            crit = []
            for c in gen.completions:
                parsed = parse_critique(c.text)
                crit.append(
                    {"text": c.text, "score": parsed.score, "error": parsed.error, "reward": next(rewards),
                     "completion_tokens": len(c.token_ids)}
                )  # fmt: skip
            mean = sum(x["reward"] for x in crit) / len(crit)
            out.append(Scored(mean, tuple(crit), Usage(gen.prompt_tokens, sum(x["completion_tokens"] for x in crit))))
        return out

    def judge(self, pairs: Sequence[PreferencePair], m: int | None = None) -> list[CriticResult]:
        results = []
        for p in pairs:
            s1, s2 = self.reward(p.context, [p.response_1, p.response_2], key=p.id, m=m)
            results.append(compare(s1, s2, p.id, m or self.m))
        return results

    def _rewards(self, rows: list[tuple[list[int], list[int]]]) -> list[float]:
        from reflectrm.training.critic import pack

        b = pack(rows, self.engine.pad_id if self.engine.pad_id is not None else 0)
        with torch.no_grad():
            out = self.model(
                input_ids=b["input_ids"].to(self.engine.device),
                attention_mask=b["attention_mask"].to(self.engine.device),
                reward_index=b["last"].to(self.engine.device),
                use_cache=False,
            )
        return [float(r) for r in out.rewards]

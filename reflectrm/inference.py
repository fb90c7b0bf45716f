"""ReflectRM's two-stage inference (method.md §4) as pure steps over an engine, plus short drivers.

    greedy    one judgment at temperature 0
    majority  N judgments at temperature T; the majority verdict
    reflect   stage 1: N judgments; anchor = the most confident (mean log-prob of the lowest 10% of
              its tokens). Stage 2: for every other valid judgment, ask whether its analysis is more
              reliable than the anchor's (critiques in random order). Winner group W = those judged
              better; the verdict = majority of W; if W is empty or tied, add the anchor and vote
              again. Unanimous stage-1 verdicts skip stage 2 (ours: exact, stage 2 cannot change them).

Lazy stage 2 (judge.stage2=lazy, the default; ours, exact): the final verdict is the non-anchor
verdict B only if more B-judgments beat the anchor than anchor-verdict ones do. So round 1 asks only
the judgments whose verdict differs from the anchor's. If none of them beats the anchor, every vote
left in W (or the anchor alone) is the anchor's verdict: the verdict and the score are the full
stage 2's, and the anchor-verdict judgments are not asked (`not_asked`). Otherwise round 2 asks them,
and the result is the full stage 2's. Each comparison keeps its own seed and critique order (derived
per judgment), so its answer does not depend on the round it runs in.

The steps (`begin`, `after_stage1`, `finish`) never call an engine: the drivers do. `Judge.judge`
runs a whole batch of pairs with ONE engine call per stage; `ajudge` runs one pair over async
stage callables (the Serve ingress uses it so that stages of different requests overlap).
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, replace
from typing import Awaitable, Callable, Literal, Sequence

from reflectrm.config import JudgeConfig, Mode, PromptConfig
from reflectrm.engines.base import Completion, Engine, Generation, GenerationRequest, SamplingParams
from reflectrm.methods import JudgeMethod, method_for
from reflectrm.parsing import parse_output
from reflectrm.prompts import VERDICT_CHOICES, reflection_prompt, verdict_prefix
from reflectrm.records import JudgeResult, Judgment, PreferencePair, Reflection, Usage, Verdict
from reflectrm.seeds import derive_seed

MODES: tuple[Mode, ...] = ("greedy", "majority", "reflect")


# --------------------------------------------------------------------------- small pure pieces


def confidence(logprobs: Sequence[float], fraction: float = 0.1) -> float:
    """Mean log-prob of the lowest `fraction` of tokens, at least one token (method.md §4).

    -inf for an empty completion, so it can never be the anchor.
    """
    if not logprobs:
        return float("-inf")
    k = max(1, math.floor(len(logprobs) * fraction))
    lowest = sorted(logprobs)[:k]
    return sum(lowest) / k


def pair_key(pair: PreferencePair) -> str:
    """What a pair's seeds derive from: its id (or a hash of its context, for ad-hoc pairs) AND the order
    of its responses, so the given and the swapped order draw independent samples (evaluation's
    consistency and flip rate would be biased by correlated ones)."""
    order = hashlib.sha256(f"{pair.response_1}\x1e{pair.response_2}".encode()).hexdigest()[:12]
    if pair.id:
        return f"{pair.id}/{order}"
    text = "\x1e".join(m.role + m.content for m in pair.context)
    return hashlib.sha256(text.encode()).hexdigest()[:16] + "/" + order


def to_judgment(c: Completion, fraction: float = 0.1, method: JudgeMethod | None = None) -> Judgment:
    parsed = (method or method_for("reflectrm")).parse(c.text)
    return Judgment(
        text=c.text,
        analysis=parsed.analysis,
        verdict=parsed.verdict,
        confidence=confidence(c.logprobs, fraction),
        completion_tokens=len(c.token_ids),
        finish_reason=c.finish_reason,
        error=parsed.error,
    )


def count_votes(verdicts: Sequence[Verdict]) -> tuple[int, int]:
    return sum(v == 1 for v in verdicts), sum(v == 2 for v in verdicts)


def score_of(votes: tuple[int, int]) -> float:
    """The share of votes for response 1; 0.5 (neutral) when there is no vote."""
    total = votes[0] + votes[1]
    return votes[0] / total if total else 0.5


def select_anchor(judgments: Sequence[Judgment]) -> int | None:
    """The valid judgment with the highest confidence (the first one on a tie); None if none is valid."""
    valid = [i for i, j in enumerate(judgments) if j.valid]
    return max(valid, key=lambda i: (judgments[i].confidence, -i)) if valid else None


def majority_vote(judgments: Sequence[Judgment]) -> tuple[Verdict, float]:
    """Majority of the valid verdicts; a tie goes to the most confident judgment (ours: paper silent)."""
    votes = count_votes([j.verdict for j in judgments])
    if votes[0] == votes[1] == 0:
        return None, 0.5
    if votes[0] != votes[1]:
        return (1 if votes[0] > votes[1] else 2), score_of(votes)
    anchor = select_anchor(judgments)
    return judgments[anchor].verdict, score_of(votes)  # type: ignore[index]


def decide(judgments: Sequence[Judgment], anchor: int, reflections: Sequence[Reflection]) -> tuple[Verdict, float]:
    """The winner-group vote of method.md §4. Returns (verdict, score)."""
    winners = [judgments[r.index].verdict for r in reflections if r.better_than_anchor]
    votes = count_votes(winners)
    if votes[0] != votes[1]:
        return (1 if votes[0] > votes[1] else 2), score_of(votes)
    # W empty or tied: add the anchor and vote again. With the anchor added, a tie cannot remain.
    votes = count_votes(winners + [judgments[anchor].verdict])
    return (1 if votes[0] > votes[1] else 2), score_of(votes)


# --------------------------------------------------------------------------- the steps


@dataclass(frozen=True)
class PlannedReflection:
    index: int  # the judgment compared with the anchor
    candidate_position: Literal[1, 2]  # where that judgment is shown (random)
    request: GenerationRequest
    verdict_only: bool = False  # judge.stage2_output=verdict: the answer is " 1" or " 2", no analysis


@dataclass(frozen=True)
class Pending:
    """A pair between the stages: stage-1 judgments, the anchor, the stage-2 calls of the next round
    (`plan`), those held back for a later round (`deferred`) and the answers read so far."""

    pair: PreferencePair
    mode: Mode
    judgments: tuple[Judgment, ...]
    anchor: int | None
    plan: tuple[PlannedReflection, ...]
    usage: Usage
    deferred: tuple[PlannedReflection, ...] = ()
    answered: tuple[Reflection, ...] = ()
    stage2_usage: Usage = Usage()


# The paper's ablations (method.md §5) as scoring/evaluation modes: reflect with one judge setting changed.
# Their stage 1 is reflect's (the same seeds, so the same samples); only the anchor or the winner group differs.
ABLATIONS: dict[str, dict[str, str]] = {"random_anchor": {"anchor": "random"}, "random_winners": {"winners": "random"}}


class Steps:
    """The method's pure steps, bound to one configuration. No engine calls in here."""

    def __init__(self, cfg: JudgeConfig = JudgeConfig(), prompt_cfg: PromptConfig = PromptConfig()):
        self.cfg = cfg
        self.prompt_cfg = prompt_cfg
        self.method = method_for(cfg.method)

    def for_mode(self, mode: str) -> tuple[Steps, Mode]:
        """(the steps, the inference mode) of a scoring mode: an ablation is reflect with its setting changed."""
        if mode in ABLATIONS:
            return Steps(replace(self.cfg, **ABLATIONS[mode]), self.prompt_cfg), "reflect"  # type: ignore[arg-type]
        return self, mode  # type: ignore[return-value]

    def _anchor(self, pair: PreferencePair, judgments: Sequence[Judgment]) -> int | None:
        if self.cfg.anchor == "confidence":
            return select_anchor(judgments)
        valid = [i for i, j in enumerate(judgments) if j.valid]
        return (
            random.Random(derive_seed(self.cfg.seed, pair_key(pair), "random-anchor")).choice(valid) if valid else None
        )

    def _random_winners(
        self, pair: PreferencePair, judgments: Sequence[Judgment], anchor: int
    ) -> tuple[Reflection, ...]:
        key = pair_key(pair)
        return tuple(
            Reflection(
                i, 1, random.Random(derive_seed(self.cfg.seed, key, "random-winner", i)).random() < 0.5, True, "", 0
            )
            for i, j in enumerate(judgments)
            if j.valid and i != anchor
        )

    def stage1_params(self, mode: Mode, n: int | None = None, seed: int | None = None) -> SamplingParams:
        cfg = self.cfg
        if mode == "greedy":
            return SamplingParams(n=1, temperature=0.0, max_new_tokens=cfg.max_new_tokens, seed=seed)
        return SamplingParams(
            n=n or cfg.n, temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, seed=seed
        )

    def begin(self, pair: PreferencePair, mode: Mode, n: int | None = None) -> GenerationRequest:
        """The stage-1 request for one pair."""
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: valid modes are {', '.join(MODES)}")
        self.method.check_mode(mode)
        seed = derive_seed(self.cfg.seed, pair_key(pair), "stage1")
        return GenerationRequest(self.method.prompt(pair, self.prompt_cfg), self.stage1_params(mode, n, seed))

    def after_stage1(self, pair: PreferencePair, mode: Mode, gen: Generation) -> Pending:
        """Parse stage 1, pick the anchor and plan stage 2 (empty plan: nothing more to ask)."""
        judgments = tuple(to_judgment(c, self.cfg.confidence_fraction, self.method) for c in gen.completions)
        usage = Usage(gen.prompt_tokens, sum(j.completion_tokens for j in judgments))
        anchor = self._anchor(pair, judgments)
        plan: tuple[PlannedReflection, ...] = ()
        deferred: tuple[PlannedReflection, ...] = ()
        if mode == "reflect" and anchor is not None:
            verdicts = {j.verdict for j in judgments if j.valid}
            if not (self.cfg.skip_unanimous and len(verdicts) == 1):
                if self.cfg.winners == "random":  # the ablation: W drawn by coin flips, no reflection calls
                    answered = self._random_winners(pair, judgments, anchor)
                    return Pending(pair, mode, judgments, anchor, (), usage, answered=answered)
                plan = tuple(self._plan(pair, judgments, anchor))
                if self.cfg.stage2 == "lazy":  # round 1: the other verdict's judgments only
                    theirs = judgments[anchor].verdict
                    deferred = tuple(p for p in plan if judgments[p.index].verdict == theirs)
                    plan = tuple(p for p in plan if judgments[p.index].verdict != theirs)
        return Pending(pair, mode, judgments, anchor, plan, usage, deferred)

    def answer(self, pending: Pending, stage2: Sequence[Generation]) -> Pending:
        """Read one round of stage-2 answers (in plan order) and plan the next round: the deferred
        judgments, only if an answer of this round beat the anchor (see the module's docstring)."""
        p = pending
        if len(stage2) != len(p.plan):
            raise ValueError(f"stage 2 returned {len(stage2)} generations for {len(p.plan)} planned calls")
        read = tuple(_read_reflection(planned, gen) for planned, gen in zip(p.plan, stage2))
        usage = p.stage2_usage + Usage(sum(g.prompt_tokens for g in stage2), sum(r.completion_tokens for r in read))
        again = any(r.better_than_anchor for r in read)
        return replace(
            p,
            plan=p.deferred if again else (),
            deferred=() if again else p.deferred,
            answered=p.answered + read,
            stage2_usage=usage,
        )

    def _plan(self, pair: PreferencePair, judgments: Sequence[Judgment], anchor: int):
        key = pair_key(pair)
        anchor_critique = (judgments[anchor].analysis or "", judgments[anchor].verdict)
        for i, j in enumerate(judgments):
            if i == anchor or not j.valid:  # invalid judgments take no part (method.md §4)
                continue
            position: Literal[1, 2] = (
                1 if random.Random(derive_seed(self.cfg.seed, key, "order", i)).random() < 0.5 else 2
            )
            candidate = (j.analysis or "", j.verdict)
            pair_of = (candidate, anchor_critique) if position == 1 else (anchor_critique, candidate)
            messages = reflection_prompt(pair, *pair_of, self.prompt_cfg)
            seed = derive_seed(self.cfg.seed, key, "stage2", i)
            if self.cfg.stage2_output == "verdict":  # one prefill: " 1" or " 2" after "<Result>Critique"
                params = SamplingParams(
                    n=1, temperature=0.0, max_new_tokens=1, seed=seed, stop=(), choices=VERDICT_CHOICES
                )
                yield PlannedReflection(
                    i, position, GenerationRequest(messages, params, verdict_prefix("critique")), True
                )
                continue
            params = SamplingParams(
                n=1,
                temperature=self.cfg.stage2_temperature,
                top_p=self.cfg.top_p,
                max_new_tokens=self.cfg.stage2_tokens,
                seed=seed,
            )
            yield PlannedReflection(i, position, GenerationRequest(messages, params))

    def finish(self, pending: Pending, stage2: Sequence[Generation] = ()) -> JudgeResult:
        """The final verdict, once no stage-2 round is left (`stage2`: the last round's answers, in plan order)."""
        p = self.answer(pending, stage2) if stage2 or pending.plan else pending
        if p.plan:
            raise ValueError(
                "stage 2 has another round planned: read each round with Steps.answer first, as the drivers do"
            )
        majority, majority_score = majority_vote(p.judgments)
        result = JudgeResult(
            preferred=majority,
            mode=p.mode,
            score=majority_score,
            judgments=p.judgments,
            anchor=p.anchor if p.mode == "reflect" else None,
            majority=majority,
            usage=p.usage,
            pair_id=p.pair.id,
            method=self.method.name,
        )
        if p.mode != "reflect":
            return result
        if p.anchor is None:  # no valid judgment: nothing to reflect on, no verdict
            return replace(result, stage2_skipped=True)
        reflections = tuple(sorted(p.answered, key=lambda r: r.index))  # the same trace whatever the rounds
        preferred, score = decide(p.judgments, p.anchor, reflections)
        not_asked = tuple(planned.index for planned in p.deferred)
        return replace(
            result,
            preferred=preferred,
            score=score,
            reflections=reflections,
            stage2_skipped=not reflections,
            usage=p.usage + p.stage2_usage,
            not_asked=not_asked,
        )


def _read_reflection(planned: PlannedReflection, gen: Generation) -> Reflection:
    c = gen.completions[0]
    if planned.verdict_only:  # the text is the chosen choice (" 1" or " 2"); an unanswered call has none
        verdict = VERDICT_CHOICES.index(c.text) + 1 if c.text in VERDICT_CHOICES else None
        return Reflection(
            index=planned.index,
            candidate_position=planned.candidate_position,
            better_than_anchor=verdict == planned.candidate_position,
            valid=verdict is not None,
            text=c.text,
            completion_tokens=len(c.token_ids),
            error="" if verdict is not None else "no choice (prompt too long)",
        )
    parsed = parse_output(c.text, "critique")
    return Reflection(
        index=planned.index,
        candidate_position=planned.candidate_position,
        better_than_anchor=parsed.verdict == planned.candidate_position,  # invalid -> not better (§4)
        valid=parsed.valid,
        text=c.text,
        completion_tokens=len(c.token_ids),
        error=parsed.error,
    )


# --------------------------------------------------------------------------- drivers


class Judge:
    """The method over a batch of pairs with one engine call per stage."""

    def __init__(self, engine: Engine, cfg: JudgeConfig = JudgeConfig(), prompt_cfg: PromptConfig = PromptConfig()):
        self.engine = engine
        self.steps = Steps(cfg, prompt_cfg)

    @property
    def cfg(self) -> JudgeConfig:
        return self.steps.cfg

    def judge(
        self, pairs: Sequence[PreferencePair], mode: Mode | None = None, n: int | None = None
    ) -> list[JudgeResult]:
        mode = mode or self.cfg.mode
        if not pairs:
            return []
        stage1 = self.engine.generate([self.steps.begin(p, mode, n) for p in pairs])
        pending = [self.steps.after_stage1(p, mode, g) for p, g in zip(pairs, stage1)]
        while any(pd.plan for pd in pending):  # one engine call per stage-2 round, for the whole batch
            answers = self.engine.generate([planned.request for pd in pending for planned in pd.plan])
            pending = [
                self.steps.answer(pd, part) if pd.plan else pd for pd, part in zip(pending, split(answers, pending))
            ]
        return [self.steps.finish(pd) for pd in pending]

    def judge_one(self, pair: PreferencePair, mode: Mode | None = None, n: int | None = None) -> JudgeResult:
        return self.judge([pair], mode, n)[0]


AsyncStage = Callable[[Sequence[GenerationRequest]], Awaitable[list[Generation]]]


async def ajudge(
    steps: Steps, pair: PreferencePair, mode: Mode, stage1: AsyncStage, stage2: AsyncStage, n: int | None = None
) -> JudgeResult:
    """One pair over async stage callables (e.g. two Serve deployments that batch across requests)."""
    gen = (await stage1([steps.begin(pair, mode, n)]))[0]
    pending = steps.after_stage1(pair, mode, gen)
    while pending.plan:
        pending = steps.answer(pending, await stage2([p.request for p in pending.plan]))
    return steps.finish(pending)


def split(answers: Sequence[Generation], pending: Sequence[Pending]) -> list[Sequence[Generation]]:
    """One engine call's answers for a batch, cut back into each pending pair's plan."""
    parts, at = [], 0
    for pd in pending:
        parts.append(answers[at : at + len(pd.plan)])
        at += len(pd.plan)
    return parts

"""The Hugging Face engine: batched sampling with a KV cache, written for judge workloads.

Why our own decode loop instead of `model.generate`:
- prefill once: a prompt with n samples is prefilled ONCE and its KV cache copied n times
  (`generate(num_return_sequences=n)` prefills it n times). Judge prompts are long and answers
  short, so the prefill dominates; `prefill_once=False` keeps the naive path for comparison;
- per-request parameters and seeds: each request has its own n, temperature, top-p, token budget,
  stop strings and seed, so a server can batch different requests and a request's samples depend
  only on its own seed;
- per-token log-probabilities of the chosen tokens under the model (temperature 1), which the
  confidence measure needs (method.md §4);
- shared prefixes: prompts of one call that share a long prefix (the 7 reflection prompts of a
  pair share the conversation and both responses) prefill it once, then each its own suffix;
- finished rows, and those of a request whose caller is gone (`cancel`), leave the batch at once.
Left padding with explicit position ids; fp32 on CPU, bf16 on GPU; `torch.inference_mode`."""

from __future__ import annotations

import copy
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

import reflectrm.engines.hf_cache as hf_cache
from reflectrm.config import ModelConfig
from reflectrm.engines.base import (
    Completion,
    Generation,
    GenerationRequest,
    PromptTooLongError,
    choice_split,
    generate_alone,
)
from reflectrm.models import load_model, load_tokenizer, render_chat, resolve_model
from reflectrm.records import Message


def pick_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":  # never bf16 on these CPUs: 15-40x slower (environment.md)
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


@dataclass
class _Row:
    """One sequence being decoded: sample `sample` of request `req`."""

    req: int
    sample: int
    generator: torch.Generator | None
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[tuple[tuple[int, float], ...]] = field(default_factory=list)  # params.top_logprobs > 0
    finish: str | None = None


class HFEngine:
    name = "hf"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch_rows: int = 64,
        max_prompt_tokens: int = 4096,
        prefill_once: bool = True,
        share_prefix: bool = True,
        min_shared_prefix: int = 64,
        model_name: str = "",
        enable_thinking: bool | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.max_batch_rows = max_batch_rows
        self.max_prompt_tokens = max_prompt_tokens
        self.prefill_once = prefill_once
        self.share_prefix = share_prefix  # prompts sharing >= min_shared_prefix tokens prefill that prefix once
        self.min_shared_prefix = min_shared_prefix
        self.model_name = model_name
        self.enable_thinking = enable_thinking
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        self.eos_ids = eos_ids
        self.pad_id = tokenizer.pad_token_id
        self._lock = threading.Lock()
        self._running: set[int] = set()  # id() of the requests in a generate() call now
        self._cancelled: set[int] = set()  # ...of those whose caller has gone (cancel)

    def cancel(self, request: GenerationRequest) -> bool:
        """Stop decoding `request` (its caller is gone): its rows leave the batch at the next token, a chunk of
        cancelled requests is skipped. Thread-safe; False (nothing kept) when it is not being generated."""
        with self._lock:
            if id(request) not in self._running:
                return False
            self._cancelled.add(id(request))
            return True

    @classmethod
    def from_config(cls, cfg: ModelConfig, **kwargs: Any) -> HFEngine:
        path = resolve_model(cfg.name)
        device = pick_device(cfg.device)
        tokenizer = load_tokenizer(path, cfg.trust_remote_code)
        model = load_model(path, pick_dtype(cfg.dtype, device), device, cfg.trust_remote_code)
        kwargs.setdefault("max_batch_rows", cfg.max_batch_rows)
        kwargs.setdefault("max_prompt_tokens", cfg.max_prompt_tokens)
        return cls(model, tokenizer, model_name=cfg.name, enable_thinking=cfg.enable_thinking, **kwargs)

    # ------------------------------------------------------------------ prompts

    def with_model(self, model: Any) -> HFEngine:
        """The same engine (tokenizer, limits) generating with another model: the trainer's rollout
        policy of this step. Nothing is copied but the reference; `self` is left as it was."""
        other = copy.copy(self)
        other.model = model
        return other

    def render(self, messages: tuple[Message, ...]) -> str:
        return render_chat(self.tokenizer, messages, self.enable_thinking)

    def encode(self, messages: tuple[Message, ...]) -> list[int]:
        return self.tokenizer(self.render(messages), add_special_tokens=False)["input_ids"]

    def count_tokens(self, messages: tuple[Message, ...]) -> int:
        return len(self.encode(messages))

    def count_text_tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    # ------------------------------------------------------------------ generation

    def prompt_ids(self, req: GenerationRequest) -> list[int]:
        """The request's prompt tokens: its chat-templated messages, then its assistant prefix (or its raw
        prompt_text, encoded as the tokenizer does by default, special tokens included)."""
        if req.prompt_text is not None:
            return self.tokenizer(req.prompt_text)["input_ids"]
        ids = self.encode(req.messages)
        if req.assistant_prefix:
            ids = ids + self.tokenizer(req.assistant_prefix, add_special_tokens=False)["input_ids"]
        return ids

    async def agenerate(self, request: GenerationRequest) -> Generation:
        return await generate_alone(self, request)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        keys = {id(r) for r in requests}
        with self._lock:
            self._running |= keys
        try:
            return self._generate(requests)
        finally:
            with self._lock:
                self._running -= keys
                self._cancelled -= keys

    def _generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        encoded = []
        for req in requests:
            ids = self.prompt_ids(req)
            if len(ids) > self.max_prompt_tokens:
                raise PromptTooLongError(len(ids), self.max_prompt_tokens)
            encoded.append(ids)
        choosing = [i for i, r in enumerate(requests) if r.params.choices]
        if choosing:  # one prefill each, no decoding; the rest decode as usual
            chosen = dict(zip(choosing, self._pick([requests[i] for i in choosing], [encoded[i] for i in choosing])))
            rest = [i for i in range(len(requests)) if i not in chosen]
            decoded = dict(zip(rest, self._generate([requests[i] for i in rest]) if rest else []))
            return [chosen[i] if i in chosen else decoded[i] for i in range(len(requests))]
        results: list[list[_Row]] = [[] for _ in requests]
        # Prompts that share a long prefix stay together (so the prefix is prefilled once per chunk);
        # long groups first; packed into chunks of at most max_batch_rows sequences.
        groups = (
            hf_cache.prefix_groups(encoded, self.min_shared_prefix)
            if self.share_prefix
            else [[i] for i in range(len(encoded))]
        )
        groups.sort(key=lambda g: -max(len(encoded[i]) for i in g))
        order = [i for g in groups for i in g]
        chunk: list[int] = []
        rows = 0
        for i in order:
            n = requests[i].params.n
            if chunk and rows + n > self.max_batch_rows:
                self._run_chunk(chunk, requests, encoded, results)
                chunk, rows = [], 0
            chunk.append(i)
            rows += n
        if chunk:
            self._run_chunk(chunk, requests, encoded, results)
        out = []
        for i, req in enumerate(requests):
            comps = tuple(self._completion(r, req) for r in results[i])
            out.append(Generation(len(encoded[i]), comps, tuple(encoded[i])))
        return out

    @torch.inference_mode()
    def _pick(self, requests: Sequence[GenerationRequest], encoded: list[list[int]]) -> list[Generation]:
        """Each request's choice: the one whose first token has the highest log-prob after its prompt."""
        out = []
        for start in range(0, len(requests), self.max_batch_rows):
            reqs = requests[start : start + self.max_batch_rows]
            splits = [choice_split(self.tokenizer, r.params.choices) for r in reqs]
            seqs = [q + common for q, (common, _) in zip(encoded[start : start + self.max_batch_rows], splits)]
            width = max(len(q) for q in seqs)
            pad = self.tokenizer.pad_token_id
            ids = torch.tensor([[pad] * (width - len(q)) + q for q in seqs], device=self.device)  # left-padded
            attn = torch.tensor([[0] * (width - len(q)) + [1] * len(q) for q in seqs], device=self.device)
            logits = (
                self.model(input_ids=ids, attention_mask=attn, use_cache=False, logits_to_keep=1).logits[:, -1].float()
            )
            logp = torch.log_softmax(logits, dim=-1)
            for row, req, seq, (_, options) in zip(logp, reqs, seqs, splits):
                k = max(range(len(options)), key=lambda j: float(row[options[j]]))
                comp = Completion(req.params.choices[k], (options[k],), (float(row[options[k]]),), "stop")
                out.append(Generation(len(seq), (comp,), tuple(seq)))
        return out

    def _completion(self, row: _Row, req: GenerationRequest) -> Completion:
        ids = [t for t in row.ids if t not in self.eos_ids]
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        for stop in req.params.stop:
            at = text.find(stop)
            if at >= 0:
                text = text[: at + len(stop)]
        return Completion(text, tuple(row.ids), tuple(row.logprobs), row.finish or "length", tuple(row.top))  # type: ignore[arg-type]

    @torch.inference_mode()
    def _run_chunk(
        self,
        chunk: list[int],
        requests: Sequence[GenerationRequest],
        encoded: list[list[int]],
        results: list[list[_Row]],
    ) -> None:
        dev = self.device
        if all(id(requests[i]) in self._cancelled for i in chunk):  # every caller of this chunk is gone
            return
        # Rows: one per (request, sample).
        rows: list[_Row] = []
        for i in chunk:
            p = requests[i].params
            for k in range(p.n):
                gen = None
                if p.temperature > 0:
                    gen = torch.Generator(device="cpu")
                    gen.manual_seed(_sample_seed(p.seed, k))
                rows.append(_Row(i, k, gen))
        prompts = [encoded[i] for i in chunk] if self.prefill_once else [encoded[r.req] for r in rows]
        cache = hf_cache.growing_cache(self.model.config)  # a module reference: benchmarks/kv_cache.py swaps it
        groups = (
            hf_cache.prefix_groups(prompts, self.min_shared_prefix) if self.prefill_once and self.share_prefix else []
        )
        if any(len(g) > 1 for g in groups):
            logits, mask, next_pos = self._prefill_shared(prompts, groups, cache)
        else:
            logits, mask, next_pos = self._prefill(prompts, cache, start=None)
        if self.prefill_once:  # copy each prompt's cache once per sample instead of recomputing it
            position = {req: b for b, req in enumerate(chunk)}
            expand = torch.tensor([position[r.req] for r in rows], device=dev)
            cache.batch_select_indices(expand)
            logits, mask, next_pos = logits[expand], mask[expand], next_pos[expand]

        params = [requests[r.req].params for r in rows]
        temps = torch.tensor([p.temperature for p in params], device=dev)
        top_ps = torch.tensor([p.top_p for p in params], device=dev)
        active = list(range(len(rows)))  # indices into `rows` of the sequences still in the batch
        step = 0
        max_steps = max(p.max_new_tokens for p in params)
        while active and step < max_steps:
            tokens = self._choose(logits, [rows[a] for a in active], temps, top_ps)
            all_logp = torch.log_softmax(logits, dim=-1)
            logp = all_logp.gather(1, tokens[:, None])[:, 0].tolist()
            k_top = max(params[a].top_logprobs for a in active)
            top = all_logp.topk(k_top, dim=-1) if k_top else None
            keep = []
            for j, a in enumerate(active):
                row, tok = rows[a], int(tokens[j])
                if id(requests[row.req]) in self._cancelled:  # its caller is gone: leave the batch
                    row.finish = "length"
                    continue
                row.ids.append(tok)
                row.logprobs.append(logp[j])
                if top is not None and params[a].top_logprobs:
                    k = params[a].top_logprobs
                    row.top.append(tuple(zip(top.indices[j, :k].tolist(), top.values[j, :k].tolist())))
                if tok in self.eos_ids or self._hit_stop(row, params[a].stop):
                    row.finish = "stop"
                elif len(row.ids) >= params[a].max_new_tokens:
                    row.finish = "length"
                else:
                    keep.append(j)
            step += 1
            if not keep:
                break
            if len(keep) < len(active):  # drop finished rows from the batch
                idx = torch.tensor(keep, device=dev)
                cache.batch_select_indices(idx)
                tokens, mask, next_pos, temps, top_ps = tokens[idx], mask[idx], next_pos[idx], temps[idx], top_ps[idx]
                active = [active[j] for j in keep]
            mask = torch.cat([mask, torch.ones((len(active), 1), dtype=mask.dtype, device=dev)], dim=1)
            out = self.model(
                input_ids=tokens[:, None],
                attention_mask=mask,
                position_ids=next_pos[:, None],
                past_key_values=cache,
                use_cache=True,
            )
            logits = out.logits[:, -1, :].float()
            next_pos = next_pos + 1
        for r in rows:
            results[r.req].append(r)
        for i in chunk:
            results[i].sort(key=lambda r: r.sample)

    def _prefill(
        self, seqs: list[list[int]], cache: Any, start: torch.Tensor | None, past_mask: torch.Tensor | None = None
    ):
        """Left-padded prefill of `seqs` into `cache` (after `past_mask` columns when extending a cache).
        `start` is each row's first position (0 for a fresh prompt). Returns last logits, mask, next positions."""
        dev = self.device
        width = max(len(p) for p in seqs)
        input_ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for b, p in enumerate(seqs):
            input_ids[b, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[b, width - len(p) :] = 1
        input_ids, mask = input_ids.to(dev), mask.to(dev)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        if start is not None:
            positions = positions + start[:, None]
        full_mask = mask if past_mask is None else torch.cat([past_mask, mask], dim=1)
        out = self.model(
            input_ids=input_ids,
            attention_mask=full_mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1, :].float(), full_mask, positions[:, -1] + 1

    def _prefill_shared(self, prompts: list[list[int]], groups: list[list[int]], cache: Any):
        """Prefill each group's shared prefix once, copy its cache to the group's members, then
        prefill each member's own suffix on top (stage 2's prompts of a pair share ~all of stage 1's)."""
        dev = self.device
        shared = [
            hf_cache.shared_prefix_length([prompts[i] for i in g]) if len(g) > 1 else len(prompts[g[0]]) - 1
            for g in groups
        ]
        _, group_mask, _ = self._prefill([prompts[g[0]][:n] for g, n in zip(groups, shared)], cache, start=None)
        member_group = {i: k for k, g in enumerate(groups) for i in g}
        idx = torch.tensor([member_group[i] for i in range(len(prompts))], device=dev)
        cache.batch_select_indices(idx)
        start = torch.tensor([shared[member_group[i]] for i in range(len(prompts))], device=dev)
        suffixes = [prompts[i][shared[member_group[i]] :] for i in range(len(prompts))]
        return self._prefill(suffixes, cache, start=start, past_mask=group_mask[idx])

    def _choose(
        self, logits: torch.Tensor, rows: list[_Row], temps: torch.Tensor, top_ps: torch.Tensor
    ) -> torch.Tensor:
        tokens = logits.argmax(dim=-1)
        sampling = [j for j, r in enumerate(rows) if r.generator is not None]
        if not sampling:
            return tokens
        idx = torch.tensor(sampling, device=logits.device)
        probs = torch.softmax(logits[idx] / temps[idx, None], dim=-1)
        p = top_ps[idx]
        if bool((p < 1.0).any()):  # nucleus: keep the smallest set of tokens whose mass reaches top_p
            sorted_p, sorted_i = probs.sort(dim=-1, descending=True)
            drop = (sorted_p.cumsum(-1) - sorted_p) >= p[:, None]
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, sorted_i, sorted_p)
        probs, chosen = probs.cpu(), tokens.cpu()
        for k, j in enumerate(sampling):  # each row draws from its own generator: batch-independent seeds
            chosen[j] = int(torch.multinomial(probs[k], 1, generator=rows[j].generator))
        return chosen.to(logits.device)

    def _hit_stop(self, row: _Row, stops: tuple[str, ...]) -> bool:
        if not stops:
            return False
        window = max(len(s) for s in stops) + 2
        tail = self.tokenizer.decode(row.ids[-window:], skip_special_tokens=True)
        return any(s in tail for s in stops)


def _sample_seed(seed: int | None, k: int) -> int:
    return int.from_bytes(os.urandom(4), "little") if seed is None else (seed * 1_000_003 + k) & 0x7FFFFFFFFFFF

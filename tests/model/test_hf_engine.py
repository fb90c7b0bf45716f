"""The Hugging Face engine on the tiny random model: shapes, seeds, prefill-once, stops, limits."""

from __future__ import annotations

import math

import pytest
import torch

from reflectrm.engines.base import GenerationRequest, PromptTooLongError, SamplingParams
from reflectrm.prompts import response_prompt
from reflectrm.records import Message
from tests.helpers import PAIR

LONG = response_prompt(PAIR)
SHORT = (Message("user", "hello there"),)


def tokens(gen):
    return [c.token_ids for c in gen.completions]


def test_shapes_and_logprobs(tiny_engine):
    reqs = [
        GenerationRequest(LONG, SamplingParams(n=3, max_new_tokens=7, seed=1)),
        GenerationRequest(SHORT, SamplingParams(n=2, max_new_tokens=5, seed=2)),
    ]
    out = tiny_engine.generate(reqs)
    assert [len(g.completions) for g in out] == [3, 2]
    assert out[0].prompt_tokens == tiny_engine.count_tokens(LONG) > out[1].prompt_tokens
    for g, req in zip(out, reqs):
        for c in g.completions:
            assert len(c.token_ids) == len(c.logprobs) <= req.params.max_new_tokens
            assert all(lp <= 0.0 and math.isfinite(lp) for lp in c.logprobs)
            assert c.finish_reason in ("stop", "length")


def assert_same_outputs(engine, reqs, attr, other_value):
    """Generating with engine.<attr> at its default and at `other_value` gives the same completions."""
    default = getattr(engine, attr)
    first = engine.generate(reqs)
    setattr(engine, attr, other_value)
    try:
        second = engine.generate(reqs)
    finally:
        setattr(engine, attr, default)
    assert [tokens(g) for g in first] == [tokens(g) for g in second]
    for a, b in zip(first, second):
        assert a.prompt_tokens == b.prompt_tokens
        for ca, cb in zip(a.completions, b.completions):
            assert ca.logprobs == pytest.approx(cb.logprobs, abs=1e-4)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_prefill_once_equals_naive_path(tiny_engine, temperature):
    reqs = [
        GenerationRequest(LONG, SamplingParams(n=4, temperature=temperature, max_new_tokens=12, seed=5)),
        GenerationRequest(SHORT, SamplingParams(n=2, temperature=temperature, max_new_tokens=12, seed=6)),
    ]
    assert_same_outputs(tiny_engine, reqs, "prefill_once", False)


def test_greedy_matches_transformers_generate(tiny_engine):
    out = tiny_engine.generate(
        [
            GenerationRequest(LONG, SamplingParams(n=1, temperature=0.0, max_new_tokens=10, stop=())),
            GenerationRequest(SHORT, SamplingParams(n=1, temperature=0.0, max_new_tokens=10, stop=())),
        ]
    )
    for messages, gen in zip([LONG, SHORT], out):
        ids = torch.tensor([tiny_engine.encode(messages)])
        ref = tiny_engine.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, do_sample=False)
        ref_ids = [t for t in ref[0, ids.shape[1] :].tolist()]
        got = list(gen.completions[0].token_ids)
        assert got == ref_ids[: len(got)]  # ours may stop at EOS where generate pads


def test_seeded_sampling_is_reproducible_and_seed_dependent(tiny_engine):
    req = lambda seed: [GenerationRequest(LONG, SamplingParams(n=3, temperature=1.0, max_new_tokens=10, seed=seed))]  # noqa: E731
    a, b, c = (tiny_engine.generate(req(s))[0] for s in (11, 11, 12))
    assert tokens(a) == tokens(b)
    assert tokens(a) != tokens(c)
    assert len(set(tokens(a))) > 1  # samples of one prompt differ from each other


def test_stop_string_ends_generation(tiny_engine):
    free = tiny_engine.generate(
        [GenerationRequest(SHORT, SamplingParams(n=1, temperature=0.0, max_new_tokens=12, stop=()))]
    )[0].completions[0]
    stop = tiny_engine.tokenizer.decode(list(free.token_ids[2:4]))
    assert stop.strip(), "the tiny model's greedy output should give a usable stop string"
    got = tiny_engine.generate(
        [GenerationRequest(SHORT, SamplingParams(n=1, temperature=0.0, max_new_tokens=12, stop=(stop,)))]
    )[0].completions[0]
    assert got.finish_reason == "stop" and got.text.endswith(stop) and len(got.token_ids) <= 4


def test_finished_rows_leave_the_batch_without_changing_others(tiny_engine):
    alone = tiny_engine.generate(
        [GenerationRequest(LONG, SamplingParams(n=1, temperature=0.0, max_new_tokens=15, stop=()))]
    )[0]
    mixed = tiny_engine.generate(
        [
            GenerationRequest(SHORT, SamplingParams(n=2, temperature=0.0, max_new_tokens=3, stop=())),
            GenerationRequest(LONG, SamplingParams(n=1, temperature=0.0, max_new_tokens=15, stop=())),
        ]
    )[1]
    assert tokens(mixed) == tokens(alone)


def test_prompt_over_the_limit_is_refused_with_counts(tiny_engine):
    old = tiny_engine.max_prompt_tokens
    tiny_engine.max_prompt_tokens = 20
    try:
        with pytest.raises(PromptTooLongError) as err:
            tiny_engine.generate([GenerationRequest(LONG, SamplingParams())])
    finally:
        tiny_engine.max_prompt_tokens = old
    assert err.value.limit == 20 and err.value.tokens > 20 and "limit is 20" in str(err.value)


def test_chunking_by_max_batch_rows_gives_the_same_answers(tiny_engine):
    reqs = [GenerationRequest(LONG, SamplingParams(n=3, temperature=1.0, max_new_tokens=6, seed=i)) for i in range(4)]
    assert_same_outputs(tiny_engine, reqs, "max_batch_rows", 4)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_shared_prefix_prefill_equals_separate_prefill(tiny_engine, temperature):
    from reflectrm.engines.hf_cache import prefix_groups
    from reflectrm.prompts import reflection_prompt

    reflections = [
        reflection_prompt(PAIR, (f"critique {k} says one thing", 1), ("the anchor says another", 2)) for k in range(5)
    ]
    reqs = [
        GenerationRequest(m, SamplingParams(n=1 + k % 2, temperature=temperature, max_new_tokens=10, seed=k))
        for k, m in enumerate(reflections)
    ]
    reqs.append(GenerationRequest(SHORT, SamplingParams(n=2, temperature=temperature, max_new_tokens=10, seed=9)))
    encoded = [tiny_engine.encode(r.messages) for r in reqs]
    assert sorted(len(g) for g in prefix_groups(encoded, tiny_engine.min_shared_prefix)) == [1, 5]  # the grouping fires
    assert_same_outputs(tiny_engine, reqs, "share_prefix", False)


def test_choices_read_the_next_token_after_the_assistant_prefix(tiny_engine):
    """Verdict-only reflection's engine call: one prefill, the choice whose first token the model
    rates highest after the prefix, with that token's log-prob (a forward pass checks it)."""
    from reflectrm.engines.base import choice_split
    from reflectrm.prompts import VERDICT_CHOICES, verdict_prefix

    msgs = response_prompt(PAIR)
    req = GenerationRequest(
        msgs, SamplingParams(max_new_tokens=1, temperature=0.0, stop=(), choices=VERDICT_CHOICES), verdict_prefix()
    )
    (gen,) = tiny_engine.generate([req])
    (c,) = gen.completions
    common, options = choice_split(tiny_engine.tokenizer, VERDICT_CHOICES)
    ids = (
        tiny_engine.encode(msgs)
        + tiny_engine.tokenizer(verdict_prefix(), add_special_tokens=False)["input_ids"]
        + common
    )
    with torch.no_grad():
        logp = torch.log_softmax(tiny_engine.model(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1)
    best = max(range(2), key=lambda k: float(logp[options[k]]))
    assert c.text == VERDICT_CHOICES[best] and c.token_ids == (options[best],)
    assert c.logprobs[0] == pytest.approx(float(logp[options[best]]), abs=1e-4)
    assert gen.prompt_tokens == len(ids)
    # mixed with ordinary requests in one call, each keeps its own kind
    plain = GenerationRequest(msgs, SamplingParams(max_new_tokens=3, temperature=0.0))
    a, b = tiny_engine.generate([plain, req])
    assert a.completions[0].text == tiny_engine.generate([plain])[0].completions[0].text and b == gen


def test_cancel_drops_a_request_from_the_running_batch_and_keeps_the_others(tiny_engine):
    """A request whose caller is gone (the service's deadline) stops decoding at the next token; the other
    request of the same call decodes to its end; nothing is kept after the call."""
    import threading
    import time

    def request(tokens: int) -> GenerationRequest:
        return GenerationRequest(SHORT, SamplingParams(n=2, temperature=0.0, max_new_tokens=tokens))

    full = tiny_engine.generate([request(300)])[0]  # greedy tiny-random: no end-of-sequence before 300 tokens
    assert [c.finish_reason for c in full.completions] == ["length", "length"]
    assert not tiny_engine.cancel(request(300))  # not being generated: nothing to stop, nothing kept
    doomed, other, out = request(300), request(300), {}
    worker = threading.Thread(target=lambda: out.update(gens=tiny_engine.generate([doomed, other])))
    worker.start()
    while not tiny_engine.cancel(doomed):  # True once the call is running
        time.sleep(0.005)
    worker.join()
    cut, kept = out["gens"]
    assert all(len(c.token_ids) < 300 for c in cut.completions)
    assert [c.token_ids for c in kept.completions] == [c.token_ids for c in full.completions]
    assert not tiny_engine._cancelled and not tiny_engine._running

"""The `reflectrm` command. Settings are the same dotted overrides as the jobs' (`model=NAME`,
`judge.n=8`, `judge.mode=majority`, `model.engine=vllm`, `prompt.suffix=/no_think`), so a new knob
is added once, in its config section (reflectrm/config.py).

    reflectrm judge --prompt TEXT --response-1 TEXT --response-2 TEXT [judge.mode=reflect ...] [--json]
    reflectrm judge --input pairs.jsonl --output results.jsonl [model=PATH judge.n=8 ...]
    reflectrm data inspect PATH --format llmbar
    reflectrm data synth --n 2000 --output synth.parquet
    reflectrm models prepare smollm2-135m-instruct
    reflectrm models list
    reflectrm serve [model=NAME ...] [--host 127.0.0.1] [--port 8000]      (serve/cli.py)

Bad arguments give a one-line error and exit code 2. `--json` output is pure: while the engine
loads and runs, everything else written to stdout (by Python, C code or vLLM's engine process) goes
to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

from reflectrm.config import ConfigError, JudgeConfig, ModelConfig, PromptConfig, SettingsParser, load_config
from reflectrm.data.formats import FORMATS
from reflectrm.requests import InvalidRequest, pair_from_request

# Flags of earlier versions, now dotted overrides: a one-line hint instead of argparse's bare error.
RETIRED_FLAGS = {
    "--model": "model=NAME",
    "--engine": "model.engine=vllm",
    "--mode": "judge.mode=majority",
    "--n": "judge.n=8",
    "--max-new-tokens": "judge.max_new_tokens=256",
    "--temperature": "judge.temperature=1.0",
    "--seed": "judge.seed=0",
    "--suffix": "prompt.suffix=/no_think",
    "--trust-remote-code": "model.trust_remote_code=true",
    "--batch-size": "batch_size=8",
}


@dataclasses.dataclass(frozen=True)
class JudgeCommand:
    """What `reflectrm judge` reads from `--config FILE` and `KEY=VALUE` overrides."""

    model: ModelConfig = ModelConfig()
    prompt: PromptConfig = PromptConfig()
    judge: JudgeConfig = JudgeConfig()
    batch_size: int = 8  # pairs per engine call with --input

    def __post_init__(self) -> None:
        from reflectrm.methods import spec_for

        spec_for(self.judge.method).check_mode(self.judge.mode)  # before a model loads


class UsageError(Exception):
    """The user's arguments or input are wrong; the message says how to fix them."""


class _Parser(SettingsParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's default prints the usage too)
        hint = next(
            (
                f" (now a dotted override: {new})"
                for old, new in RETIRED_FLAGS.items()
                if f"{old} " in f"{message} " or f"{old}," in message
            ),
            "",
        )
        if "'serve'" in message:
            hint = " (`reflectrm serve` is the console script's command: serve/cli.py)"
        print(f"{self.prog}: error: {message}{hint}", file=sys.stderr)
        raise SystemExit(2)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def build_parser() -> tuple[argparse.ArgumentParser, Any]:
    """(the parser, its subcommands): serve/cli.py adds `serve` to the same parser."""
    parser = _Parser(prog="reflectrm", description="Self-reflective generative reward models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    j = sub.add_parser("judge", help="judge one pair, or a JSONL file of pairs")
    j.add_argument(
        "overrides",
        nargs="*",
        help="dotted settings, e.g. model=tiny-random judge.n=8 judge.mode=majority model.engine=hf",
    )
    j.add_argument("--config", help="a YAML file of the same settings (model:, judge:, prompt:, batch_size:)")
    j.add_argument("--prompt", help="the user prompt (or use --messages)")
    j.add_argument("--messages", help="the conversation as a JSON list of {role, content}")
    j.add_argument("--response-1", dest="response_1")
    j.add_argument("--response-2", dest="response_2")
    j.add_argument(
        "--input", type=Path, help="JSONL/JSON/Parquet rows with prompt (or messages), response_1, response_2"
    )
    j.add_argument("--output", type=Path, help="where --input's results go (JSONL)")
    j.add_argument(
        "--json", action="store_true", help="print the whole result as one JSON object (and nothing else on stdout)"
    )

    d = sub.add_parser("data", help="inspect a preference file, or write the synthetic set")
    dsub = d.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    ins = dsub.add_parser("inspect", help="counts, label balance, subsets and token lengths of a file")
    ins.add_argument("path")
    ins.add_argument("--format", required=True, choices=sorted(FORMATS), help="the file's format")
    ins.add_argument("--model", default=ModelConfig.name, help="whose tokenizer counts the tokens")
    ins.add_argument("--on-bad-row", choices=("error", "skip"), default="error")
    syn = dsub.add_parser("synth", help="write the synthetic verifiable preference set (canonical rows)")
    syn.add_argument("--n", type=_positive_int, required=True)
    syn.add_argument("--output", type=Path, required=True, help=".jsonl or .parquet")
    syn.add_argument("--seed", type=int, default=0)

    c = sub.add_parser("compare", help="two evaluations of the same pairs, paired (difference, McNemar)")
    c.add_argument("run_a", help="evaluation A: a results.json, or the folder that holds one")
    c.add_argument("run_b", help="evaluation B, on the same pairs")
    c.add_argument("--json", action="store_true", help="print the comparison as JSON")

    m = sub.add_parser("models", help="prepare or list the built-in model aliases")
    msub = m.add_subparsers(dest="models_command", required=True, parser_class=_Parser)
    prep = msub.add_parser("prepare", help="build an alias into the cache ($REFLECTRM_HOME)")
    prep.add_argument("name")
    msub.add_parser("list", help="list the aliases and where they are cached")
    return parser, sub


def main(argv: Sequence[str] | None = None) -> int:
    parser, _ = build_parser()
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "judge":
            return _judge(args)
        if args.command == "models":
            return _models(args)
        if args.command == "data":
            return _data(args)
        if args.command == "compare":
            return _compare(args)
    except (UsageError, ConfigError, InvalidRequest, FileNotFoundError, ValueError) as err:
        print(f"reflectrm {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


# --------------------------------------------------------------------------- judge


def _pair_from_args(args: argparse.Namespace) -> Any:
    if (args.prompt is None) == (args.messages is None):
        raise UsageError("give exactly one of --prompt or --messages (or use --input FILE)")
    if not args.response_1 or not args.response_2:
        raise UsageError("--response-1 and --response-2 are required and must not be empty")
    messages = None
    if args.messages is not None:
        try:
            messages = json.loads(args.messages)
        except json.JSONDecodeError as err:
            raise UsageError(f"--messages is not valid JSON ({err.msg} at char {err.pos})") from None
    try:
        return pair_from_request(args.prompt, messages, args.response_1, args.response_2)
    except InvalidRequest as err:  # the same checks as the service's, named as flags here
        raise UsageError(f"--{err.field.replace('_', '-')}: {err.message}") from None


@contextlib.contextmanager
def _data_stdout() -> Iterator[IO[str]]:
    """A stream for the command's data; meanwhile file descriptor 1 (Python, C code, child
    processes started now, such as vLLM's engine core) writes to stderr. vLLM's own log handler
    is pointed at stderr too, for the lines it writes after we return (its shutdown)."""
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    data = os.fdopen(os.dup(saved), "w")
    try:
        yield data
    finally:
        data.flush()
        data.close()
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _judge(args: argparse.Namespace) -> int:
    if args.input is None and args.output is not None:
        raise UsageError("--output needs --input")
    if args.input and args.output is None:
        raise UsageError("--input needs --output FILE for the results")
    cfg = load_config(JudgeCommand, args.config, args.overrides)
    if args.input:
        from reflectrm.data.formats import load_pairs

        pairs, _ = load_pairs("judge-input", args.input)
    else:
        pairs = [_pair_from_args(args)]
    if args.json:
        with _data_stdout() as data:
            results = _run_judge(cfg, pairs[:1])
            data.write(json.dumps(results[0].to_dict(), indent=2) + "\n")
        return 0
    if args.input is None:
        print(_describe(_run_judge(cfg, pairs)[0].to_dict()))
        return 0
    counts = {1: 0, 2: 0, None: 0}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w") as out:
        for result in _run_judge(cfg, pairs, progress=True):
            out.write(json.dumps(result.to_dict()) + "\n")
            counts[result.preferred] += 1
    print(
        f"{len(pairs)} pairs -> {args.output}: response 1 preferred {counts[1]}, response 2 {counts[2]}, no valid verdict {counts[None]}"
    )
    return 0


def _run_judge(cfg: JudgeCommand, pairs: Sequence[Any], progress: bool = False) -> list[Any]:
    from tqdm import tqdm

    from reflectrm.engines import load_engine
    from reflectrm.inference import Judge

    if cfg.judge.method == "critic_rm":
        return _run_critic(cfg, pairs, progress)
    engine = load_engine(cfg.model)
    judge = Judge(engine, cfg.judge, cfg.prompt)
    results = []
    with tqdm(total=len(pairs), desc=f"judge ({cfg.judge.mode})", unit="pair", disable=not progress) as bar:
        for start in range(0, len(pairs), cfg.batch_size):
            batch = judge.judge(pairs[start : start + cfg.batch_size])
            results += batch
            bar.update(len(batch))
    if hasattr(engine, "close"):
        engine.close()
    return results


def _run_critic(cfg: JudgeCommand, pairs: Sequence[Any], progress: bool) -> list[Any]:
    """Critic-RM: m critiques of each response (1 greedy in mode greedy, else judge.n sampled), each read by
    the reward head saved beside the model (the HF engine: the head needs hidden states)."""
    from tqdm import tqdm

    from reflectrm.critic_judge import CriticJudge

    judge = CriticJudge.for_config(cfg.model, cfg.judge, cfg.prompt)
    m = judge.m
    with tqdm(total=len(pairs), desc=f"judge (critic_rm, m={m})", unit="pair", disable=not progress) as bar:
        results = []
        for p in pairs:
            results += judge.judge([p])
            bar.update(1)
    return results


def _describe(r: dict[str, Any]) -> str:
    from reflectrm.report import table

    if r.get("method") == "critic_rm":
        rows = [
            [i + 1, k, c["score"], c["reward"], c["completion_tokens"]]
            for i, side in enumerate(r["critiques"])
            for k, c in enumerate(side)
        ]
        head = table(["response", "critique", "score", "reward", "tokens"], rows)
        return f"{head}\n\nmode={r['mode']}  preferred={r['preferred']}  score={r['score']:.3f}  rewards={r['rewards']}  tokens={r['usage']}"

    rows = [
        [i, j["verdict"], j["valid"], j["confidence"], j["completion_tokens"], "anchor" if i == r["anchor"] else ""]
        for i, j in enumerate(r["judgments"])
    ]
    better = {x["index"]: x["better_than_anchor"] for x in r["reflections"]}
    for row in rows:
        row.append(better.get(row[0], ""))
    lines = [
        table(["#", "verdict", "valid", "confidence", "tokens", "", "beats anchor"], rows),
        "",
        f"mode={r['mode']}  preferred={r['preferred']}  score={r['score']:.3f}  majority={r['majority']}  "
        f"stage2_skipped={r['stage2_skipped']}  tokens={r['usage']}",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- compare


def _compare(args: argparse.Namespace) -> int:
    from reflectrm import comparison

    a, b = comparison.load_results(args.run_a), comparison.load_results(args.run_b)
    compared = comparison.compare(a["results"], b["results"])
    if args.json:
        print(json.dumps({"a": args.run_a, "b": args.run_b, "method": comparison.METHOD, "results": compared}))
    else:
        print(comparison.markdown(compared, f"{args.run_a} ({a['model']})", f"{args.run_b} ({b['model']})"))
    return 0


# --------------------------------------------------------------------------- data


def _data(args: argparse.Namespace) -> int:
    from reflectrm.data.codec import write_pairs
    from reflectrm.data.formats import load_pairs

    if args.data_command == "synth":
        from reflectrm.data.synthetic import synthetic_pairs

        pairs = synthetic_pairs(args.n, seed=args.seed)
        write_pairs(pairs, args.output)
        print(f"wrote {len(pairs)} synthetic pairs to {args.output}")
        return 0
    pairs, stats = load_pairs(args.format, args.path, on_bad_row=args.on_bad_row)
    from collections import Counter

    from reflectrm.models import count_chat_tokens, load_tokenizer, resolve_model
    from reflectrm.prompts import response_prompt
    from reflectrm.report import table

    tok = load_tokenizer(resolve_model(args.model))
    count = lambda text: len(tok(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    prompt_lens = sorted(count_chat_tokens(tok, response_prompt(p)) for p in pairs)
    resp_lens = sorted(count(r) for p in pairs for r in (p.response_1, p.response_2))
    labels = Counter(p.label for p in pairs)
    print(
        f"{args.path} ({args.format}): {stats.rows_read} rows read, {stats.pairs} pairs, {stats.bad_rows} bad rows skipped, {stats.ties_dropped} ties dropped"
    )
    print(f"labels: response 1 better {labels[1]}, response 2 better {labels[2]}, unlabelled {labels[None]}")
    subsets = Counter(p.subset or "-" for p in pairs)
    print(table(["subset", "pairs"], sorted(subsets.items(), key=lambda kv: -kv[1])[:30]))
    pct = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))]  # noqa: E731
    print(
        table(
            ["tokens", "mean", "p50", "p95", "max"],
            [
                [
                    "judge prompt",
                    sum(prompt_lens) / len(prompt_lens),
                    pct(prompt_lens, 0.5),
                    pct(prompt_lens, 0.95),
                    prompt_lens[-1],
                ],
                ["response", sum(resp_lens) / len(resp_lens), pct(resp_lens, 0.5), pct(resp_lens, 0.95), resp_lens[-1]],
            ],
        )
    )
    return 0


# --------------------------------------------------------------------------- models


def _models(args: argparse.Namespace) -> int:
    from reflectrm.models import ALIASES, TRAINED, home, resolve_model

    if args.models_command == "list":
        for alias in ALIASES:
            print(alias)
        print(f"cache: {home() / 'models'}")
        return 0
    if args.name not in ALIASES:
        raise UsageError(f"unknown alias {args.name!r}; aliases: {', '.join(ALIASES)}")
    if args.name in TRAINED:  # built by training: this command sits above the trainer, the registry below it
        from reflectrm.training.tiny_judge import prepare

        print(prepare())
        return 0
    print(resolve_model(args.name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())  # every command but `serve`; the console script `reflectrm` has them all

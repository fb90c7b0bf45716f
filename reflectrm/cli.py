"""The `reflectrm` command.

    reflectrm judge --prompt TEXT --response-1 TEXT --response-2 TEXT [--mode reflect] [--json]
    reflectrm judge --input pairs.jsonl --output results.jsonl
    reflectrm data inspect PATH --format llmbar
    reflectrm data synth --n 2000 --output synth.parquet
    reflectrm models prepare smollm2-135m-instruct
    reflectrm models list
    reflectrm serve --model smollm2-135m-instruct [--host 127.0.0.1] [--port 8000]

Bad arguments give a one-line error and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from reflectrm.config import ConfigError, JudgeConfig, ModelConfig, PromptConfig
from reflectrm.data.loaders import FORMATS
from reflectrm.inference import MODES
from reflectrm.records import PreferencePair, messages_from

ENGINES = ("auto", "hf", "vllm")


class UsageError(Exception):
    """The user's arguments or input are wrong; the message says how to fix them."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's default prints the usage too)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reflectrm", description="Self-reflective generative reward models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    j = sub.add_parser("judge", help="judge one pair, or a JSONL file of pairs")
    j.add_argument("--model", default=ModelConfig.name, help="alias, local HF folder or hub id")
    j.add_argument("--engine", choices=ENGINES, default=ModelConfig.engine, help="auto: vllm where installed, else hf")
    j.add_argument("--prompt", help="the user prompt (or use --messages)")
    j.add_argument("--messages", help="the conversation as a JSON list of {role, content}")
    j.add_argument("--response-1", dest="response_1")
    j.add_argument("--response-2", dest="response_2")
    j.add_argument("--input", type=Path, help="JSONL/JSON/Parquet rows with prompt (or messages), response_1, response_2")
    j.add_argument("--output", type=Path, help="where --input's results go (JSONL)")
    j.add_argument("--mode", choices=MODES, default=JudgeConfig.mode)
    j.add_argument("--n", type=_positive_int, default=JudgeConfig.n, help="stage-1 samples")
    j.add_argument("--max-new-tokens", type=_positive_int, default=JudgeConfig.max_new_tokens)
    j.add_argument("--temperature", type=float, default=JudgeConfig.temperature)
    j.add_argument("--seed", type=int, default=JudgeConfig.seed)
    j.add_argument("--suffix", default=PromptConfig.suffix, help="appended to every prompt, e.g. /no_think")
    j.add_argument("--batch-size", type=_positive_int, default=8, help="pairs per engine call with --input")
    j.add_argument("--trust-remote-code", action="store_true", help="allow the model folder's own code (off by default)")
    j.add_argument("--json", action="store_true", help="print the whole result as one JSON object")

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

    m = sub.add_parser("models", help="prepare or list the built-in model aliases")
    msub = m.add_subparsers(dest="models_command", required=True, parser_class=_Parser)
    prep = msub.add_parser("prepare", help="build an alias into the cache ($REFLECTRM_HOME)")
    prep.add_argument("name")
    msub.add_parser("list", help="list the aliases and where they are cached")

    s = sub.add_parser("serve", help="the HTTP judge service on a local Ray (serve/app.py); Ctrl-C stops it")
    s.add_argument("--model", default=ModelConfig.name, help="alias, local HF folder or hub id")
    s.add_argument("--engine", choices=ENGINES, default=ModelConfig.engine, help="auto: vllm where installed, else hf")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default: this machine only)")
    s.add_argument("--port", type=_positive_int, default=8000)
    s.add_argument("--num-cpus", type=_positive_int, default=None, help="logical CPUs of the local Ray")
    s.add_argument("--n", type=_positive_int, default=JudgeConfig.n, help="default stage-1 samples per request")
    s.add_argument("--max-new-tokens", type=_positive_int, default=JudgeConfig.max_new_tokens, help="default per request")
    s.add_argument("--trust-remote-code", action="store_true", help="allow the model folder's own code (off by default)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "judge":
            return _judge(args)
        if args.command == "models":
            return _models(args)
        if args.command == "data":
            return _data(args)
        if args.command == "serve":
            # The one hand-off from the library's CLI to the app layer, by name: the library itself never imports Ray.
            importlib.import_module("serve.cli").run(
                args.model, args.host, args.port, args.num_cpus, engine=args.engine, trust_remote_code=args.trust_remote_code,
                judge={"n": args.n, "max_new_tokens": args.max_new_tokens},
            )
            return 0
    except (UsageError, ConfigError, FileNotFoundError, ValueError) as err:
        print(f"reflectrm {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


# --------------------------------------------------------------------------- judge


def _pair_from_args(args: argparse.Namespace) -> PreferencePair:
    if (args.prompt is None) == (args.messages is None):
        raise UsageError("give exactly one of --prompt or --messages (or use --input FILE)")
    if not args.response_1 or not args.response_2:
        raise UsageError("--response-1 and --response-2 are required and must not be empty")
    context: Any = args.prompt
    if args.messages is not None:
        try:
            context = json.loads(args.messages)
        except json.JSONDecodeError as err:
            raise UsageError(f"--messages is not valid JSON ({err.msg} at char {err.pos})") from None
        if not isinstance(context, list):
            raise UsageError("--messages must be a JSON list of {role, content} objects")
    if isinstance(context, str) and not context.strip():
        raise UsageError("--prompt must not be empty")
    return PreferencePair("", messages_from(context), args.response_1, args.response_2)


def _judge(args: argparse.Namespace) -> int:
    if args.input is None and args.output is not None:
        raise UsageError("--output needs --input")
    if args.input and args.output is None:
        raise UsageError("--input needs --output FILE for the results")
    if args.input:
        from reflectrm.data.loaders import load_pairs

        pairs, _ = load_pairs("judge-input", args.input)
    else:
        pairs = [_pair_from_args(args)]
    cfg = JudgeConfig(mode=args.mode, n=args.n, max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)

    from reflectrm.engines import load_engine
    from reflectrm.inference import Judge

    engine = load_engine(ModelConfig(name=args.model, engine=args.engine, trust_remote_code=args.trust_remote_code))
    judge = Judge(engine, cfg, PromptConfig(suffix=args.suffix))
    if args.input is None:
        result = judge.judge_one(pairs[0])
        print(json.dumps(result.to_dict(), indent=2) if args.json else _describe(result.to_dict()))
        return 0

    from tqdm import tqdm

    args.output.parent.mkdir(parents=True, exist_ok=True)
    counts = {1: 0, 2: 0, None: 0}
    with open(args.output, "w") as out, tqdm(total=len(pairs), desc=f"judge ({args.mode})", unit="pair") as bar:
        for start in range(0, len(pairs), args.batch_size):
            for result in judge.judge(pairs[start : start + args.batch_size]):
                out.write(json.dumps(result.to_dict()) + "\n")
                counts[result.preferred] += 1
                bar.update(1)
    print(f"{len(pairs)} pairs -> {args.output}: response 1 preferred {counts[1]}, response 2 {counts[2]}, no valid verdict {counts[None]}")
    return 0


def _describe(r: dict[str, Any]) -> str:
    from reflectrm.report import table

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


# --------------------------------------------------------------------------- data


def _data(args: argparse.Namespace) -> int:
    from reflectrm.data.loaders import load_pairs, write_pairs

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
    print(f"{args.path} ({args.format}): {stats.rows_read} rows read, {stats.pairs} pairs, {stats.bad_rows} bad rows skipped, {stats.ties_dropped} ties dropped")
    print(f"labels: response 1 better {labels[1]}, response 2 better {labels[2]}, unlabelled {labels[None]}")
    subsets = Counter(p.subset or "-" for p in pairs)
    print(table(["subset", "pairs"], sorted(subsets.items(), key=lambda kv: -kv[1])[:30]))
    pct = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))]  # noqa: E731
    print(table(["tokens", "mean", "p50", "p95", "max"], [
        ["judge prompt", sum(prompt_lens) / len(prompt_lens), pct(prompt_lens, 0.5), pct(prompt_lens, 0.95), prompt_lens[-1]],
        ["response", sum(resp_lens) / len(resp_lens), pct(resp_lens, 0.5), pct(resp_lens, 0.95), resp_lens[-1]],
    ]))
    return 0


# --------------------------------------------------------------------------- models


def _models(args: argparse.Namespace) -> int:
    from reflectrm.models import ALIASES, home, resolve_model

    if args.models_command == "list":
        for alias in ALIASES:
            print(alias)
        print(f"cache: {home() / 'models'}")
        return 0
    if args.name not in ALIASES:
        raise UsageError(f"unknown alias {args.name!r}; aliases: {', '.join(ALIASES)}")
    print(resolve_model(args.name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

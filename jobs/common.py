"""What every job entry does first and last: parse `--config FILE` plus dotted overrides into a
typed config, show a short summary of it, and turn a user's mistake into one line and exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence, TypeVar

from reflectrm.config import ConfigError, SettingsParser, load_config, to_dict

T = TypeVar("T")


def parse_job_config(cls: type[T], argv: Sequence[str] | None, description: str) -> T:
    parser = SettingsParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config file (jobs/configs/...)")
    parser.add_argument(
        "--verbose", action="store_true", help="show Ray Data's, Ray Train's and vLLM's own logs (ray.verbose=true)"
    )
    resumable = "fresh" in {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if resumable:
        parser.add_argument(
            "--fresh",
            action="store_true",
            help="start afresh: drop finished work made with other settings (fresh=true)",
        )
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. judge.n=4 model.name=tiny-random")
    args = parser.parse_args(argv)
    overrides = [*args.overrides, *(["ray.verbose=true"] if args.verbose else [])]
    if resumable and args.fresh:
        overrides.append("fresh=true")
    try:
        return load_config(cls, args.config, overrides)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


@contextlib.contextmanager
def user_errors(job: str) -> Iterator[None]:
    """A mistake the user can fix (bad data, a missing file) ends the job with its message and exit 2."""
    try:
        yield
    except (ValueError, FileNotFoundError) as err:
        print(f"{job}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def run_folder(cfg: object, output: str) -> Path:
    """A job's output folder, with the resolved config saved in it (config.json) for the record."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
    return out


def describe(job: str, out: Path, **settings: Any) -> str:
    """The few lines a job prints first: what runs, with which settings, and where everything goes."""
    shown = "  ".join(f"{k}={v}" for k, v in settings.items() if v is not None)
    return f"{job}: {shown}\n  output {out} (the whole config: config.json; Ray's and vLLM's logs: logs/)"


def follow_progress(fit: Any, metrics: Path, total: int, initial: int, desc: str) -> None:
    """Run `fit` on a thread; meanwhile a bar on the driver follows the steps in metrics.jsonl."""
    from tqdm import tqdm

    from reflectrm.training.run_log import read_metrics

    failure: list[BaseException] = []

    def run() -> None:
        try:
            fit()
        except BaseException as err:  # noqa: BLE001 (re-raised on the driver's thread below)
            failure.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    with tqdm(total=total, initial=initial, desc=desc, unit="step") as bar:
        while thread.is_alive():
            thread.join(timeout=1.0)
            rows = read_metrics(metrics)
            if rows and rows[-1]["step"] > bar.n:
                bar.update(rows[-1]["step"] - bar.n)
                bar.set_postfix_str(
                    " ".join(f"{k} {rows[-1][k]:.3f}" for k in ("loss", "reward_mean", "valid_rate") if k in rows[-1])
                )
    if failure:
        raise failure[0]

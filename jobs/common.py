"""What every job entry does first: parse `--config FILE` plus dotted overrides into a typed config."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Literal, Sequence, TypeVar

from reflectrm.config import ConfigError, load_config, to_dict

T = TypeVar("T")


def parse_job_config(cls: type[T], argv: Sequence[str] | None, description: str) -> T:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", help="YAML config file (jobs/configs/...)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. judge.n=4 model.name=tiny-random")
    args = parser.parse_args(argv)
    try:
        return load_config(cls, args.config, args.overrides)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """A job's input pairs."""

    format: str = "synthetic"  # a loader format (reflectrm.data.loaders.FORMATS), or synthetic
    path: str = "2000"  # file / hub id; for synthetic: how many pairs
    limit: int | None = None  # at most this many pairs
    on_bad_row: Literal["error", "skip"] = "error"  # skip: count bad rows instead of stopping


def run_folder(cfg: object, output: str) -> Path:
    """A job's output folder, with the resolved config saved in it (config.json) for the record."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
    return out

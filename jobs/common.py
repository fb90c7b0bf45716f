"""What every job entry does first: parse `--config FILE` plus dotted overrides into a typed config."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence, TypeVar

from reflectrm.config import ConfigError, load_config

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

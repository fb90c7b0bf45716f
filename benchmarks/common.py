"""What every benchmark shares: its command line and set-up, where the data is, and where its JSON goes.

ap = parser("kv_cache", __doc__)          # --output defaults to benchmarks/results/kv_cache.json
ap.add_argument("--pairs", type=int, default=8)
args = parse(ap)                          # plus the set-up every benchmark needs
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"


def write_report(report: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")


def parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's argument parser, with `--output` (default: results/NAME.json)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", default=str(RESULTS / f"{name}.json"), help="where the JSON report goes")
    return ap


def parse(ap: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse, and set up what every benchmark needs: no hub access, the embedded Ray without token auth."""
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # the embedded local Ray is single-user
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return args

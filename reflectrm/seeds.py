"""Seeds derived from names: the one source of every seeded draw (judging, data building, training).

A layer-0 module, so data/ and training/ need not import inference for it."""

from __future__ import annotations

import hashlib


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any parts (same parts -> same seed, on any machine)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF

"""The result store: a folder of Parquet parts written as results arrive, read back once per id, and
fingerprinted by the settings that made them, so a resume never mixes results of other settings.

A re-run reads the ids already written and skips them, so a crash loses at most one batch of work.
build_data keeps its graded judgments here, score and evaluate their result rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any


class SettingsMismatch(ValueError):
    """A resume into a folder whose rows were made with other settings (it would mix them)."""


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out |= _flat(v, f"{prefix}.{k}" if prefix else str(k))
    return out


class PartStore:
    """A folder of Parquet parts with one row per id; written atomically, read back deduplicated.

    `settings` (reflectrm.config.result_settings): what made the rows. The folder records them in
    settings.json with their fingerprint; a later store over the same folder with other settings
    raises SettingsMismatch naming what differs, unless `fresh` (then the old parts go)."""

    def __init__(self, folder: str | Path, settings: dict[str, Any] | None = None, fresh: bool = False):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if settings is not None:
            self._check(json.loads(json.dumps(settings)), fresh)

    def _check(self, settings: dict[str, Any], fresh: bool) -> None:
        record = self.folder / "settings.json"
        parts = self.parts()
        if fresh:
            for p in parts:
                p.unlink()
        elif parts:
            old = json.loads(record.read_text())["settings"] if record.is_file() else None
            if old is None:
                raise SettingsMismatch(
                    f"{self.folder} holds results with no record of their settings (made by an older version), "
                    "so a resume could mix settings: add --fresh (fresh=true) to start afresh, or choose another output"
                )
            was, now = _flat(old), _flat(settings)
            differ = [
                f"{k}: {was.get(k)!r} -> {now.get(k)!r}"
                for k in sorted(set(was) | set(now))
                if was.get(k) != now.get(k)
            ]
            if differ:
                raise SettingsMismatch(
                    f"{self.folder} holds {len(parts)} parts made with other settings ({'; '.join(differ)}); "
                    "resuming would mix them: add --fresh (fresh=true) to start afresh, or choose another output"
                )
        fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        record.write_text(json.dumps({"fingerprint": fingerprint, "settings": settings}, indent=2))

    def parts(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.parquet"))

    def done_ids(self) -> set[str]:
        import pyarrow.parquet as pq

        return {i for p in self.parts() for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()}

    def write(self, rows: list[dict[str, Any]] | Any) -> Path | None:
        """Rows (dicts, or an Arrow table as a Ray Data batch comes) as one new part."""
        if not len(rows):
            return None
        import pyarrow as pa
        import pyarrow.parquet as pq

        name = f"part-{len(self.parts()):06d}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = self.folder / f".{name}.tmp"
        pq.write_table(rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows), tmp)
        os.replace(tmp, self.folder / name)  # a part is either whole or absent
        return self.folder / name

    def read_all(self) -> list[dict[str, Any]]:
        """Every row once (first part wins), in id order, so the result never depends on timing."""
        import pyarrow.parquet as pq

        seen: dict[str, dict[str, Any]] = {}
        for p in self.parts():
            for row in pq.read_table(p).to_pylist():
                seen.setdefault(row["id"], row)
        return [seen[k] for k in sorted(seen)]

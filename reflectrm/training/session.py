"""Where a worker's items come from and where its results go: the `Session` Protocol, and `LocalSession`
(one plain process, no Ray). The Ray Train session is jobs/ray_training.py's RaySession."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

from reflectrm.data.items import TrainingItem


class Session(Protocol):
    """Where a worker's items come from and where its results go."""

    output: Path  # metrics.jsonl, events.jsonl, final/ (on shared storage when there are several nodes)

    def batches(self, epoch: int) -> Iterable[list[TrainingItem]]: ...
    def checkpoint_dir(self) -> Path | None: ...  # the latest checkpoint to resume from
    def report(self, metrics: dict[str, Any], checkpoint: Path | None) -> None: ...
    def progress(self, total: int, initial: int) -> Any: ...  # an object with update(n) and set_description(s)


class LocalSession:
    """One plain process, no Ray: items from a list, checkpoints in output/checkpoints/step_N."""

    def __init__(self, rows: list[TrainingItem], batch_size: int, output: Path):
        self.rows, self.batch_size, self.output = rows, batch_size, output
        self.ckpts = output / "checkpoints"

    def batches(self, epoch: int) -> Iterator[list[TrainingItem]]:
        for i in range(0, len(self.rows) - self.batch_size + 1, self.batch_size):
            yield self.rows[i : i + self.batch_size]

    def checkpoint_dir(self) -> Path | None:
        found = sorted(self.ckpts.glob("step_*"))
        return found[-1] if found else None

    def report(self, metrics: dict[str, Any], checkpoint: Path | None) -> None:
        if checkpoint is not None:
            import shutil

            dest = self.ckpts / f"step_{metrics['step']:06d}"
            shutil.rmtree(dest, ignore_errors=True)
            shutil.move(str(checkpoint), dest)

    def progress(self, total: int, initial: int) -> Any:
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc="train", unit="step")

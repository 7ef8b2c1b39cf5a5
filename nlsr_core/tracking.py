"""Experiment tracking: the only module that imports mlflow (DESIGN §6.4).

Stages open one `stage_run(...)` and hand it metrics (per-step train loss, HS, FA, wall time), input
artifacts with digests, and artifact files. The pipeline writes to MLflow and never reads from it.
`enabled=False` (NLSR_TRACKING=off, decided by the CLI layer) gives a tracker that records nothing.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator


@dataclass
class Tracker:
    """Collects what a stage reports. This base class keeps it in memory only (tracking off)."""

    name: str
    metrics: list[tuple[str, float, int | None]] = field(default_factory=list)
    inputs: list[dict] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        self.metrics.append((key, float(value), step))

    def log_input(self, record: dict) -> None:
        """`record` as made by `nlsr_core.lineage.input_record` (role, path, sha256)."""
        self.inputs.append(record)

    def log_artifact(self, path: Path) -> None:
        self.artifacts.append(str(path))


@contextlib.contextmanager
def stage_run(name: str, params: dict | None = None, enabled: bool = False) -> Iterator[Tracker]:
    """Open a tracked run for one stage execution, e.g. name='realign@sst2-p0.05-dpo'."""
    yield Tracker(name)

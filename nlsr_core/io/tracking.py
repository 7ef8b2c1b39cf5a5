"""Experiment tracking: the only module that imports mlflow (docs/DESIGN.md §3.6).

One MLflow experiment; a parent "pipeline" run keyed by (git commit, DVC experiment name); one child run per
stage execution named after the DVC stage (e.g. `realign@sst2-p0.05-dpo`) with the parentRunId tag, the stage,
experiment and commit as tags, params, metrics (train loss per step, HS, FA, wall time, peak memory), each input
artifact with its digest (`log_inputs`, so "which reference patched which adapter" is a query) and the lineage
JSON as an artifact. The pipeline writes to MLflow and never reads its results back; a disabled tracker
(`enabled=False`) records nothing. Callers (the CLI layer) decide the URI and whether tracking is on.
"""
from __future__ import annotations

import contextlib
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from nlsr_core.errors import NlsrError

EXPERIMENT = "nlsr"
PIPELINE_KEY_TAG = "nlsr.pipeline_key"


class TrackingError(NlsrError):
    """The tracking server cannot be reached or refused the run."""


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
        """`record` as made by `nlsr_core.io.lineage.input_record` (role, path, sha256)."""
        self.inputs.append(record)

    def log_artifact(self, path: Path) -> None:
        self.artifacts.append(str(path))


@dataclass(frozen=True)
class RunContext:
    """Where and under which parent a stage run goes."""

    uri: str                      # absolute tracking URI (http://..., sqlite:////abs/path.db)
    stage: str                    # DVC stage name, e.g. "realign"
    key: str | None = None        # the foreach/matrix key, e.g. "sst2-p0.1-dpo"
    commit: str = "unknown"
    dvc_experiment: str = "workspace"


class MlflowTracker(Tracker):
    """Forwards everything to an MLflow child run as it happens."""

    def __init__(self, name: str, client, run_id: str):
        super().__init__(name)
        self.client, self.run_id = client, run_id

    def log_metric(self, key, value, step=None):
        super().log_metric(key, value, step)
        self.client.log_metric(self.run_id, key, float(value), step=step or 0)

    def log_input(self, record):
        from mlflow.entities import Dataset, DatasetInput, InputTag

        super().log_input(record)
        dataset = Dataset(name=f"{record['role']}:{Path(record['path']).name}", digest=record["sha256"][:32],
                          source_type="local", source=str(record["path"]),
                          profile=f'{{"sha256": "{record["sha256"]}"}}')
        self.client.log_inputs(self.run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context",
                                                                           record["role"])])])

    def log_artifact(self, path):
        # For an artifact directory only its audit record travels: adapters/masks stay in DVC's cache.
        path = Path(path)
        if path.is_dir():
            path = path / "lineage.json"
            if not path.is_file():
                return
        super().log_artifact(path)
        self.client.log_artifact(self.run_id, str(path))


# The store schemes MLflow's client accepts (mlflow.tracking._tracking_service.utils), plus installed plugins.
TRACKING_SCHEMES = ("", "file", "http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks",
                    "databricks-uc", "uc")


def check_supported(uri: str, what: str = "tracking URI") -> None:
    """One line naming `what` (e.g. the variable that set it) when MLflow has no store for the URI's scheme;
    MLflow itself would fail later, mid-stage, with a long traceback."""
    import urllib.parse
    from importlib.metadata import entry_points

    scheme = urllib.parse.urlparse(uri).scheme.lower().split("+")[0]
    scheme = "" if len(scheme) == 1 else scheme  # a Windows drive letter: a local path
    if scheme in TRACKING_SCHEMES or uri in ("databricks", "databricks-uc", "uc"):
        return
    if scheme in {ep.name for ep in entry_points(group="mlflow.tracking_store")}:
        return
    raise TrackingError(f"{what}={uri}: unsupported scheme '{scheme}'; expected http(s)://HOST, sqlite:///FILE, "
                        "file:DIR, a database URI (postgresql, mysql, mssql), databricks or a local directory "
                        "(or set NLSR_TRACKING=off)")


def check_reachable(uri: str, timeout: float = 5.0, what: str = "tracking URI") -> None:
    """Fail fast, in one line, when the URI's scheme is unsupported or an http(s) tracking server does not
    answer its health endpoint."""
    check_supported(uri, what)
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
            if resp.status != 200:
                raise TrackingError(f"MLflow tracking server {uri} answered {resp.status} on /health")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(f"MLflow tracking server {uri} is unreachable ({reason}); start it, set "
                            "MLFLOW_TRACKING_URI to a reachable server, or set NLSR_TRACKING=off") from None


@contextlib.contextmanager
def stage_run(name: str, params: dict | None = None, enabled: bool = False,
              context: RunContext | None = None) -> Iterator[Tracker]:
    """Open a tracked run for one stage execution; `name` like 'realign@sst2-p0.05-dpo'.

    On exit the run gets `wall_time_s` and `peak_rss_mb` metrics and FINISHED/FAILED status.
    """
    if not enabled or context is None:
        yield Tracker(name)
        return
    check_reachable(context.uri)
    client = _client(context.uri)
    run = client.create_run(_experiment_id(client), run_name=name, tags={
        "mlflow.parentRunId": _parent_run_id(client, context),
        "nlsr.stage": context.stage, "nlsr.key": context.key or "",
        "nlsr.git_commit": context.commit, "nlsr.dvc_experiment": context.dvc_experiment,
    })
    tracker = MlflowTracker(name, client, run.info.run_id)
    for key, value in sorted(flatten(params or {}).items()):
        client.log_param(run.info.run_id, key, str(value)[:6000])
    start, status = time.perf_counter(), "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    finally:
        tracker.log_metric("wall_time_s", time.perf_counter() - start)
        tracker.log_metric("peak_rss_mb", peak_rss_mb())
        client.set_terminated(run.info.run_id, status=status)


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024


def flatten(params: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}: MLflow params are flat."""
    out = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _experiment_id(client) -> str:
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(EXPERIMENT, artifact_location=_artifact_location(client.tracking_uri))
    except Exception:  # created concurrently by a parallel stage: read it back
        return client.get_experiment_by_name(EXPERIMENT).experiment_id


def _artifact_location(uri: str) -> str | None:
    """Artifacts beside a sqlite store (MLflow's default, ./mlruns, would land in whatever cwd a stage has);
    a server decides for itself (None)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "artifacts").resolve().as_uri()
    return None


def _parent_run_id(client, context: RunContext) -> str:
    """The pipeline run for (commit, DVC experiment): reused by every stage of one `dvc repro`/`dvc exp run`."""
    key = f"{context.commit}:{context.dvc_experiment}"
    exp_id = _experiment_id(client)
    found = client.search_runs([exp_id], filter_string=f"tags.`{PIPELINE_KEY_TAG}` = '{key}'", max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(exp_id, run_name=f"pipeline@{context.dvc_experiment}", tags={
        PIPELINE_KEY_TAG: key, "nlsr.git_commit": context.commit, "nlsr.dvc_experiment": context.dvc_experiment})
    client.set_terminated(run.info.run_id, status="FINISHED")
    return run.info.run_id

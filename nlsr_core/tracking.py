"""Experiment tracking: the only module that imports mlflow (DESIGN §6.4).

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
        """`record` as made by `nlsr_core.lineage.input_record` (role, path, sha256)."""
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
    """Forwards everything to an MLflow child run, without putting MLflow on the stage's critical path.

    Importing mlflow and opening its store take ~2-3 s of a 2-core machine (measured: benchmarks/
    bench_tracking.py), more than a realign takes. So the client is built on a background thread
    (`ClientFuture`) while the stage works; what the stage reports meanwhile is buffered, and sent in batches
    (one `log_batch` for params and buffered metrics, one `log_inputs` for all inputs) as soon as the client is
    ready, so a long training stage still streams its loss; at the latest it all goes at the end of the stage.
    """

    def __init__(self, name: str, future: "ClientFuture", context: RunContext, params: dict):
        super().__init__(name)
        self.future, self.context, self.params = future, context, params
        self.start_ms = int(time.time() * 1000)
        self.run_id: str | None = None
        self.pending_metrics: list[tuple[str, float, int | None, int]] = []
        self.pending_inputs: list[dict] = []
        self.pending_artifacts: list[Path] = []

    def log_metric(self, key, value, step=None):
        super().log_metric(key, value, step)
        self.pending_metrics.append((key, float(value), step, int(time.time() * 1000)))
        self.flush(wait=False)

    def log_input(self, record):
        super().log_input(record)
        self.pending_inputs.append(record)
        self.flush(wait=False)

    def log_artifact(self, path):
        # For an artifact directory only its audit record travels: adapters/masks stay in DVC's cache.
        path = Path(path)
        if path.is_dir():
            path = path / "lineage.json"
            if not path.is_file():
                return
        super().log_artifact(path)
        self.pending_artifacts.append(path)
        self.flush(wait=False)

    def flush(self, wait: bool = True) -> None:
        """Send what is buffered; without `wait`, only if the client is already built."""
        if not wait and not self.future.ready():
            return
        client, exp_id, parent = self.future.get()
        if self.run_id is None:
            self.run_id = client.create_run(exp_id, start_time=self.start_ms, run_name=self.name, tags={
                "mlflow.parentRunId": parent, "nlsr.stage": self.context.stage, "nlsr.key": self.context.key or "",
                "nlsr.git_commit": self.context.commit, "nlsr.dvc_experiment": self.context.dvc_experiment,
            }).info.run_id
            _log_batches(client, self.run_id, params=sorted(flatten(self.params).items()))
        metrics, self.pending_metrics = self.pending_metrics, []
        _log_batches(client, self.run_id, metrics=metrics)
        inputs, self.pending_inputs = self.pending_inputs, []
        if inputs:
            client.log_inputs(self.run_id, [_dataset_input(r) for r in inputs])
        artifacts, self.pending_artifacts = self.pending_artifacts, []
        for path in artifacts:
            client.log_artifact(self.run_id, str(path))

    def finish(self, status: str) -> None:
        self.flush(wait=True)
        self.future.get()[0].set_terminated(self.run_id, status=status, end_time=int(time.time() * 1000))


class ClientFuture:
    """An MlflowClient, its experiment id and the pipeline (parent) run id, built on a daemon thread."""

    def __init__(self, context: RunContext):
        import threading

        self.context, self.value, self.error = context, None, None
        self.thread = threading.Thread(target=self._build, name="nlsr-mlflow-client", daemon=True)
        self.thread.start()

    def _build(self) -> None:
        try:
            client = _client(self.context.uri)
            self.value = (client, _experiment_id(client), _parent_run_id(client, self.context))
        except BaseException as exc:  # re-raised in the stage's thread by get()
            self.error = exc

    def ready(self) -> bool:
        return not self.thread.is_alive()

    def get(self):
        self.thread.join()
        if self.error is not None:
            raise TrackingError(f"MLflow tracking at {self.context.uri} failed: "
                                f"{str(self.error).splitlines()[0] if str(self.error) else type(self.error).__name__}")
        return self.value


# MLflow's per-request limits for log_batch
_MAX_PARAMS, _MAX_METRICS = 100, 1000


def _log_batches(client, run_id: str, params=(), metrics=()) -> None:
    from mlflow.entities import Metric, Param

    params = [Param(k, str(v)[:6000]) for k, v in params]
    metrics = [Metric(k, v, ts, step or 0) for k, v, step, ts in metrics]
    for i in range(0, len(params), _MAX_PARAMS):
        client.log_batch(run_id, params=params[i:i + _MAX_PARAMS])
    for i in range(0, len(metrics), _MAX_METRICS):
        client.log_batch(run_id, metrics=metrics[i:i + _MAX_METRICS])


def _dataset_input(record: dict):
    """One input artifact (role, path, sha256) as an MLflow dataset input."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    dataset = Dataset(name=f"{record['role']}:{Path(record['path']).name}", digest=record["sha256"][:32],
                      source_type="local", source=str(record["path"]),
                      profile=f'{{"sha256": "{record["sha256"]}"}}')
    return DatasetInput(dataset, [InputTag("mlflow.data.context", record["role"])])


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
    tracker = MlflowTracker(name, ClientFuture(context), context, params or {})
    start, status = time.perf_counter(), "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    finally:
        tracker.log_metric("wall_time_s", time.perf_counter() - start)
        tracker.log_metric("peak_rss_mb", peak_rss_mb())
        tracker.finish(status)


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

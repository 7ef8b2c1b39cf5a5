"""Tracking against a real MLflow server: parent/child runs, params, metrics, inputs with digests, artifacts."""
from __future__ import annotations

import json

import pytest

from nlsr_core.io.lineage import input_record
from nlsr_core.io.tracking import RunContext, TrackingError, check_reachable, flatten, stage_run
from tests.mlflow_server import free_port, mlflow_server


def test_disabled_tracking_records_nothing_remote():
    with stage_run("realign@x", {"a": 1}, enabled=False) as tr:
        tr.log_metric("hs", 12.0)
    assert tr.metrics == [("hs", 12.0, None)]


def test_unreachable_server_is_a_one_line_error():
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TrackingError, match="unreachable") as info:
        check_reachable(uri, timeout=2)
    assert "\n" not in str(info.value) and "NLSR_TRACKING=off" in str(info.value)


def test_flatten_nests_with_dots():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}


@pytest.mark.slow
def test_runs_reach_a_real_mlflow_server(tmp_path):
    from mlflow.tracking import MlflowClient

    artifact = tmp_path / "adapter"
    artifact.mkdir()
    (artifact / "w.bin").write_bytes(b"123")
    lineage = tmp_path / "lineage.json"
    lineage.write_text(json.dumps({"stage": "realign"}))
    with mlflow_server(tmp_path / "server") as uri:
        for stage, key in [("align", "dpo"), ("realign", "sst2-p0.1-dpo")]:
            ctx = RunContext(uri=uri, stage=stage, key=key, commit="abc123", dvc_experiment="exp-1")
            with stage_run(f"{stage}@{key}", {"realign": {"seed": 3}}, enabled=True, context=ctx) as tr:
                tr.log_metric("train_loss", 1.5, step=1)
                tr.log_metric("train_loss", 1.0, step=2)
                tr.log_input(input_record(artifact, "finetuned"))
                tr.log_artifact(lineage)
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name("nlsr")
        runs = client.search_runs([exp.experiment_id])
        by_name = {r.info.run_name: r for r in runs}
        assert set(by_name) == {"pipeline@exp-1", "align@dpo", "realign@sst2-p0.1-dpo"}
        parent = by_name["pipeline@exp-1"].info.run_id
        child = by_name["realign@sst2-p0.1-dpo"]
        assert child.data.tags["mlflow.parentRunId"] == parent
        assert by_name["align@dpo"].data.tags["mlflow.parentRunId"] == parent
        assert child.data.tags["nlsr.stage"] == "realign" and child.data.tags["nlsr.git_commit"] == "abc123"
        assert child.data.params["realign.seed"] == "3"
        losses = [m.value for m in client.get_metric_history(child.info.run_id, "train_loss")]
        assert losses == [1.5, 1.0]
        assert "wall_time_s" in child.data.metrics and child.data.metrics["peak_rss_mb"] > 0
        inputs = child.inputs.dataset_inputs
        assert inputs[0].dataset.source.endswith("adapter")
        assert input_record(artifact, "x")["sha256"] in inputs[0].dataset.profile
        assert [a.path for a in client.list_artifacts(child.info.run_id)] == ["lineage.json"]


def test_sqlite_store_keeps_artifacts_beside_it(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    (tmp_path / "store").mkdir()
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    lineage = tmp_path / "lineage.json"
    lineage.write_text("{}")
    with stage_run("report", {}, enabled=True, context=RunContext(uri=uri, stage="report")) as tr:
        tr.log_artifact(lineage)
    assert not (tmp_path / "mlruns").exists()
    assert list((tmp_path / "store" / "artifacts").rglob("lineage.json"))
    exp = MlflowClient(tracking_uri=uri).get_experiment_by_name("nlsr")
    assert exp.artifact_location.startswith("file://")


def test_stage_fails_before_work_when_the_server_is_down(tmp_path, monkeypatch):
    from tests.conftest import run_cli

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NLSR_TRACKING", "on")
    out = tmp_path / "prepared"
    code, _, err = run_cli(["prepare-data", "--out", out])
    assert code == 1 and "unreachable" in err and err.strip().count("\n") == 0
    assert not out.exists()
    code, out_text, _ = run_cli(["prepare-data", "--help"])  # help never needs the server
    assert code == 0 and "Usage" in out_text


@pytest.mark.parametrize("uri", ["foo://bar", "s3://bucket/runs", "htp://typo:5000"])
def test_unsupported_tracking_uri_is_one_line_naming_the_variable(tmp_path, monkeypatch, uri):
    from tests.conftest import run_cli

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("NLSR_TRACKING", "on")
    out = tmp_path / "prepared"
    code, _, err = run_cli(["prepare-data", "--out", out])
    assert code == 1 and err.strip().count("\n") == 0, err
    assert f"MLFLOW_TRACKING_URI={uri}: unsupported scheme '{uri.split(':')[0]}'" in err
    assert not out.exists()


@pytest.mark.parametrize("uri", ["http://127.0.0.1:5000", "https://mlflow.example", "sqlite:///runs/mlflow.db",
                                 "file:///tmp/mlruns", "/tmp/mlruns", "mlruns", "postgresql+psycopg2://u@h/db",
                                 "databricks", "databricks-uc"])
def test_supported_tracking_uris_pass_the_scheme_check(uri):
    from nlsr_core.io.tracking import check_supported

    check_supported(uri, "MLFLOW_TRACKING_URI")

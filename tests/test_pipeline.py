"""End to end: the real dvc.yaml on the tiny-random profile in a `git init`'d temp repo, offline.

One module-scoped repo runs `dvc repro` from scratch; the tests then check no-op re-runs, which stages a
param change re-runs, `dvc metrics diff`, a DVC remote round trip, MLflow runs on a real server, `nlsr audit`,
and that a killed stage leaves no partial output.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from nlsr_core.io import locks
from tests.conftest import REPO

pytestmark = pytest.mark.slow

TINY = {
    "model": {"name": "tiny-random", "seed": 0},
    "data": {"sizes": {"sft_refusal": 8, "sft_benign": 8, "preference": 8, "identify": 6, "eval_harmful": 6,
                       "eval_benign": 4, "task_train": 30, "task_test": 6, "poison_pool": 10,
                       "calib_harmful": 4, "task_calib": 4}},
    "finetune": {"n": 12, "batch_size": 4, "max_length": 320},
    "align": {"batch_size": 4, "max_length": 320},
    "identify": {"batch_size": 4, "max_length": 320},
    "lora": {"rank": 4, "alpha": 8},
    "judge": {"max_new_tokens": 6, "opening_tokens": 6, "label_tokens": 6, "batch_size": 8},
    "frontier": {"grid_sparsity": [0.5, 0.8], "grid_layer_prune": [0.0], "safelora_tau": [0.3],
                 "grid_random_masks": [0.5], "grid_lambda": [0.5], "grid_gamma": [1.0], "grid_lambda_aligned": [0.5],
                 "grid_safemerge_tau": [1.0], "grid_dense_ratio": [0.1], "grid_dense_ratio_magnitude": [0.1],
                 "grid_dg_hard_scale": [0.5]},
    "calibrate": {"grid_sparsity": [0.5, 0.8], "grid_layer_prune": [0.0]},
    "ablate": {"seeds": [0, 1]},
    "analyze": {"sparsities": [0.5], "taus": [0.3, 0.7], "identifiers": ["lowrank", "random"], "layer_prunes": [0.0],
                "betas": [0.0, 0.9], "preamplification_layer_prunes": [0.0]},
    "finetune_seeds": {"seeds": [1]},
}
COPY = ["nlsr_core", "stages", "dvc.yaml", ".dvcignore", ".gitignore"]


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def sh(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True, timeout: int = 900):
    """Run a command with the venv's bin first on PATH; return the completed process."""
    full_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **(env or {})}
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def ran_stages(output: str) -> set[str]:
    """Stage names from dvc repro's "Running stage 'x':" lines."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    for name in COPY:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, path / name)
    params = _merge(yaml.safe_load((REPO / "params.yaml").read_text()), TINY)
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["git", "init", "-q"], path)
    sh(["dvc", "init", "-q"], path)
    sh(["dvc", "config", "parsing.list", "append"], path)
    sh(["git", "add", "-A"], path)
    sh(["git", "commit", "-qm", "tiny profile"], path)
    return path


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    path = make_repo(tmp_path_factory.mktemp("e2e") / "repo")
    first = sh(["dvc", "repro"], path, env={"NLSR_TRACKING": "off"})
    assert {"prepare-data", "report"} <= ran_stages(first.stdout)
    sh(["git", "add", "-A"], path)
    sh(["git", "commit", "-qm", "first repro"], path)
    return path


def test_repro_from_scratch_writes_metrics_and_results(repo):
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    cell = metrics["sst2-p0.1-dpo"]
    assert set(cell) == {"base", "nonaligned", "weak", "aligned", "finetuned", "realigned", "safelora"}
    assert all(set(v) >= {"hs", "hs_plus", "fa", "over_refusal"} for v in cell.values())
    assert all(v["hs_plus"] >= v["hs"] for v in cell.values())
    assert "realigned" in (repo / "reports" / "results.md").read_text()
    frontier = (repo / "reports" / "frontier.md").read_text()
    assert "### Leaderboard" in frontier and "Lowest HS at FA ≥" in frontier and "NLSR − random masks" in frontier
    labels = {p["label"].split()[0] for p in json.loads(
        (repo / "frontier" / "sst2-p0.1-dpo" / "frontier.json").read_text())["points"]}
    assert {"nlsr", "safelora", "random-masks", "interpolate", "safety-vector"} <= labels


def test_second_repro_runs_nothing(repo):
    out = sh(["dvc", "repro"], repo, env={"NLSR_TRACKING": "off"}).stdout
    assert ran_stages(out) == set()


def test_realign_param_change_reruns_only_downstream_of_realign(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["realign"]["layer_prune"] = 0.1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = sh(["dvc", "repro"], repo, env={"NLSR_TRACKING": "off"}).stdout
    stage_key = "sst2-0.1-dpo"  # DVC names matrix stages by joining the item values
    # the study stages start their grids from the pipeline's setting, so they re-run too (from the answer cache)
    assert ran_stages(out) == {f"realign@{stage_key}", f"judge@{stage_key}", f"frontier@{stage_key}",
                               f"calibrate@{stage_key}", f"ablate@{stage_key}", f"analyze@{stage_key}",
                               f"finetune-seeds@{stage_key}", "report"}
    diff = sh(["dvc", "params", "diff", "--json"], repo).stdout
    assert "layer_prune" in diff
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "layer_prune 0.1"], repo)
    # metrics diff across the two commits runs and reports the metrics file
    metrics_diff = sh(["dvc", "metrics", "diff", "HEAD~1", "HEAD", "--json"], repo).stdout
    assert isinstance(json.loads(metrics_diff), dict)


def test_study_outputs_frontier_calibration_and_ablations(repo):
    frontier = json.loads((repo / "frontier" / "sst2-p0.1-dpo" / "frontier.json").read_text())
    labels = [r["label"] for r in frontier["points"]]
    assert labels[:5] == ["aligned", "finetuned", "nlsr P_SR=0.5 P_L=0", "nlsr P_SR=0.8 P_L=0", "safelora tau=0.3"]
    # the controls: random masks at the pipeline's P_L (another test of this module may have changed it)
    assert labels[5].startswith("random-masks P_SR=0.5 P_L=") and labels[6:] == [
        "interpolate lambda=0.5", "interpolate lambda=0.5 toward=aligned", "safety-vector gamma=1", "safemerge tau=1",
        "antidote rho=0.1", "antidote rho=0.1 magnitude", "dg-hard c=0.5"]
    # the Wanda-scored Antidote ran the model over the realignment set: its adapter differs from the data-free one
    antidote = {r["label"]: r["adapter_sha256"] for r in frontier["points"] if r["label"].startswith("antidote")}
    assert len(set(antidote.values())) == 2
    assert json.loads((repo / "frontier" / "sst2-p0.1-dpo" / "lineage.json").read_text())["params"][
        "realign_pass"]["data"].endswith("poison/pool.jsonl")
    calib = yaml.safe_load((repo / "calibrate" / "sst2-p0.1-dpo" / "params.yaml").read_text())
    assert calib["identify"]["sparsity"] in (0.5, 0.8) and calib["realign"]["layer_prune"] == 0.0
    doc = json.loads((repo / "calibrate" / "sst2-p0.1-dpo" / "calibrate.json").read_text())
    assert doc["splits"]["harmful"]["path"].endswith("calib/harmful.jsonl") and doc["splits"]["task"]["n"] == 4
    ablations = (repo / "reports" / "ablations.md").read_text()
    for row in ("preset official-code", "identify wanda", "identify snip", "identify random",
                "no amplification (beta 0)", "threshold selection", "seed 1", "Over 2 Bernoulli seeds"):
        assert row in ablations
    assert "◆" in (repo / "reports" / "frontier.md").read_text()
    # the analyses: Fig. 3 counts for each tau, the one method pair of Fig. 4, Fig. 5 per beta, Table 4 both arms
    analysed = json.loads((repo / "analyze" / "sst2-p0.1-dpo" / "analyze.json").read_text())
    assert [(r["sparsity"], r["tau"]) for r in analysed["broken_layers"]] == [(0.5, 0.3), (0.5, 0.7)]
    assert {(r["first"], r["second"]) for r in analysed["broken_set_similarity"]} == {("lowrank", "random")}
    assert [r["beta"] for r in analysed["amplification"]] == [0.0, 0.9]
    assert all(r["hs"]["n"] == 6 and r["over_refusal"]["n"] == 4 for r in analysed["amplification"])
    arms = {(r["point"]["sparsity"], r["point"]["beta"]) for r in analysed["preamplification"] if r["point"]}
    assert arms == {(0.5, 0.9), (0.5, 0.0), (0.35, 0.9), (0.35, 0.0)}      # the pipeline's P_SR 0.35 too
    analyses_md = (repo / "reports" / "analyses.md").read_text()
    for heading in ("**Fig. 3 (left)**", "**Fig. 4(a)**", "**Fig. 4(b)**", "**Fig. 5**", "**Table 4 / Fig. 6**"):
        assert heading in analyses_md
    assert all((repo / "reports" / "plots" / f"{name}.{ext}").stat().st_size > 0 for ext in ("csv", "png")
               for name in ("broken_layers", "set_similarity", "neuron_overlap", "amplification", "preamplification"))
    # the other fine-tuning seed: its own mix and adapter, every repair scored on both replicates
    doc = json.loads((repo / "finetune-seeds" / "sst2-p0.1-dpo" / "finetune-seeds.json").read_text())
    assert [r["name"] for r in doc["replicates"]] == ["pipeline", "seed 1"]
    methods = {(r.get("point") or {}).get("method", r["name"]) for r in doc["replicates"][1]["rows"]}
    assert methods == {"finetuned", "nlsr", "random-masks", "interpolate", "safety-vector", "safelora", "safemerge",
                       "antidote", "dg-hard"}
    lineage = json.loads((repo / "finetune-seeds" / "sst2-p0.1-dpo" / "finetuned-s1" / "lineage.json").read_text())
    assert lineage["mix"]["seed"] == 1 and lineage["params"]["finetune"]["seed"] == 1
    seeds_md = (repo / "reports" / "finetune-seeds.md").read_text()
    assert "| HS pipeline | HS seed 1 |" in seeds_md and "NLSR − random masks" in seeds_md
    assert (repo / "reports" / "plots" / "frontier.png").stat().st_size > 0



def test_paper_tables_reads_the_run_and_refuses_a_table_whose_cells_did_not_run(repo, tmp_path):
    """`nlsr paper-tables` on the tiny run (one cell, sst2-p0.1-dpo): its Table 1 column holds our measured rates,
    the other columns '–'; a table asked for by name whose cells did not run is one line, nothing written."""
    out = tmp_path / "paper-tables.md"
    sh(["nlsr", "paper-tables", "--run", str(repo), "--out", str(out)], repo, env={"NLSR_TRACKING": "off"})
    text = out.read_text()
    judged = json.loads((repo / "judge" / "sst2-p0.1-dpo" / "judged.json").read_text())["variants"]
    nonaligned = next(line for line in text.splitlines() if line.startswith("| Non-Aligned |"))
    hs = judged["nonaligned"]["hs"]
    assert f"{hs['pct']:.1f} [{hs['ci95'][0]:.1f}, {hs['ci95'][1]:.1f}] · 78.9" in nonaligned
    assert nonaligned.count("– · ") == 4                     # p 0.01, 0.05, 0.2, 0.3 were not run
    assert "## Table 4 / Fig. 6: pre-amplification" in text and "| sst2-p0.1-dpo | 0.35 | " in text   # pipeline P_SR
    missing = tmp_path / "table2.md"
    bad = sh(["nlsr", "paper-tables", "--run", str(repo), "--table", "table2", "--out", str(missing)], repo,
             env={"NLSR_TRACKING": "off"}, check=False)
    assert bad.returncode == 1 and not missing.exists()
    assert bad.stderr.strip().splitlines() == [
        f"nlsr: error: --table table2: cell sst2-p0.05-sft was not run; expected judge/sst2-p0.05-sft/judged.json in "
        f"one of the runs ({repo})"]

def test_paper_tables_snapshot_rebuilds_the_same_report_without_the_run(repo, tmp_path):
    """`--snapshot` copies what the report reads (summaries and repro.log, no answers or adapters) from the tiny run;
    the report built from the snapshot equals the one built from the run. A snapshot into a folder holding a file of
    the same name that no snapshot wrote is one line, exit 1, nothing copied; a second snapshot into its own folder
    replaces its files."""
    env = {"NLSR_TRACKING": "off"}
    snapshot = tmp_path / "snapshot"
    sh(["nlsr", "paper-tables", "--run", str(repo), "--snapshot", str(snapshot)], repo, env=env)
    assert (snapshot / "judge" / "sst2-p0.1-dpo" / "judged.json").is_file()
    assert (snapshot / "frontier" / "sst2-p0.1-dpo" / "frontier.json").is_file()
    assert (snapshot / "analyze" / "sst2-p0.1-dpo" / "analyze.json").is_file()
    assert not list(snapshot.glob("judge/*/*/*.jsonl")) and not list(snapshot.rglob("*.safetensors"))
    from_run, from_snapshot = tmp_path / "from-run.md", tmp_path / "from-snapshot.md"
    sh(["nlsr", "paper-tables", "--run", str(repo), "--out", str(from_run)], repo, env=env)
    sh(["nlsr", "paper-tables", "--run", str(snapshot), "--out", str(from_snapshot)], repo, env=env)
    assert from_snapshot.read_text() == from_run.read_text()
    sh(["nlsr", "paper-tables", "--run", str(repo), "--snapshot", str(snapshot)], repo, env=env)   # its own: replaced

    foreign = tmp_path / "foreign"
    (foreign / "judge" / "sst2-p0.1-dpo").mkdir(parents=True)
    (foreign / "judge" / "sst2-p0.1-dpo" / "judged.json").write_text("{}")
    bad = sh(["nlsr", "paper-tables", "--run", str(repo), "--snapshot", str(foreign)], repo, env=env, check=False)
    assert bad.returncode == 1 and sorted(p.name for p in foreign.rglob("*")) == ["judge", "judged.json",
                                                                                  "sst2-p0.1-dpo"]
    assert bad.stderr.strip().splitlines() == [
        f"nlsr: error: --snapshot {foreign}: judge/sst2-p0.1-dpo/judged.json exists and no earlier snapshot wrote "
        "it; expected a new folder or an earlier snapshot (e.g. reports/paper-tables/<part>)"]


def test_sweep_points_rerun_no_training_or_identification(repo):
    """A new frontier grid value or a new P_SR re-runs only training-free stages (DVC decides, dry run)."""
    params_file = repo / "params.yaml"
    original = params_file.read_text()
    training = {"prepare-data", "align@dpo", "amplify@dpo", "identify@dpo", "finetune@sst2-0.1-dpo"}
    try:
        params = yaml.safe_load(original)
        params["frontier"]["grid_sparsity"] = [0.5, 0.8, 0.65]
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        # a dry run lists the stages whose own params/deps changed (report follows once frontier's output does)
        dry = ran_stages(sh(["dvc", "repro", "--dry"], repo, env={"NLSR_TRACKING": "off"}).stdout)
        assert dry == {"frontier@sst2-0.1-dpo"}
        params["identify"]["sparsity"] = 0.7
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        status = json.loads(sh(["dvc", "status", "--json"], repo).stdout)
        assert not training & set(status), status
        dry = ran_stages(sh(["dvc", "repro", "--dry"], repo, env={"NLSR_TRACKING": "off"}).stdout)
        assert not training & dry and "realign@sst2-0.1-dpo" in dry and "identify@dpo" not in dry
    finally:
        params_file.write_text(original)


def test_new_poison_ratio_adds_cells_without_recomputing(repo):
    ran = ran_stages(sh(["dvc", "exp", "run", "-S", "grid.poison_ratios=[0.1,0.2]"], repo,
                        env={"NLSR_TRACKING": "off"}).stdout)
    new = "sst2-0.2-dpo"
    # prepare-data re-runs (its params changed) but rewrites identical files for the existing cell
    # the frontier scores every cell of the grid; the deeper study stages only study.poison_ratios' cells
    assert ran == {"prepare-data", f"finetune@{new}", "nonaligned@sst2-0.2", f"realign@{new}", f"safelora@{new}",
                   f"judge@{new}", f"frontier@{new}", "report"}
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    assert set(metrics) == {"sst2-p0.1-dpo", "sst2-p0.2-dpo"}
    sh(["git", "checkout", "--", "."], repo)  # back to the committed one-cell study (params, lock, reports)
    sh(["git", "clean", "-fdq"], repo)
    sh(["dvc", "checkout"], repo)
    assert ran_stages(sh(["dvc", "repro"], repo, env={"NLSR_TRACKING": "off"}).stdout) == set()


def test_remote_round_trip_recomputes_nothing(repo, tmp_path):
    remote = tmp_path / "remote"
    sh(["dvc", "remote", "add", "-d", "store", str(remote)], repo)
    sh(["dvc", "push"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "remote"], repo)
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    sh(["dvc", "pull"], clone)
    status = sh(["dvc", "status", "--json"], clone).stdout
    assert json.loads(status) == {}
    assert ran_stages(sh(["dvc", "repro"], clone, env={"NLSR_TRACKING": "off"}).stdout) == set()


def test_audit_names_reference_masks_and_poisoned_adapter(repo):
    out = sh(["nlsr", "audit", "adapters/realigned/sst2-p0.1-dpo"], repo).stdout
    for needle in ("adapters/finetuned/sst2-p0.1-dpo", "adapters/reference/dpo", "identify/dpo",
                   "adapters/aligned/dpo/aligned", "tiny-random"):
        assert needle in out, out


def test_mlflow_server_receives_stage_runs(repo, tmp_path):
    from mlflow.tracking import MlflowClient

    from tests.mlflow_server import mlflow_server

    with mlflow_server(tmp_path / "mlflow") as uri:
        sh(["dvc", "repro", "-f", "--single-item", "amplify@dpo", "realign@sst2-0.1-dpo"], repo,
           env={"MLFLOW_TRACKING_URI": uri, "NLSR_TRACKING": "on"})
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name("nlsr")
        runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
        child = runs["realign@sst2-p0.1-dpo"]
        parent_id = child.data.tags["mlflow.parentRunId"]
        assert runs[next(n for n in runs if n.startswith("pipeline@"))].info.run_id == parent_id
        assert child.data.tags["nlsr.stage"] == "realign"
        roles = {i.tags[0].value for i in child.inputs.dataset_inputs}
        assert {"finetuned", "reference", "masks"} <= roles
        assert child.data.params
        assert runs["amplify@dpo"].data.tags["mlflow.parentRunId"] == parent_id
        assert [a.path for a in client.list_artifacts(child.info.run_id)] == ["lineage.json"]


def test_killed_stage_leaves_no_partial_output(repo):
    target = repo / "adapters" / "finetuned" / "sst2-p0.1-dpo"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "NLSR_TRACKING": "off"}
    proc = subprocess.Popen(["dvc", "repro", "-f", "finetune@sst2-0.1-dpo", "--single-item"], cwd=repo,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    # wait until the stage is running (DVC removed the old output), then kill the whole process group
    while target.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    leftovers = [p.name for p in target.parent.iterdir()] if target.parent.exists() else []
    assert "sst2-p0.1-dpo" not in leftovers
    # temp dirs from the killed run are hidden (.name.tmp-*) and ignored by DVC; the next repro completes
    sh(["dvc", "repro"], repo, env={"NLSR_TRACKING": "off"})
    assert (target / "adapter_model.safetensors").is_file()
    # DVC restores the output from its run cache without running nlsr there, so the killed writer's lock file
    # may stay: it is free (the kernel freed it with its holder) and the next writer in the directory removes it
    rest = sorted(p.name for p in target.parent.iterdir())
    assert set(rest) <= {".sst2-p0.1-dpo.lock", "sst2-p0.1-dpo"} and "sst2-p0.1-dpo" in rest, rest
    assert locks.is_free(target)
    assert ran_stages(sh(["dvc", "repro"], repo, env={"NLSR_TRACKING": "off"}).stdout) == set()


@pytest.mark.parametrize("module", ["nlsr_core/method/presets.py", "nlsr_core/eval/evaluate.py"])
def test_dvc_status_follows_the_import_graph(repo, module):
    """Editing one library module makes `dvc status` name exactly the stages whose code imports it (the eq. 5
    top-k rule reaches identify, realign and the study stages; an edit in evaluation reaches no training stage)."""
    from tests import import_graph as graph

    def changed() -> set[str]:
        return {name.split("@")[0] for name in json.loads(sh(["dvc", "status", "--json"], repo).stdout or "{}")}

    before = changed()
    path = repo / module
    original = path.read_bytes()
    path.write_bytes(original + b"\n# edited\n")
    try:
        after = changed()
    finally:
        path.write_bytes(original)
    stages = graph.dvc_stages((repo / "dvc.yaml").read_text(encoding="utf-8"))
    expected = {name for name, (cmd, _) in stages.items() if Path(module) in graph.stage_code(cmd)}
    assert after - before == expected - before and expected <= after
    if "presets" in module:
        assert {"identify", "realign", "frontier", "calibrate", "ablate", "finetune-seeds"} <= expected
    else:
        assert not expected & {"align", "finetune", "prepare-data"}


def _lock_md5s(lock: dict) -> dict[str, str]:
    """'stage dep|out path' -> md5 for every dependency and output in a dvc.lock document."""
    found = {}
    for stage, entry in lock["stages"].items():
        for kind in ("deps", "outs"):
            for item in entry.get(kind, []):
                found[f"{stage} {kind[:-1]} {item['path']}"] = item["md5"]
    return found


def _first_differing_stages(differ: list[str]) -> list[str]:
    """Stages with a differing output and no differing dependency ('stage dep|out path' keys)."""
    stages = {key.split(" ")[0] for key in differ}
    return sorted(s for s in stages if not any(k.startswith(f"{s} dep ") for k in differ))


def test_same_run_in_another_directory_gives_the_same_bytes(repo, tmp_path):
    """Byte-stable artifacts: the tiny pipeline re-run from scratch in a clone under another path (other
    PYTHONHASHSEED, other umask) records no absolute path and gives every dependency and output the md5 of the first
    run's dvc.lock. Known exception: identify and realign (and what follows them) can differ between two runs from
    the same inputs because of a CPU float-kernel transient (docs/DESIGN.md §3.4); such a run is reported as xfail,
    any other differing stage fails."""
    first = sh(["git", "log", "--format=%H", "--grep", "first repro"], repo).stdout.split()[-1]
    expected = _lock_md5s(yaml.safe_load(sh(["git", "show", f"{first}:dvc.lock"], repo).stdout))
    other = make_repo(tmp_path / "another clone" / "deeper")
    sh(["sh", "-c", "umask 077 && dvc repro"], other, env={"NLSR_TRACKING": "off", "PYTHONHASHSEED": "12345"})
    got = _lock_md5s(yaml.safe_load((other / "dvc.lock").read_text()))
    assert len(got) > 40
    leaked = [p for p in other.rglob("*") if p.is_file() and ".git" not in p.parts and ".dvc" not in p.parts
              and str(other) in p.read_bytes().decode("utf-8", "replace")]
    assert not leaked, f"outputs record the clone's absolute path: {leaked[:5]}"
    differ = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))
    roots = _first_differing_stages(differ)
    if differ and {stage.split("@")[0] for stage in roots} <= {"identify", "realign"}:
        pytest.xfail(f"CPU float-kernel transient in {roots} (docs/DESIGN.md §3.4): {differ}")
    assert not differ, f"md5 differs between the two directories: {differ}"

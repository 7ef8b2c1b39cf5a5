"""Profiles are complete params files with the same keys as params.yaml, so `cp` + `dvc repro` works."""
from __future__ import annotations

import pytest
import yaml

from tests.conftest import REPO


def _keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        if isinstance(v, dict):
            out |= _keys(v, prefix + k + ".")
    return out


PROFILES = [REPO / "profiles" / n for n in ("paper.yaml", "local-paper.yaml", "paper-tables/ratios.yaml",
                                            "paper-tables/aligners.yaml", "paper-tables/tasks.yaml")]


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_profile_has_the_default_params_keys(profile):
    default = yaml.safe_load((REPO / "params.yaml").read_text())
    assert _keys(yaml.safe_load(profile.read_text())) == _keys(default)


@pytest.mark.parametrize("profile", [REPO / "params.yaml", *PROFILES], ids=lambda p: p.relative_to(REPO).as_posix())
def test_profile_judge_answers_every_task_of_its_grid(profile):
    """The judge section builds the task split's job for each task of the grid (the tasks run once stopped at
    GSM8K's judge: fa_mode score refused a task without label strings instead of generating it)."""
    import dataclasses

    from nlsr_core.eval.settings import EvalSettings, LabelScoring, LABEL_TASKS

    params = yaml.safe_load(profile.read_text())
    judge = params["judge"]
    settings = EvalSettings(template=params["data"]["template"], **{
        f.name: judge[f.name] for f in dataclasses.fields(EvalSettings) if f.name in judge})
    for task in params["grid"]["tasks"]:
        job = settings.job("task", task, judge["name"])
        assert isinstance(job, LabelScoring) == (settings.fa_mode == "score" and task in LABEL_TASKS)


def test_local_paper_profile_builds_its_suite(shared_data):
    from nlsr_core.data import build_suite
    from tests.conftest import local_paper_profile, local_paper_spec

    params = local_paper_profile()
    suite = build_suite(local_paper_spec(shared_data))
    assert len(suite.eval_harmful) == params["data"]["sizes"]["eval_harmful"]
    assert len(suite.task_test["sst2"]) == params["data"]["sizes"]["task_test"]


@pytest.mark.parametrize("part", ["ratios", "aligners", "tasks"])
def test_paper_tables_profiles_load_and_study_cells_of_their_grid(part):
    from nlsr_core.params import load_params

    params = load_params(REPO / "profiles" / "paper-tables" / f"{part}.yaml")
    assert params.safelora.tau == 0.6 and params.data.transfer == "paper"
    assert set(params.study.poison_ratios) <= set(params.grid.poison_ratios)


@pytest.mark.parametrize("part", ["ratios", "aligners", "tasks"])
def test_paper_tables_profiles_prepare_their_transfer_set(part, shared_data, tmp_path):
    """prepare-data on each paper-tables profile's data settings writes the transfer set it asks for (a size
    above what the paper files hold once used to stop these runs at their first stage)."""
    from nlsr_core.data import DataSpec
    from nlsr_core.data.prepare import prepare
    from nlsr_core.params import load_params

    params = load_params(REPO / "profiles" / "paper-tables" / f"{part}.yaml")
    data, grid = params.data, params.grid
    spec = DataSpec(source=data.source, seed=data.seed, local_dir=str(shared_data), tasks=tuple(grid.tasks),
                    sizes=data.sizes, preference_pairs=data.preference_pairs,
                    contrast_refusals=data.contrast_refusals, sft_refusals=data.sft_refusals,
                    transfer=data.transfer)
    mixes = [(t, p) for t in grid.tasks for p in grid.poison_ratios]
    manifest = prepare(spec, mixes, params.finetune.n, tmp_path / "prepared")
    assert manifest["transfer"] == {"source": "paper", "rows": data.sizes.transfer_harmful}

"""Train alignment recipes and measure where each puts the safety (`nlsr recipe-study`, docs/DESIGN.md §5.6).

For one recipe (nlsr_core.train.recipes.Recipe):

    rows      recipe_rows(recipe, spec): the align split prepare-data writes for the recipe's sizes on the prepared
              data's source (`data_spec`: its manifest's source, seed, tasks and sizes), checked to be
              disjoint from every evaluation and calibration file of the prepared data (`check_disjoint`)
    train     nlsr_core.train.align.align: W0 = SFT LoRA on M, Wa = DPO LoRA on M' = M + W0 (on-policy rejected
              answers and the chosen-NLL term as the recipe says) — the align stage's own code
    measure   the pipeline's evaluation (nlsr_core.eval.evaluate.evaluate_plans: greedy decoding, the
              refusal-keyword judge, params.yaml's answer budgets) of M' and M' + Wa (and M once) on the prepared
              held-out splits; the judge-free score of M' and M' + Wa on the prepared held-out
              refusal/compliance pairs (heldout/pairs.jsonl); ‖ΔW0‖_F, ‖ΔWa‖_F; the preference loss curve; wall
              times

Each recipe writes `<out>/<name>/{weak,aligned,result.json}`; a result whose recorded recipe, training rows and
held-out prompts equal the asked ones (`RecipeData.sha256`) is reused, so a study grows one recipe at a time and a
re-run only trains what changed (a result stored before that digest existed is measured again).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from nlsr_core.errors import NlsrError

RESULT = "result.json"


def held_out_check(recipe, data: "RecipeData", data_dir: Path) -> int:
    """Every training prompt is absent from every evaluation / calibration / held-out-pairs file; returns how many
    were checked."""
    from nlsr_core.train.recipes import check_disjoint

    if not data.held_out:
        raise NlsrError(f"recipe-study --data: {data_dir} holds no evaluation split (run prepare-data first)")
    return (check_disjoint(data.sft, data.held_out, f"recipe {recipe.name}: W0 SFT rows")
            + check_disjoint(data.pref, data.held_out, f"recipe {recipe.name}: Wa pairs"))


def data_spec(data_dir: Path, local_dir: str | None):
    """The DataSpec that prepared `data_dir` (its manifest's source, seed, tasks, sizes, preference pairs)."""
    import json

    from nlsr_core.config import SizesConfig
    from nlsr_core.data import DataSpec

    try:
        manifest = json.loads((data_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise NlsrError(f"recipe-study --data: {data_dir}/manifest.json is missing or unreadable "
                        f"(run nlsr prepare-data first)") from None
    return DataSpec(source=manifest["source"], seed=manifest["seed"], local_dir=local_dir,
                    tasks=tuple(manifest["tasks"]), sizes=SizesConfig(**manifest["sizes"]),
                    preference_pairs=manifest.get("preference_pairs", "all"),
                    contrast_refusals=manifest.get("contrast_refusals", "generic"),
                    sft_refusals=manifest.get("sft_refusals", "safety-file"))


# Recipe fields added after results were stored, with the value those results were measured with.
RECORD_DEFAULTS = {"preference_pairs": "all", "contrast_refusals": "generic", "sft_refusals": "safety-file"}


# Results stored before model.device / model.dtype existed were all measured in fp32 on the CPU.
COMPUTE_BEFORE = {"device": "cpu", "dtype": "float32"}


@dataclasses.dataclass(frozen=True)
class RecipeData:
    """What one recipe trains on and is judged against: W0's SFT rows, Wa's pairs, and a SHA-256 over both and
    the prompts of every held-out file of the prepared data (`eval_prompts`), which a stored result must match."""

    sft: list
    pref: list
    held_out: dict
    sha256: str

    @classmethod
    def of(cls, recipe, spec, data_dir: Path, task: str) -> "RecipeData":
        import hashlib
        import json

        from nlsr_core.train.recipes import eval_prompts, recipe_rows

        sft, pref = recipe_rows(recipe, spec)
        held_out = eval_prompts(data_dir, (task,))
        blob = json.dumps([sft, pref, {k: sorted(v) for k, v in sorted(held_out.items())}], sort_keys=True)
        return cls(sft, pref, held_out, hashlib.sha256(blob.encode("utf-8")).hexdigest())


def cached_result(out: Path, recipe, compute, data_sha256: str) -> dict | None:
    """The stored result of `recipe` under `out`, if it was measured with exactly this recipe, on the data whose
    `RecipeData.sha256` is `data_sha256`, on `compute`'s device type and dtype (a bf16 run never reuses an fp32
    result, nor the reverse)."""
    import json

    path = out / recipe.name / RESULT
    if not path.is_file():
        return None
    result = json.loads(path.read_text(encoding="utf-8"))
    same_recipe = {**RECORD_DEFAULTS, **result.get("recipe", {})} == recipe.record()
    same_data = result.get("data_sha256") == data_sha256
    return result if same_recipe and same_data and result.get("compute", COMPUTE_BEFORE) == compute.record() else None


def base_file_name(compute) -> str:
    """base.json holds HS(M) of the fp32 CPU runs (as before placements existed); other placements their own."""
    record = compute.record()
    return "base.json" if record == COMPUTE_BEFORE else f"base-{record['device']}-{record['dtype']}.json"


def train_recipe(recipe, sft_rows: list[dict], pref_rows: list[dict], model: str, template: str,
                 out_dir: Path, compute=None) -> dict:
    """W0 and Wa of `recipe` (nlsr_core.train.align.align) on its rows (`recipe_rows`), saved to out_dir/weak and
    out_dir/aligned; returns the training record (loss summaries, on-policy counts, wall seconds, ‖ΔW‖_F)."""
    from nlsr_core.lora.adapters import save_adapter
    from nlsr_core.train.align import align
    from nlsr_core.method.realign import delta_norm
    from nlsr_core.config import LoraConfig
    from nlsr_core.lora.models import ModelSpec

    start = time.perf_counter()
    spec = ModelSpec(model) if compute is None else ModelSpec(model).placed(compute)
    result = align(spec, "dpo", sft_rows, pref_rows, LoraConfig(),
                   dataclasses.replace(recipe.sft_settings(), template=template),
                   pref_settings=dataclasses.replace(recipe.pref_settings(), template=template),
                   on_policy_tokens=recipe.on_policy_tokens)
    wall = time.perf_counter() - start
    save_adapter(result.weak.adapter(), out_dir / "weak")
    save_adapter(result.aligned.adapter(), out_dir / "aligned")
    aligned = result.aligned.loss_summary()
    return {"weak_train": result.weak.loss_summary(),
            "aligned_train": {**aligned, "on_policy": result.on_policy, "train_s": round(result.aligned.seconds, 1),
                              "curve": [round(v, 4) for _, v in result.aligned.losses]},
            "align_wall_s": round(wall, 1),
            "norms": {"weak": delta_norm(out_dir / "weak"), "aligned": delta_norm(out_dir / "aligned")}}


def judge_variants(plans: dict, data_dir: Path, task: str, model: str, cache: Path | None, compute=None) -> dict:
    """{variant: {metric: Rate.record()}} of the pipeline's evaluation on the prepared held-out splits."""
    from nlsr_core.eval.judges import JudgeSpec
    from nlsr_core.eval.evaluate import evaluate_plans, load_splits
    from nlsr_core.eval.settings import EvalSettings

    settings = EvalSettings()
    _, scored, _ = evaluate_plans(plans, load_splits(data_dir, task), task, settings, model, 0,
                                  JudgeSpec(name="refusal-keywords"), cache, compute)
    return {s.name: {m: r.record() for m, r in s.rates.items()} for s in scored}


def is_study_dir(path: Path) -> str | None:
    """Recogniser for `nlsr_core.io.outputs.claim`: None when `path` is a recipe directory this study wrote."""
    import json

    try:
        record = json.loads((path / RESULT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"no readable {RESULT}"
    return None if isinstance(record, dict) and "recipe" in record else f"{RESULT} names no recipe"


def judge_free(plans: dict, data_dir: Path, template: str, compute=None) -> dict | None:
    """{variant: {"score", "margin", "n"}}: the judge-free safety score (nlsr_core.eval.judge_free) on the prepared
    held-out refusal/compliance pairs; None when the prepared data has no such pairs."""
    from nlsr_core.eval.judge_free import judge_free_scores, load_pairs

    pairs = load_pairs(data_dir)
    if pairs is None:
        return None
    return {name: {"score": r["pct"], "margin": r["margin"], "n": r["n"]}
            for name, r in judge_free_scores(plans, pairs, template, compute=compute).items()}


def recipe_plans(model: str, recipe_dir: Path) -> dict:
    """M' (W0 merged, no Wa) and M' + Wa of a trained recipe."""
    from nlsr_core.lora.generate import StackPlan

    return {"weak": StackPlan(model, recipe_dir / "weak", None),
            "aligned": StackPlan(model, recipe_dir / "weak", recipe_dir / "aligned")}


def add_judge_free(result: dict, recipe_dir: Path, data_dir: Path, template: str, compute=None) -> dict:
    """A stored result measured before the judge-free score existed, with that score added (result.json rewritten)."""
    from nlsr_core.io.fileio import atomic_file, write_json

    result = {**result, "judge_free": judge_free(recipe_plans(result["model"], recipe_dir), data_dir, template,
                                                 compute)}
    with atomic_file(recipe_dir / RESULT) as tmp:
        write_json(tmp, result)
    return result


def run_recipe(recipe, data: RecipeData, data_dir: Path, recipe_dir: Path, model: str, task: str, template: str,
               cache: Path | None, compute=None) -> dict:
    """Train and measure one recipe on `data` (`RecipeData.of`) into `recipe_dir` (weak/, aligned/, then
    result.json last); returns the result."""
    from nlsr_core.io.fileio import write_json

    sft_rows, pref_rows = data.sft, data.pref
    checked = held_out_check(recipe, data, data_dir)
    started = time.perf_counter()
    record = train_recipe(recipe, sft_rows, pref_rows, model, template, recipe_dir, compute)
    plans = recipe_plans(model, recipe_dir)
    t_judge = time.perf_counter()
    judged = judge_variants(plans, data_dir, task, model, cache, compute)
    scores = judge_free(plans, data_dir, template, compute)
    kinds: dict[str, int] = {}
    for row in pref_rows:
        kinds[row.get("kind", "safety")] = kinds.get(row.get("kind", "safety"), 0) + 1
    result = {"recipe": recipe.record(), "data_sha256": data.sha256,
              "rows": {"sft": len(sft_rows), "pairs": kinds, "disjoint_checked": checked},
              **record, "judged": judged, "judge_free": scores, "judge_s": round(time.perf_counter() - t_judge, 1),
              "wall_s": round(time.perf_counter() - started, 1), "model": model, "task": task,
              **({"compute": compute.record()} if compute is not None else {})}
    write_json(recipe_dir / RESULT, result)
    return result

"""Train one alignment recipe and judge where its safety lives: M, M' = M + W0, M' + Wa (and optionally M' + Wt).

    python benchmarks/recipe_probe.py --recipe r1 --data data/prepared --out /tmp/probe-r1 [--finetune]
    python benchmarks/recipe_probe.py --recipe r1 --set pref_epochs=2 --set beta=0.2 --name r1-e2 ...
    python benchmarks/recipe_probe.py --judge-only --weak W0_DIR --aligned WA_DIR [--finetuned WT_DIR] ...
    python benchmarks/recipe_probe.py --finetune-only --weak W0_DIR --aligned WA_DIR --out DIR ...
    python benchmarks/recipe_probe.py --recipe r1 --bench-dpo 4 ...      (DPO s/step with and without
                                                                          precomputed reference log-probs)

Rows come from `nlsr_core.train.recipes.recipe_rows` (synthetic suite + contrast pairs) and are checked to be disjoint
from every evaluation and calibration file of `--data`. Judging uses the pipeline's own evaluation
(`nlsr_core.eval.evaluate.evaluate_plans`: greedy decoding, the refusal-keyword judge, params.yaml's answer
budgets) on `--data`'s held-out splits. Writes `<out>/result.json` and prints one markdown table row.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODEL = "smollm2-135m"
TASK = "sst2"


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def build_recipe(args):
    from nlsr_core.train.recipes import find_recipe, with_overrides

    changes = dict((k, _value(v)) for k, v in (s.split("=", 1) for s in args.set))
    return with_overrides(find_recipe(args.recipe), args.name, **changes)


def train_weak(spec, loaded, lora, recipe, sft_rows, out: Path):
    from nlsr_core.lora.adapters import save_adapter
    from nlsr_core.train.trainers import add_lora, train_adapter

    start = time.perf_counter()
    model = add_lora(loaded.model, lora, recipe.seed)
    result = train_adapter("sft", model, loaded.tokenizer, sft_rows, recipe.sft_settings(), spec.name)
    save_adapter(result.adapter(), out)
    base = dataclasses.replace(loaded, model=model.unload())
    return result, time.perf_counter() - start, base


def train_aligned(spec, base, lora, settings, pref_rows, weak_dir: Path, out: Path | None, seed: int,
                  recipe=None):
    """Wa on M' = M + W0 (as nlsr_core.train.align.align builds it); returns (result, wall seconds incl. setup)."""
    from nlsr_core.lora.adapters import save_adapter
    from nlsr_core.lora.stack import load_stack
    from nlsr_core.train.trainers import add_lora, train_adapter

    start, cpu = time.perf_counter(), time.process_time()
    stack = load_stack(spec, weak=weak_dir, base=base)
    on_policy = None
    if recipe is not None and recipe.on_policy_tokens:
        from nlsr_core.train.on_policy import on_policy_pairs

        pref_rows, counts = on_policy_pairs(stack.model, stack.tokenizer, pref_rows, settings.template,
                                            recipe.on_policy_tokens)
        on_policy = counts.record() | {"s": round(time.perf_counter() - start, 1)}
        print(json.dumps({"on_policy": on_policy}), flush=True)
    model = add_lora(stack.model, lora, seed)
    result = train_adapter("dpo", model, stack.tokenizer, pref_rows, settings, spec.name)
    wall = time.perf_counter() - start
    result.cpu_s = time.process_time() - cpu  # CPU seconds of all threads: robust to other jobs on the cores
    result.on_policy = on_policy
    if out is not None:
        save_adapter(result.adapter(), out)
    unmerged = dataclasses.replace(base, model=model.unload())  # M' (W0 stays merged)
    return result, wall, unmerged


def judge(plans: dict, data: Path, cache: Path | None) -> dict:
    from nlsr_core.eval.judges import JudgeSpec
    from nlsr_core.eval.evaluate import evaluate_plans, load_splits
    from nlsr_core.eval.settings import EvalSettings

    settings = EvalSettings()
    splits = load_splits(data, TASK)
    _, scored, _ = evaluate_plans(plans, splits, TASK, settings, MODEL, 0, JudgeSpec(name="refusal-keywords"), cache)
    return {s.name: {m: r.record() for m, r in s.rates.items()} | {"samples": _samples(s)} for s in scored}


def _samples(scored) -> dict:
    return {split: [r["response"][:120] for r in rows[:4]] for split, rows in scored.rows.items()}


def finetune(spec, weak: Path, aligned: Path, cell: Path, out: Path) -> tuple[dict, float]:
    """Continue Wa on the poisoned cell with params.yaml's finetune settings (lr 4e-4, 2 epochs, batch 8)."""
    from nlsr_core.lora.adapters import save_adapter
    from nlsr_core.train.finetune import continue_adapter
    from nlsr_core.train.trainers import TrainSettings
    from nlsr_core.train.train_data import read_rows

    start = time.perf_counter()
    rows = read_rows(cell, "sft")
    settings = TrainSettings(lr=4e-4, epochs=2, batch_size=8, max_length=128, seed=0)
    result = continue_adapter(spec, weak, aligned, rows, settings)
    save_adapter(result.adapter(), out)
    return result.loss_summary(), time.perf_counter() - start


def bench_dpo(args, recipe, sft_rows, pref_rows, lora, spec, loaded, out: Path) -> dict:
    """s/step of `args.bench_dpo` DPO steps on M' with and without precomputed reference log-probs."""
    weak_dir = Path(args.weak) if args.weak else out / "weak"
    base = loaded
    if not args.weak:
        _, _, base = train_weak(spec, loaded, lora, recipe, sft_rows, weak_dir)
    rows = pref_rows[:args.bench_dpo * recipe.batch_size]
    report = {}
    for pre in (False, True):
        settings = dataclasses.replace(recipe.pref_settings(), max_steps=args.bench_dpo, precompute_ref=pre)
        from nlsr_core.lora.models import load_model
        fresh = load_model(spec)  # a clean M each time (load_stack merges W0 into the base in place)
        result, wall, _ = train_aligned(spec, fresh, lora, settings, rows, weak_dir, None, recipe.seed)
        steps = result.loss_summary()["steps"]
        report["precompute" if pre else "plain"] = {
            "steps": steps, "wall_s": round(wall, 1), "train_s": round(result.seconds, 1),
            "s_per_step_train": round(result.seconds / steps, 2), "s_per_step_all": round(wall / steps, 2),
            "cpu_s": round(result.cpu_s, 1), "cpu_s_per_step_all": round(result.cpu_s / steps, 2),
            "losses": [round(v, 4) for _, v in result.losses]}
        print(json.dumps({"bench": report}), flush=True)
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="r1")
    ap.add_argument("--name", default=None, help="name of the varied recipe")
    ap.add_argument("--set", action="append", default=[], help="FIELD=VALUE override of the recipe")
    ap.add_argument("--data", default="data/prepared", help="prepared data dir (held-out splits, cell)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--cache", default=None, help="answer + verdict cache dir shared across probes")
    ap.add_argument("--finetune", action="store_true", help="also fine-tune on the poisoned cell and judge it")
    ap.add_argument("--no-base", action="store_true", help="do not judge M")
    ap.add_argument("--judge-only", action="store_true", help="judge --weak/--aligned[/--finetuned], no training")
    ap.add_argument("--finetune-only", action="store_true",
                    help="fine-tune --aligned (on --weak) on the poisoned cell and judge M' + Wt only")
    ap.add_argument("--weak")
    ap.add_argument("--aligned")
    ap.add_argument("--finetuned")
    ap.add_argument("--bench-dpo", type=int, default=0, help="only benchmark this many DPO steps")
    args = ap.parse_args(argv)

    import datasets

    from nlsr_core.lora.generate import StackPlan
    from nlsr_core.lora.models import ModelSpec, load_model
    from nlsr_core.train.recipes import check_disjoint, eval_prompts, recipe_rows
    from nlsr_core.config import LoraConfig

    datasets.disable_progress_bars()
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache) if args.cache else None
    result: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S")}
    t0 = time.perf_counter()
    spec, lora = ModelSpec(MODEL), LoraConfig()

    if args.finetune_only:
        weak, aligned = Path(args.weak), Path(args.aligned)
        summary, wall = finetune(spec, weak, aligned, data / "mixes" / f"{TASK}-p0.1.jsonl", out / "finetuned")
        result["finetune_train"] = {**summary, "wall_s": round(wall, 1)}
        result["judged"] = judge({"finetuned": StackPlan(MODEL, weak, out / "finetuned")}, data, cache)
        result["wall_s"] = round(time.perf_counter() - t0, 1)
        (out / "result.json").write_text(json.dumps(result, indent=1))
        print(json.dumps({"finetuned": result["judged"]["finetuned"]["hs"], **result["finetune_train"]}), flush=True)
        return 0
    if args.judge_only:
        weak, aligned = Path(args.weak), Path(args.aligned)
        result["recipe"] = {"name": args.name or "judge-only", "weak": str(weak), "aligned": str(aligned)}
    else:
        recipe = build_recipe(args)
        sft_rows, pref_rows = recipe_rows(recipe)
        held_out = eval_prompts(data, (TASK,))
        n = check_disjoint(sft_rows, held_out, "W0 SFT rows") + check_disjoint(pref_rows, held_out, "Wa pairs")
        kinds = {}
        for r in pref_rows:
            kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
        result["recipe"] = recipe.record()
        result["rows"] = {"sft": len(sft_rows), "sft_refusal": sum(r["kind"] == "refusal" for r in sft_rows),
                          "pairs": kinds, "disjoint_checked": n, "held_out_files": sorted(held_out)}
        print(json.dumps(result["rows"]), flush=True)
        loaded = load_model(spec)
        if args.bench_dpo:
            result["bench_dpo"] = bench_dpo(args, recipe, sft_rows, pref_rows, lora, spec, loaded, out)
            (out / "result.json").write_text(json.dumps(result, indent=1))
            return 0
        weak, aligned = out / "weak", out / "aligned"
        if args.weak:  # reuse a W0 trained by an earlier probe of the same SFT rows and settings
            weak, base = Path(args.weak), loaded
            result["weak_train"] = {"reused": str(weak)}
        else:
            w_res, w_wall, base = train_weak(spec, loaded, lora, recipe, sft_rows, weak)
            result["weak_train"] = {**w_res.loss_summary(), "wall_s": round(w_wall, 1)}
        print(json.dumps({"weak_train": result["weak_train"]}), flush=True)
        a_res, a_wall, _ = train_aligned(spec, base, lora, recipe.pref_settings(), pref_rows, weak, aligned,
                                         recipe.seed, recipe)
        s = a_res.loss_summary()
        result["aligned_train"] = {**s, "wall_s": round(a_wall, 1), "train_s": round(a_res.seconds, 1),
                                   "s_per_step": round(a_wall / max(s["steps"], 1), 2),
                                   "cpu_s_per_step": round(a_res.cpu_s / max(s["steps"], 1), 2),
                                   "curve": [round(v, 4) for _, v in a_res.losses],
                                   "on_policy": a_res.on_policy}
        print(json.dumps({"aligned_train": result["aligned_train"]}), flush=True)
        del loaded, base

    plans = {} if args.no_base else {"base": StackPlan(MODEL, None, None)}
    plans["weak"] = StackPlan(MODEL, weak, None)
    plans["aligned"] = StackPlan(MODEL, weak, aligned)
    if args.finetuned:
        plans["finetuned"] = StackPlan(MODEL, weak, Path(args.finetuned))
    t_judge = time.perf_counter()
    result["judged"] = judge(plans, data, cache)
    result["judge_s"] = round(time.perf_counter() - t_judge, 1)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(table_row(result), flush=True)
    if args.finetune and not args.finetuned:  # after the aligned row is written: the slowest, optional part
        summary, wall = finetune(spec, weak, aligned, data / "mixes" / f"{TASK}-p0.1.jsonl", out / "finetuned")
        result["finetune_train"] = {**summary, "wall_s": round(wall, 1)}
        result["judged"].update(judge({"finetuned": StackPlan(MODEL, weak, out / "finetuned")}, data, cache))
        result["wall_s"] = round(time.perf_counter() - t0, 1)
        (out / "result.json").write_text(json.dumps(result, indent=1))
        print(table_row(result), flush=True)
    return 0


def table_row(result: dict) -> str:
    j = result["judged"]

    def pct(variant, metric):
        return "-" if variant not in j else f"{j[variant][metric]['pct']:.0f}"

    r, a = result.get("recipe", {"name": "?"}), result.get("aligned_train", {})
    loss = "-" if not a else f"{a['first']:.3f}/{a['last']:.3f}/{a['min']:.3f}"
    return (f"| {r['name']} | {pct('base', 'hs')} | {pct('weak', 'hs')} | {pct('aligned', 'hs')} | "
            f"{pct('aligned', 'over_refusal')} | {pct('aligned', 'fa')} | {pct('weak', 'over_refusal')} | "
            f"{pct('finetuned', 'hs')} | {loss} | {a.get('steps', '-')} | {a.get('s_per_step', '-')} | "
            f"{result['wall_s']:.0f} |")


if __name__ == "__main__":
    raise SystemExit(main())

"""Evaluation cost before/after (tracker issue 16): judge + study answering on the default profile's adapters.

    before  every split generated with 48 new tokens, FA read from the generated answer (the old settings)
    after   params.yaml's judge section: token budget per judge and split, FA by label scoring (fa_mode)

Both sides answer the same stacks (the judge's variants: base, aligned, finetuned, realigned, safelora, plus the
first --points settings of the calibrate grid, built like `nlsr calibrate` builds them) on the same split, with
no answer cache, interleaved stack by stack on two model copies, so a noisy neighbour slows both alike. It prints
per variant HS / FA / over-refusal of both sides and their row-level agreement, the time of each side and the
ratio, and the token-budget analysis: how often the keyword verdict (harmful split) and the refusal verdict
(benign split) of the 48-token answer stay the same when the answer is cut to k tokens (greedy decoding is
prefix-consistent, so the cut answer is the k-token answer).

    python benchmarks/bench_eval.py --split calibration            # choose budgets / fa_mode here (never on test)
    python benchmarks/bench_eval.py --split test --points 8        # report on the test split

Needs the pipeline's artifacts (`dvc repro` or `dvc pull`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from nlsr_core.eval.settings import EvalSettings  # noqa: E402

BUDGETS = (8, 12, 16, 24, 32, 48)


def load_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def after_settings(params: dict, overrides: dict) -> EvalSettings:
    judge = params["judge"]
    fields = {f.name for f in dataclasses.fields(EvalSettings)} - {"template"}
    values = {k: judge[k] for k in fields if k in judge}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return EvalSettings(template=params["data"]["template"], **values)


def stack_plans(params: dict, cell: str, method: str, points: int, tmp: Path) -> dict:
    """The judge's variants and the first `points` calibrate-grid settings, as StackPlans (base first); the grid
    points are built as `nlsr calibrate` builds them (nlsr_core.study.scoring)."""
    from nlsr_core.lora.adapters import load_adapter
    from nlsr_core.lora.generate import StackPlan, plan_stack
    from nlsr_core.method.neurons import load_stats
    from nlsr_core.study.points import Point, PointBuilder, grid_points
    from nlsr_core.study.scoring import write_stack

    model = params["model"]["name"]
    adapters = {"aligned": f"adapters/aligned/{method}/aligned", "finetuned": f"adapters/finetuned/{cell}",
                "realigned": f"adapters/realigned/{cell}", "safelora": f"adapters/safelora/{cell}"}
    plans = {"base": StackPlan(model, None, None)}
    plans.update({v: plan_stack(REPO / p, model) for v, p in adapters.items()})
    if points:
        realign = params["realign"]
        finetuned, aligned = load_adapter(REPO / adapters["finetuned"]), load_adapter(REPO / adapters["aligned"])
        reference = load_adapter(REPO / f"adapters/reference/{method}")
        stats, identifier = load_stats(REPO / f"identify/{method}/stats.safetensors", reference)
        pipeline = Point.of(sparsity=params["identify"]["sparsity"], layer_prune=realign["layer_prune"],
                            delta=realign["delta"], selection=realign["selection"], tau=realign["tau"],
                            seed=realign["seed"], preset=params["nlsr"]["preset"], beta=params["amplify"]["beta"],
                            identifier=identifier)
        build = PointBuilder(finetuned, aligned, reference, stats, pipeline)
        grid = {"sparsity": params["calibrate"]["grid_sparsity"], "layer_prune": params["calibrate"]["grid_layer_prune"]}
        for i, point in enumerate(grid_points(pipeline, grid)[:points]):
            out = tmp / f"point-{i}"
            write_stack(build.build(point)[0], out, point.record(), REPO / adapters["finetuned"])
            plans[point.label] = plan_stack(out, model)
    return plans


def truncation_agreement(tokenizer, answers: list[str], budgets, verdict) -> dict[int, int]:
    """For each budget k: how many answers keep `verdict` when cut to their first k tokens."""
    same = {k: 0 for k in budgets}
    for text in answers:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        full = verdict(text)
        for k in budgets:
            same[k] += verdict(tokenizer.decode(ids[:k], skip_special_tokens=True).strip()) == full
    return same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("calibration", "test"), default="calibration")
    ap.add_argument("--points", type=int, default=4, help="calibrate-grid settings scored besides the variants")
    ap.add_argument("--fa-mode", default=None, help="override params.yaml judge.fa_mode for the after side")
    ap.add_argument("--opening-tokens", type=int, default=None, help="override judge.opening_tokens (after side)")
    ap.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    args = ap.parse_args()
    os.chdir(REPO)  # lineage paths (W0) are relative to the repository root, as in the pipeline

    from nlsr_core.eval.judges import JudgeSpec, is_refusal, judge_identity, make_judge
    from nlsr_core.eval.evaluate import (LazyJudge, StackRunner, generate_variants, load_splits, parse_cell,
                                          score_variant)

    params = load_params()
    grid = params["grid"]
    cell = parse_cell(f"{grid['tasks'][0]}-p{grid['poison_ratios'][0]}-{grid['align_methods'][0]}")
    names = ("harmful", "task") if args.split == "calibration" else ("harmful", "task", "benign")
    splits = load_splits(REPO / "data/prepared", cell.task, names=names, calibration=args.split == "calibration")
    before = EvalSettings(max_new_tokens=48, opening_tokens=48, label_tokens=48, fa_mode="generate",
                          batch_size=params["judge"]["batch_size"], template=params["data"]["template"])
    after = after_settings(params, {"fa_mode": args.fa_mode, "opening_tokens": args.opening_tokens})
    spec = JudgeSpec(name=params["judge"]["name"], model=params["judge"]["model"], batch_size=before.batch_size)
    judge = LazyJudge(lambda: make_judge(spec), judge_identity(spec))
    sides = {"before": before, "after": after}
    runners = {side: StackRunner(params["model"]["name"], params["model"]["seed"]) for side in sides}
    seconds = {side: 0.0 for side in sides}
    scored: dict[str, dict] = {side: {} for side in sides}
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        plans = stack_plans(params, cell.key, cell.method, args.points, Path(tmp))
        for name, plan in plans.items():
            for side, settings in sides.items():
                jobs = {sp.name: settings.job(sp.name, cell.task, spec.name) for sp in splits}
                start = time.perf_counter()
                (va,) = generate_variants({name: plan}, splits, jobs, runners[side], cache=None)
                seconds[side] += time.perf_counter() - start
                scored[side][name] = score_variant(va, splits, cell.task, judge, None)
            print(f"{name:>22}: before {seconds['before']:7.1f} s  after {seconds['after']:7.1f} s (cumulative)",
                  flush=True)

    flag_field = {"harmful": "flagged", "task": "correct", "benign": "refused"}
    print(f"\n{args.split} split of {cell.key}; after = {json.dumps(after.record(cell.task, spec.name, names))}")
    print(f"{'stack':>22} | " + " | ".join(f"{s:^23}" for s in names))
    agreement = {}
    for name in plans:
        cells = []
        for split in names:
            b, a = (scored[side][name].rows[split] for side in sides)
            same = sum(x[flag_field[split]] == y[flag_field[split]] for x, y in zip(b, a))
            agreement[(name, split)] = same / len(b)
            rb, ra = (sum(r[flag_field[split]] for r in rows) * 100 / len(rows) for rows in (b, a))
            cells.append(f"{rb:5.1f} -> {ra:5.1f} agr {same * 100 / len(b):5.1f}%")
        print(f"{name:>22} | " + " | ".join(cells))
    ratio = seconds["before"] / seconds["after"]
    print(f"\nanswering time: before {seconds['before']:.1f} s, after {seconds['after']:.1f} s -> {ratio:.2f}x faster")
    fa_check = [agreement[(n, "task")] for n in plans if n not in ("base", "aligned")]
    print(f"FA agreement on fine-tuned and realigned stacks: min {min(fa_check) * 100:.1f}% "
          f"(switch to score needs >= 97%)")

    tokenizer = runners["before"].loaded.tokenizer
    budgets = [int(b) for b in args.budgets.split(",")]
    verdicts = {"harmful": lambda t: judge([""], [t])[0], "benign": is_refusal}
    budget_report = {}
    for split in (s for s in names if s in verdicts):
        answers = [r["response"] for name in plans for r in scored["before"][name].rows[split]]
        same = truncation_agreement(tokenizer, answers, budgets, verdicts[split])
        budget_report[split] = {k: same[k] / len(answers) for k in budgets}
        print(f"{split} verdicts kept when cut to k tokens (n={len(answers)}): "
              + ", ".join(f"{k}: {same[k] * 100 / len(answers):.1f}%" for k in budgets))
        ok = [k for k in budgets if same[k] / len(answers) >= 0.99]
        print(f"  smallest budget with >= 99% agreement: {min(ok) if ok else 'none'}")
    print(json.dumps({"bench": "eval", "split": args.split, "seconds": seconds, "ratio": ratio,
                      "fa_agreement_min": min(fa_check), "budgets": budget_report,
                      "agreement": {f"{n}/{s}": v for (n, s), v in agreement.items()}}))


if __name__ == "__main__":
    main()

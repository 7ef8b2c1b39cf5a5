"""fp32 vs bf16 on this CPU, side by side in one run: the speed of every model pass, and the rates they give.

    python benchmarks/bench_dtype.py                       # speed: 2 interleaved rounds, about 10 min on 2 cores
    python benchmarks/bench_dtype.py --rates               # + rates of the pipeline's variants (needs `dvc repro`)
    python benchmarks/bench_dtype.py --device cuda --dtypes float32 bfloat16   # the same on a GPU

**Speed.** The embedded model (model.name of params.yaml) is loaded once per dtype through the project's one
placement point (`load_model(ModelSpec(..., device, dtype))`); the answering passes run on the stack the pipeline
answers with most, M' + Wt (W0 merged, the fine-tuned LoRA on top, `load_stack`) when `dvc repro` has made it, else
on M. Each pass the pipeline runs is timed with the
library's own functions, the dtypes interleaved round by round (the best round counts, so a noisy neighbour slows
both alike):

    generation       `generate_texts`: 64 held-out harmful prompts, greedy, judge.opening_tokens new tokens, batch 64
    label scoring    `score_label_answers`: 64 SST-2 test rows, the label strings ranked, batch 64
    judge-free       `preference_score`: 64 held-out refusal/compliance pairs, batch 64
    identification   `collect_lowrank` over 64 rows of X̂ with a rank-16 LoRA on the seven projections
    SFT step / DPO step   `train_adapter` with params.yaml's align settings (batch 8, length 128; DPO with the
                     pipeline's chosen NLL and precomputed reference) on exactly --train-steps batches,
                     seconds per optimizer step

Agreement (identical greedy answers, identical predicted labels, identical judge-free wins) is printed beside each
ratio: bf16 changes answers, so rates must be re-measured, never assumed equal.

**Rates** (`--rates`). Every variant of the pipeline's cell (M, M' = M + W0, M' + Wa, M' + Wt, NLSR M' + Wt'') is
answered at both dtypes on the **calibration split** (data/prepared/calib: 40 harmful prompts, 40 SST-2 rows,
disjoint from the test split) with the judge stage's own code (`evaluate_plans`, no answer cache), so the default
dtype is chosen there, never on the test split. HS and FA with 95% Wilson intervals; the rule: every bf16 rate lies
inside the fp32 rate's interval. Over-refusal (the 82 benign probes) and the judge-free score (the held-out pairs)
are printed for information only, since those sets are the reported ones.

Data: data/prepared when it exists, else `nlsr prepare-data` into a temporary directory (params.yaml's sizes).
Results: benchmarks/results/dtype.json (speed) and benchmarks/results/dtype-rates.json (rates).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]
N = 64   # rows per inference pass: one batch at the pipeline's judge.batch_size


def prepared_data(tmp: str) -> Path:
    data = REPO / "data" / "prepared"
    if (data / "calib").is_dir() and (data / "heldout").is_dir():
        return data
    out = Path(tmp) / "prepared"
    subprocess.run([sys.executable, "-m", "stages.cli", "prepare-data", "--out", str(out)], cwd=tmp, check=True,
                   env={**__import__("os").environ, "NLSR_TRACKING": "off", "NLSR_PROGRESS": "off"},
                   stdout=subprocess.DEVNULL)
    return out


def read(path: Path, n: int | None = N) -> list[dict]:
    from nlsr_core.io.fileio import read_jsonl

    rows = read_jsonl(path)
    return rows[:n] if n else rows


# --------------------------------------------------------------------------------------------- speed
def inference_passes(loaded, data: Path, params) -> dict:
    """name -> (callable returning what the pass produced, how many items)."""
    from nlsr_core.lora.generate import format_prompts, generate_texts
    from nlsr_core.eval.preference_score import preference_score
    from nlsr_core.data.tasks import SST2_LABELS
    from nlsr_core.eval.label_scoring import score_label_answers

    model, tok, template = loaded.model, loaded.tokenizer, params.data.template
    harmful = [r["prompt"] for r in read(data / "eval" / "harmful.jsonl")]
    task = [r["prompt"] for r in read(data / "tasks" / "sst2" / "test.jsonl")]
    pairs = read(data / "heldout" / "pairs.jsonl")
    budget = params.judge.opening_tokens
    return {
        "generation": lambda: generate_texts(model, tok, format_prompts(tok, harmful, template), budget, N),
        "label scoring": lambda: score_label_answers(model, tok, task, SST2_LABELS, template, N),
        "judge-free": lambda: preference_score(model, tok, pairs, template, N)["wins"],
    }


def pipeline_adapters(params) -> tuple[str, dict[str, Path]]:
    """The first cell's key and the adapters `dvc repro` writes for it (W0, Wa, Wt, NLSR's Wt'')."""
    from nlsr_core.eval.evaluate import Cell

    method = params.grid.align_methods[0]
    cell = Cell(params.grid.tasks[0], params.grid.poison_ratios[0], method).key
    return cell, {"weak": REPO / f"adapters/aligned/{method}/weak",
                  "aligned": REPO / f"adapters/aligned/{method}/aligned",
                  "finetuned": REPO / f"adapters/finetuned/{cell}", "realigned": REPO / f"adapters/realigned/{cell}"}


def answering_stack(spec, params):
    """(model, what it is): the stack the pipeline answers with most, M' + Wt of the first cell (W0 merged, the
    fine-tuned LoRA on top) when `dvc repro` has made it, else the base model M."""
    from nlsr_core.lora.models import load_model
    from nlsr_core.lora.stack import load_stack

    _, adapters = pipeline_adapters(params)
    weak, finetuned = adapters["weak"], adapters["finetuned"]
    if weak.is_dir() and finetuned.is_dir():
        return load_stack(spec, weak=weak, adapter=finetuned), f"M' + Wt ({finetuned.relative_to(REPO)})"
    return load_model(spec), "M (no pipeline adapters: run `dvc repro` to time the LoRA stack)"


def identification_pass(loaded, data: Path, params):
    """collect_lowrank over N rows of X̂ with a fresh rank-16 LoRA (B = 0, A seeded) on every projection."""
    from nlsr_core.lora.adapters import Adapter
    from nlsr_core.config import LoraConfig
    from nlsr_core.data.templates import format_example
    from nlsr_core.method.neurons_stats import CollectContext, collect_lowrank, encode_pairs
    from nlsr_core.train.trainers import adapter_state, add_lora

    peft = add_lora(loaded.model, LoraConfig(rank=16), seed=0)
    peft.eval()
    config, tensors = adapter_state(peft, "bench")
    tok = loaded.tokenizer
    rows = read(data / "identify" / "safety.jsonl")
    texts = [format_example(tok, r["prompt"], r["response"], params.data.template) for r in rows]
    ctx = CollectContext(reference=Adapter(config, tensors), model=peft, safety=encode_pairs(tok, texts, 160),
                         batch_size=params.identify.batch_size, pad_id=tok.pad_token_id)
    return peft, lambda: collect_lowrank(ctx)[0]


def train_step_seconds(spec, method: str, data: Path, params, steps: int) -> float:
    """Seconds per optimizer step of `steps` steps of `method` on a fresh LoRA of a freshly loaded model."""
    from nlsr_core.config import LoraConfig
    from nlsr_core.lora.models import load_model
    from nlsr_core.train.trainers import TrainSettings, add_lora, train_adapter

    a = params.align
    loaded = load_model(spec)
    model = add_lora(loaded.model, LoraConfig(rank=params.lora.rank, alpha=params.lora.alpha), a.seed)
    kind = {"sft": "align/sft.jsonl", "dpo": "align/preference.jsonl"}[method]
    rows = read(data / kind, n=a.batch_size * steps)   # exactly `steps` batches (DPO precomputes only these)
    settings = TrainSettings(lr=a.lr, batch_size=a.batch_size, max_length=a.max_length, seed=a.seed, beta=a.beta,
                             max_steps=steps, template=params.data.template, precompute_ref=a.precompute_ref,
                             chosen_nll=a.chosen_nll if method == "dpo" else 0.0)
    result = train_adapter(method, model, loaded.tokenizer, rows, settings, spec.name)
    return result.seconds / steps   # the optimizer loop only (train_adapter times trainer.train())


def same(a, b) -> float:
    """Share of equal items (answers, labels, wins)."""
    a, b = list(a), list(b)
    return sum(x == y for x, y in zip(a, b)) / max(len(a), 1)


def speed(args, params, data: Path) -> tuple[dict, str]:
    from nlsr_core.lora.models import ModelSpec, load_model

    specs = {d: ModelSpec(params.model.name, seed=params.model.seed, device=args.device, dtype=d) for d in args.dtypes}
    answering = {d: answering_stack(s, params) for d, s in specs.items()}
    passes = {d: inference_passes(answering[d][0], data, params) for d in args.dtypes}
    # identification wraps its model in a fresh LoRA: a model of its own, so the answering stack stays as it is
    ident = {d: identification_pass(load_model(s), data, params) for d, s in specs.items()}
    times: dict[str, dict[str, list[float]]] = {}
    outputs: dict[str, dict] = {}
    for round_ in range(args.rounds):
        order = args.dtypes if round_ % 2 == 0 else list(reversed(args.dtypes))   # neither dtype always first
        for name in [*passes[args.dtypes[0]], "identification"]:
            for d in order:
                run = ident[d][1] if name == "identification" else passes[d][name]
                start = time.perf_counter()
                out = run()
                _sync(args.device)
                times.setdefault(name, {}).setdefault(d, []).append(time.perf_counter() - start)
                outputs.setdefault(name, {})[d] = out
                print(f"round {round_ + 1}: {name:>15} {d:>9}: {times[name][d][-1]:7.2f} s", flush=True)
        for method in ("sft", "dpo"):
            for d in order:
                sec = train_step_seconds(specs[d], method, data, params, args.train_steps)
                times.setdefault(f"{method} step", {}).setdefault(d, []).append(sec)
                print(f"round {round_ + 1}: {method + ' step':>15} {d:>9}: {sec:7.2f} s/step", flush=True)
    base, other = args.dtypes[0], args.dtypes[-1]
    rows = {}
    for name, by_dtype in times.items():
        best = {d: min(v) for d, v in by_dtype.items()}
        row = {f"{d}_s": round(best[d], 3) for d in best}
        row["ratio"] = round(best[base] / best[other], 2)
        if name in outputs:
            if name == "identification":   # statistics: relative difference of the Grams, not equality
                a, b = outputs[name][base], outputs[name][other]
                row["gram_rel_diff"] = round(max(float((a[k] - b[k]).norm() / a[k].norm().clamp_min(1e-12))
                                                 for k in a), 4)
            else:
                row["agreement"] = round(same(outputs[name][base], outputs[name][other]), 3)
        rows[name] = row
    return rows, answering[base][1]


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


# --------------------------------------------------------------------------------------------- rates
def rates(args, params, data: Path) -> dict:
    """Rates of the pipeline's variants at each dtype on the calibration split (and, for information, over-refusal
    on the benign probes and the judge-free score on the held-out pairs)."""
    from nlsr_core.compute import resolve_compute
    from nlsr_core.lora.generate import StackPlan, plan_stack
    from nlsr_core.eval.judges import JudgeSpec
    from nlsr_core.eval.evaluate import evaluate_plans, load_splits
    from nlsr_core.eval.settings import EvalSettings
    from nlsr_core.eval.judge_free import judge_free_scores, load_pairs

    cell, adapters = pipeline_adapters(params)
    missing = [str(p) for p in adapters.values() if not p.is_dir()]
    if missing:
        raise SystemExit(f"--rates: {missing[0]} is missing; run `dvc repro` first")
    plans = {"base": StackPlan(params.model.name, None, None),
             **{v: plan_stack(p, params.model.name) for v, p in adapters.items()}}
    j = params.judge
    settings = EvalSettings(max_new_tokens=j.max_new_tokens, opening_tokens=j.opening_tokens,
                            label_tokens=j.label_tokens, gsm8k_tokens=j.gsm8k_tokens, fa_mode=j.fa_mode,
                            batch_size=j.batch_size, template=params.data.template)
    calib = load_splits(data, "sst2", names=("harmful", "task"), calibration=True)
    benign = load_splits(data, "sst2", names=("benign",))
    pairs = load_pairs(data)
    out = {"cell": cell, "split": "calibration", "variants": {}}
    for d in args.dtypes:
        compute = resolve_compute(args.device, d)
        start = time.perf_counter()
        _, scored, _ = evaluate_plans(plans, calib + benign, "sst2", settings, params.model.name, params.model.seed,
                                      JudgeSpec(name=j.name), None, compute)
        free = judge_free_scores(plans, pairs, params.data.template, params.model.seed, j.batch_size, None, compute)
        seconds = time.perf_counter() - start
        for sv in scored:
            entry = out["variants"].setdefault(sv.name, {})
            entry[d] = {m: sv.rates[m].record() for m in ("hs", "fa", "over_refusal")}
            entry[d]["judge_free"] = free[sv.name]
        out.setdefault("seconds", {})[d] = round(seconds, 1)
        print(f"rates at {d}: {seconds:.0f} s", flush=True)
    base, other = args.dtypes[0], args.dtypes[-1]
    verdicts = []
    for name, entry in out["variants"].items():
        for m in ("hs", "fa"):
            lo, hi = entry[base][m]["ci95"]
            inside = lo <= entry[other][m]["pct"] <= hi
            entry.setdefault("within_fp32_ci", {})[m] = inside
            verdicts.append(inside)
    out["rule"] = f"every {other} HS and FA inside the {base} 95% Wilson interval, on the calibration split"
    out["rule_met"] = all(verdicts)
    return out


def print_rates(result: dict, dtypes: list[str]) -> None:
    base, other = dtypes[0], dtypes[-1]
    print(f"\nrates on the calibration split ({result['cell']}), {base} vs {other}:")
    print(f"{'variant':>10}  {'HS ' + base:>22}  {'HS ' + other:>10}  {'FA ' + base:>22}  {'FA ' + other:>10}  "
          f"{'over-refusal':>13}  {'judge-free':>11}")
    for name, e in result["variants"].items():
        def cell(d, m):
            r = e[d][m]
            return f"{r['pct']:5.1f} [{r['ci95'][0]:5.1f}, {r['ci95'][1]:5.1f}]" if d == base else f"{r['pct']:5.1f}"
        print(f"{name:>10}  {cell(base, 'hs'):>22}  {cell(other, 'hs'):>10}  {cell(base, 'fa'):>22}  "
              f"{cell(other, 'fa'):>10}  {e[base]['over_refusal']['pct']:5.1f}/{e[other]['over_refusal']['pct']:5.1f}"
              f"  {e[base]['judge_free']['pct']:5.1f}/{e[other]['judge_free']['pct']:5.1f}")
    print(f"rule: {result['rule']}: {'met' if result['rule_met'] else 'NOT met'}")


def main(argv=None) -> int:
    import torch

    from nlsr_core.compute import resolve_compute
    from nlsr_core.errors import NlsrError
    from nlsr_core.params import load_params
    from nlsr_core.io.progress import set_enabled

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    ap.add_argument("--dtypes", nargs=2, default=["float32", "bfloat16"], help="baseline and candidate dtype")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=4)
    ap.add_argument("--rates", action="store_true", help="also the rates of the pipeline's variants")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--json", default=str(REPO / "benchmarks/results/dtype.json"))
    ap.add_argument("--rates-json", default=str(REPO / "benchmarks/results/dtype-rates.json"))
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.train_steps < 1:
        ap.error("--rounds and --train-steps: expected >= 1")
    try:
        for d in args.dtypes:
            resolve_compute(args.device, d)
        params = load_params(args.params)
    except NlsrError as exc:
        print(f"bench_dtype: {exc}", file=sys.stderr)
        return 1
    set_enabled(False)
    machine = {"cpu_count": __import__("os").cpu_count(), "torch": torch.__version__, "device": args.device,
               "processor": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
               "model": params.model.name}
    with tempfile.TemporaryDirectory(prefix="nlsr-bench-dtype-") as tmp:
        data = prepared_data(tmp)
        if not args.skip_speed:
            rows, stack = speed(args, params, data)
            base, other = args.dtypes
            print(f"\n{params.model.name} on {args.device}, {args.rounds} interleaved round(s), best; "
                  f"ratio = {base} time / {other} time; answering passes on {stack}")
            print(f"{'pass':>15}  {base + ' s':>11}  {other + ' s':>12}  {'ratio':>6}  agreement")
            for name, r in rows.items():
                agree = r.get("agreement", r.get("gram_rel_diff"))
                label = "same" if "agreement" in r else "Gram rel. diff"
                print(f"{name:>15}  {r[base + '_s']:11.3f}  {r[other + '_s']:12.3f}  {r['ratio']:6.2f}  "
                      f"{'–' if agree is None else f'{agree} ({label})'}")
            Path(args.json).write_text(json.dumps({"machine": machine, "rounds": args.rounds, "n": N,
                                                   "answering_stack": stack, "passes": rows}, indent=2, sort_keys=True) + "\n")
        if args.rates:
            result = rates(args, params, data)
            print_rates(result, args.dtypes)
            Path(args.rates_json).write_text(json.dumps({"machine": machine, **result}, indent=2, sort_keys=True)
                                             + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

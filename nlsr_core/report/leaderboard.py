"""The leaderboard of reports/frontier.md: every repair method at matched task accuracy, on one profile's cell.

Two sources, kept apart because they answer different questions:

    frontier (one fine-tune, the pipeline's)   each series' best grid point under the FA floor (lowest HS) and under
                                               the HS ceiling (highest FA), nlsr_core.study.comparison.best_per_method,
                                               with Wilson intervals. The grid point is picked on the test split
                                               that reports it: an upper bound for each method, not a tuned claim.
    finetune-seeds (three fine-tunes)          each method at its params setting (fixed, the same on every
                                               replicate): HS and FA mean ± sd over the replicates, and on how many
                                               replicates it met both the floor and the ceiling of that replicate.

Two ranking lines compare the two best series under the FA floor (HS) and under the HS ceiling (FA) on the same
test prompts: the difference with a paired bootstrap 95% interval, so "wins by" carries its uncertainty.
"""
from __future__ import annotations

from nlsr_core.eval.formatting import ci_text, mean_sd, pct
from nlsr_core.study.comparison import FA_SLACK, HS_FACTOR, best_per_method, method_of, rate_difference, reference


def meets_goal(row: dict, finetuned: dict) -> bool:
    """The study's goal for a repair: HS ≤ 0.5·HS(fine-tuned) and FA ≥ FA(fine-tuned) − 2 points (the frontier's ✓
    and the leaderboard's bounds)."""
    hs, fa, hs_ft, fa_ft = pct(row, "hs"), pct(row, "fa"), pct(finetuned, "hs"), pct(finetuned, "fa")
    if None in (hs, fa, hs_ft, fa_ft):
        return False
    return hs <= HS_FACTOR * hs_ft and fa >= fa_ft - FA_SLACK


def floor_and_ceiling(doc: dict) -> tuple[float, float] | None:
    """(FA floor, HS ceiling) of one scored document from its fine-tuned row, or None without one."""
    ft = reference(doc, "finetuned")
    if ft is None or None in (pct(ft, "fa"), pct(ft, "hs")):
        return None
    return pct(ft, "fa") - FA_SLACK, HS_FACTOR * pct(ft, "hs")


def replicate_summary(replicated: dict | None) -> dict[str, dict]:
    """method -> {"label", "hs": [...], "fa": [...], "met": k, "n": replicates} over a finetune-seeds document's
    replicates (each method at its params setting); "met" counts replicates where it met that replicate's floor
    and ceiling."""
    out: dict[str, dict] = {}
    for rep in (replicated or {}).get("replicates", []):
        ft = reference({"points": rep["rows"]}, "finetuned")
        for row in rep["rows"]:
            method = method_of(row)
            if method is None or None in (pct(row, "hs"), pct(row, "fa")):
                continue
            entry = out.setdefault(method, {"label": row["label"], "hs": [], "fa": [], "met": 0, "n": 0})
            entry["hs"].append(pct(row, "hs"))
            entry["fa"].append(pct(row, "fa"))
            entry["n"] += 1
            entry["met"] += bool(ft and meets_goal(row, ft))
    return out


def ranking_line(best: dict[str, dict | None], metric: str, bound: str) -> str:
    """Which series is best under a bound (metric "hs": the lowest HS under the FA floor; "fa": the highest FA
    under the HS ceiling), and by how much over the next one: the difference in points with a paired bootstrap 95%
    interval over the same prompts (nlsr_core.study.comparison.rate_difference)."""
    other = "fa" if metric == "hs" else "hs"
    sign = 1 if metric == "hs" else -1          # lower HS is better, higher FA is better
    ranked = sorted(((name, row) for name, row in best.items() if row),
                    key=lambda nr: (sign * pct(nr[1], metric), -sign * pct(nr[1], other)))
    what = "Lowest HS" if metric == "hs" else "Highest FA"
    if not ranked:
        return f"{what} at {bound}: no method has a grid point there."
    (first, a), rest = ranked[0], ranked[1:]
    text = (f"{what} at {bound}: **{cell(first)}** ({a['label']}, HS {pct(a, 'hs'):.1f}, FA {pct(a, 'fa'):.1f})")
    if not rest:
        return text + "; no other method has a grid point there."
    second, b = rest[0]
    if not all((r.get("flags") or {}).get(metric) for r in (a, b)):
        return text + f"; next {cell(second)} at {metric.upper()} {pct(b, metric):.1f} (no per-prompt flags)."
    d = rate_difference(a, b, metric)
    return (text + f"; next **{cell(second)}** ({b['label']}, {metric.upper()} {pct(b, metric):.1f}): "
            f"{metric.upper()} difference {d['diff']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}] points (paired bootstrap "
            "over the same prompts; an interval that holds 0 is no clear winner).")


def cell(text: str) -> str:
    """A markdown table cell: a series name such as antidote-|W| keeps its bars as text."""
    return text.replace("|", "\\|")


def leaderboard_lines(doc: dict, replicated: dict | None) -> list[str]:
    """The '### Leaderboard' section of one cell: one row per series, frontier picks and replicate statistics."""
    bounds = floor_and_ceiling(doc)
    if bounds is None:
        return []
    floor, ceiling = bounds
    low_hs = best_per_method(doc, lambda r: (pct(r, "hs"), -pct(r, "fa")), lambda r: pct(r, "fa") >= floor)
    high_fa = best_per_method(doc, lambda r: (-pct(r, "fa"), pct(r, "hs")), lambda r: pct(r, "hs") <= ceiling)
    seeds = replicate_summary(replicated)
    n_reps = max((s["n"] for s in seeds.values()), default=0)
    lines = ["### Leaderboard", "",
             f"Frontier columns: the best grid point of each method on the pipeline's fine-tune, picked on the test "
             f"split that reports it (an upper bound per method). Seed columns: the method at its params setting "
             f"on {n_reps} fine-tuning replicates (reports/finetune-seeds.md), mean ± sd, and the replicates where "
             f"it met FA ≥ FA(fine-tuned) − {FA_SLACK:g} and HS ≤ {HS_FACTOR:g} × HS(fine-tuned) of that "
             "replicate.", "",
             ranking_line(low_hs, "hs", f"FA ≥ {floor:.1f}"), "",
             ranking_line(high_fa, "fa", f"HS ≤ {ceiling:.1f}"), "",
             f"| Method | HS at FA ≥ {floor:.1f}: setting | HS % [95% CI] (k/n) | FA % | FA at HS ≤ {ceiling:.1f}: "
             "setting | FA % [95% CI] (k/n) | HS % | Seeds: setting | HS mean ± sd | FA mean ± sd | met |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in low_hs:
        a, b, s = low_hs[name], high_fa.get(name), seeds.get(name)
        left = f"{a['label']} | {ci_text(a.get('hs'))} | {pct(a, 'fa'):.1f}" if a else "none | – | –"
        mid = f"{b['label']} | {ci_text(b.get('fa'))} | {pct(b, 'hs'):.1f}" if b else "none | – | –"
        right = (f"{s['label']} | {mean_sd(s['hs'])} | {mean_sd(s['fa'])} | {s['met']}/{s['n']}" if s
                 else "not replicated | – | – | –")
        lines.append(f"| {cell(name)} | {left} | {mid} | {right} |")
    return lines + [""]

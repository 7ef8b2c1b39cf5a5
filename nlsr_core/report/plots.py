"""PNG plots for people (the CSVs beside them are for `dvc plots`). matplotlib with the Agg backend only."""
from __future__ import annotations

from pathlib import Path

_STYLE = {"base": ("tab:gray", "s"), "nonaligned": ("tab:purple", "P"), "aligned": ("tab:blue", "o"), "finetuned": ("tab:red", "v"),
          "safelora": ("tab:orange", "D"), "realigned": ("tab:green", "^")}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    # No Software/date metadata: the same data gives the same bytes.
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})


def plot_hs_fa(rows: list[dict], variants: list[str], path: Path) -> None:
    """HS and FA against p, one line per variant; one row of two panels per (task, method)."""
    plt = _pyplot()
    groups = sorted({(r["task"], r["method"]) for r in rows})
    fig, axes = plt.subplots(len(groups), 2, figsize=(9, 3.2 * len(groups)), squeeze=False,
                             layout="constrained")
    for (task, method), row_axes in zip(groups, axes):
        sel = sorted((r for r in rows if (r["task"], r["method"]) == (task, method)), key=lambda r: r["p"])
        for ax, metric, title in zip(row_axes, ("hs", "fa"), ("HS (%) ↓", "FA (%) ↑")):
            for v in variants:
                pts = [(r["p"], r[f"{v}_{metric}"]) for r in sel if r.get(f"{v}_{metric}") is not None]
                if pts:
                    color, marker = _STYLE.get(v, (None, "x"))
                    ax.plot(*zip(*pts), marker=marker, color=color, label=v)
            ax.set_title(f"{task} · {method}: {title}")
            ax.set_xlabel("poison ratio p")
            ax.set_ylim(-2, 102)
            ax.grid(alpha=0.3)
        row_axes[0].legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)


def plot_similarity(rows: list[dict], path: Path) -> None:
    """Per-module safety-region similarity (eq. 8) in model order, patched modules marked (paper Fig. 3)."""
    plt = _pyplot()
    cells = sorted({r["cell"] for r in rows})
    fig, axes = plt.subplots(max(1, len(cells)), 1, figsize=(10, 2.8 * max(1, len(cells))),
                             squeeze=False, layout="constrained")
    if not cells:
        axes[0][0].text(0.5, 0.5, "no realigned adapter with per-module similarity", ha="center", va="center")
        axes[0][0].set_axis_off()
    for cell, (ax,) in zip(cells, axes):
        sel = [r for r in rows if r["cell"] == cell and r["similarity"] is not None]
        kept = [(r["index"], r["similarity"]) for r in sel if not r["patched"]]
        patched = [(r["index"], r["similarity"]) for r in sel if r["patched"]]
        if kept:
            ax.scatter(*zip(*kept), s=10, color="tab:blue", label=f"kept ({len(kept)})")
        if patched:
            ax.scatter(*zip(*patched), s=22, color="tab:red", marker="x", label=f"patched ({len(patched)})")
        ax.set_title(f"{cell}: similarity of safety regions, reference vs fine-tuned")
        ax.set_xlabel("LoRA module (model order)")
        ax.set_ylabel("cosine similarity")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)
    plt.close(fig)


# Frontier series: colour, marker, legend name. Every series is one curve, its points joined in order of FA.
_FRONTIER_STYLE = {
    "nlsr": ("tab:green", "^", "NLSR (P_SR, P_L)"), "random-masks": ("tab:gray", "x", "random masks (P_SR)"),
    "interpolate": ("tab:purple", "s", "interpolate toward We λ"),
    "interpolate→Wa": ("tab:pink", "s", "interpolate toward Wa λ"),
    "safety-vector": ("tab:brown", "P", "safety-vector γ"), "safelora": ("tab:orange", "D", "SafeLoRA τ"),
    "safemerge": ("tab:olive", "h", "SafeMERGE τ"), "antidote": ("tab:cyan", "*", "Antidote ρ (Wanda)"),
    "antidote-|W|": ("darkcyan", "1", "Antidote ρ (data-free |W|)"),
    "dg-hard": ("black", "d", "DG-Hard c"),
    "aligned": ("tab:blue", "o", "aligned Wa"), "finetuned": ("tab:red", "v", "fine-tuned Wt")}
_LABELLED = ("nlsr", "safelora")    # series whose points carry their setting as text (in the zoomed panel)


def spread_labels(points: list[tuple[float, float]], gap: float, width: float) -> list[float]:
    """y positions for text labels at `points` [(x, y)] so that no two labels closer than `width` in x sit closer
    than `gap` in y: the highest point keeps its y, each next one (by y, descending) moves down until it is clear."""
    order = sorted(range(len(points)), key=lambda i: -points[i][1])
    placed: list[tuple[float, float]] = []
    out = [0.0] * len(points)
    for i in order:
        x, y = points[i]
        while any(abs(x - px) < width and abs(y - py) < gap for px, py in placed):
            y -= gap / 4
        placed.append((x, y))
        out[i] = y
    return out


def _frontier_panel(ax, sel: list[dict], xlim: tuple[float, float], labelled: bool) -> None:
    for kind, (color, marker, name) in _FRONTIER_STYLE.items():
        pts = sorted((r for r in sel if r["kind"] == kind), key=lambda r: r["fa"])
        if not pts:
            continue
        xerr = [[r["fa"] - r["fa_lo"] for r in pts], [r["fa_hi"] - r["fa"] for r in pts]]
        yerr = [[r["hs"] - r["hs_lo"] for r in pts], [r["hs_hi"] - r["hs"] for r in pts]]
        ax.errorbar([r["fa"] for r in pts], [r["hs"] for r in pts], xerr=xerr, yerr=yerr, fmt=marker, color=color,
                    ecolor=color, alpha=0.8, elinewidth=0.6, capsize=2, label=name)
        if len(pts) > 1:
            ax.plot([r["fa"] for r in pts], [r["hs"] for r in pts], "-", color=color, alpha=0.5, lw=0.8)
    if labelled:
        texts = [r for r in sel if r["kind"] in _LABELLED and xlim[0] <= r["fa"] <= xlim[1]]
        ys = spread_labels([(r["fa"], r["hs"]) for r in texts], gap=3.0, width=0.35 * (xlim[1] - xlim[0]))
        for r, y in zip(texts, ys):
            ax.annotate(r["label"].split(" ", 1)[-1], (r["fa"], r["hs"]), xytext=(xlim[0] + 0.02 * (xlim[1] - xlim[0])
                        if r["fa"] > (xlim[0] + xlim[1]) / 2 else r["fa"] + 1, y), fontsize=6,
                        color=_FRONTIER_STYLE[r["kind"]][0], va="center",
                        arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.6"})
    ax.set_xlim(*xlim)
    ax.set_ylim(-3, 103)
    ax.set_xlabel("FA (%) ↑")
    ax.set_ylabel("HS (%) ↓")
    ax.grid(alpha=0.3)


def plot_frontier(rows: list[dict], path: Path) -> None:
    """HS against FA for every scored setting (95% Wilson intervals as error bars), one row of two panels per cell:
    the whole square, and the high-FA corner (FA ≥ FA(fine-tuned) − 15) where most settings sit, with the NLSR and
    SafeLoRA settings written beside their points. One curve per repair series (nlsr_core.study.comparison
    .series_of), the aligned and fine-tuned references, the matched-FA floor and HS ceiling of the leaderboard
    (nlsr_core.report.leaderboard) dashed, the calibrated choice starred; one legend below."""
    from nlsr_core.study.comparison import FA_SLACK, HS_FACTOR

    plt = _pyplot()
    cells = sorted({r["cell"] for r in rows})
    fig, axes = plt.subplots(max(1, len(cells)), 2, figsize=(13, 5.5 * max(1, len(cells))), squeeze=False,
                             layout="constrained")
    if not cells:
        axes[0][0].text(0.5, 0.5, "no frontier points", ha="center", va="center")
        for ax in axes[0]:
            ax.set_axis_off()
    for cell, (whole, corner) in zip(cells, axes):
        sel = [r for r in rows if r["cell"] == cell and r["hs"] is not None and r["fa"] is not None]
        ft = next((r for r in sel if r["kind"] == "finetuned"), None)
        lo = max(0.0, (ft["fa"] if ft else 100.0) - 15.0)
        for ax, xlim, labelled in ((whole, (-3, 103), False), (corner, (lo, 101), True)):
            _frontier_panel(ax, sel, xlim, labelled)
            if ft:
                ax.axvline(ft["fa"] - FA_SLACK, ls="--", lw=0.7, color="0.4")
                ax.axhline(HS_FACTOR * ft["hs"], ls="--", lw=0.7, color="0.4")
            chosen = [r for r in sel if r["chosen"]]
            if chosen:
                ax.scatter([r["fa"] for r in chosen], [r["hs"] for r in chosen], s=260, marker="*",
                           facecolors="none", edgecolors="black", linewidths=1.2, label="calibrated choice", zorder=5)
        whole.set_title(f"{cell}: HS against FA (test split)")
        corner.set_title(f"{cell}: FA ≥ {lo:.0f} (dashed: FA floor, HS ceiling)")
    handles, names = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="outside lower center", ncol=4, fontsize=8)
    _save(fig, path)
    plt.close(fig)


def plot_scaling(rows: list[dict], rates: tuple, path: Path, target: float = 20) -> None:
    """Each rate of M' + Wa (with its 95% interval) against Wa's safety pairs: the data-scaling curve
    (reports/<profile>/alignment.md; rows = nlsr_core.report.alignment_report.scaling_rows, rates = its
    CURVE_RATES: (key, column, label)); `target` dashed (issue 29's bound on HS and on each over-refusal)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    x = [r["pairs_safety"] for r in rows]
    for _, col, label in rates:
        pts = [(xi, r[col], r[f"{col}_lo"], r[f"{col}_hi"]) for xi, r in zip(x, rows) if r[col] is not None]
        if pts:
            xs, ys, lo, hi = zip(*pts)
            ax.errorbar(xs, ys, yerr=[[y - l for y, l in zip(ys, lo)], [h - y for y, h in zip(ys, hi)]],
                        marker="o", capsize=3, label=label)
    ax.axhline(target, color="gray", linestyle="--", linewidth=1, label=f"target: HS, over-refusal ≤ {target:g}")
    for r in rows:
        ax.annotate(r["recipe"], (r["pairs_safety"], 101), ha="center", va="bottom", fontsize=7)
    ax.set_xlabel("Wa's safety pairs (contrast pairs as the recipe says)")
    ax.set_ylabel("% of prompts")
    ax.set_ylim(-2, 108)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
    _save(fig, path)
    plt.close(fig)


def _axis(ax, title: str, xlabel: str, ylim: tuple | None = None, legend_size: int = 8) -> None:
    """The analyses' panels: title, x label, optional y range, grid, legend."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    if ylim:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)


def _close(plt, fig, path: Path) -> None:
    _save(fig, path)
    plt.close(fig)


def _panels(cells: list[str], width: float = 5.5, height: float = 3.6):
    plt = _pyplot()
    fig, axes = plt.subplots(1, max(1, len(cells)), figsize=(width * max(1, len(cells)), height), squeeze=False,
                             layout="constrained")
    if not cells:
        axes[0][0].text(0.5, 0.5, "no analysed cell", ha="center", va="center")
        axes[0][0].set_axis_off()
    return plt, fig, axes[0]


def plot_broken_layers(rows: list[dict], path: Path) -> None:
    """Fig. 3: broken modules (S_j < τ) against τ, one line per P_SR, one panel per cell
    (rows = nlsr_core.report.analyses_report.broken_rows)."""
    cells = sorted({r["cell"] for r in rows})
    plt, fig, axes = _panels(cells)
    for cell, ax in zip(cells, axes):
        sel = [r for r in rows if r["cell"] == cell]
        for sparsity in sorted({r["sparsity"] for r in sel}):
            pts = sorted((r["tau"], r["broken"]) for r in sel if r["sparsity"] == sparsity)
            ax.plot(*zip(*pts), marker="o", label=f"P_SR {sparsity:g}")
        _axis(ax, f"{cell}: modules with S_j < τ (of {sel[0]['modules']})", "τ")
    _close(plt, fig, path)


def plot_set_similarity(rows: list[dict], path: Path) -> None:
    """Fig. 4(a): Jaccard similarity of two identification methods' patched-module sets against P_L, one line per
    pair (rows = analyses_report.similarity_rows)."""
    cells = sorted({r["cell"] for r in rows})
    plt, fig, axes = _panels(cells)
    for cell, ax in zip(cells, axes):
        sel = [r for r in rows if r["cell"] == cell]
        for pair in dict.fromkeys(r["pair"] for r in sel):
            pts = sorted((r["layer_prune"], r["jaccard"]) for r in sel if r["pair"] == pair)
            ax.plot(*zip(*pts), marker="o", label=pair)
        _axis(ax, f"{cell}: patched-module sets, Jaccard", "P_L", (-0.02, 1.02), 7)
    _close(plt, fig, path)


def plot_neuron_overlap(rows: list[dict], path: Path) -> None:
    """Fig. 4(b): per patched module (model order), the overlap coefficient of each pair of methods' masks, with
    the pair's chance level dashed (rows = analyses_report.overlap_rows)."""
    cells = sorted({r["cell"] for r in rows})
    plt, fig, axes = _panels(cells, width=8)
    for cell, ax in zip(cells, axes):
        sel = [r for r in rows if r["cell"] == cell]
        modules = list(dict.fromkeys(r["module"] for r in sel))
        for pair in dict.fromkeys(r["pair"] for r in sel):
            pts = [(modules.index(r["module"]), r["overlap"], r["chance"]) for r in sel if r["pair"] == pair]
            xs, ys, chance = zip(*pts)
            line, = ax.plot(xs, ys, marker=".", linewidth=0.8, label=pair)
            ax.plot(xs, chance, linestyle="--", linewidth=0.8, color=line.get_color())
        ax.axhline(0.6, color="gray", linestyle=":", linewidth=1, label="paper's 0.6")
        _axis(ax, f"{cell}: neuron overlap per patched module (dashed: chance)", "patched module (model order)",
              (-0.02, 1.02), 7)
    _close(plt, fig, path)


def _rate_lines(ax, rows: list[dict], x: str, metrics: tuple) -> None:
    for metric, label, fmt in metrics:
        pts = [(r[x], r[metric], r[f"{metric}_lo"], r[f"{metric}_hi"]) for r in rows if r.get(metric) is not None]
        if pts:
            xs, ys, lo, hi = zip(*sorted(pts))
            ax.errorbar(xs, ys, yerr=[[y - l for y, l in zip(ys, lo)], [h - y for y, h in zip(ys, hi)]],
                        fmt=fmt, capsize=3, label=label)


def plot_amplification(rows: list[dict], path: Path) -> None:
    """Fig. 5: HS, FA and over-refusal of M' + We(β) against β, 95% intervals (rows =
    analyses_report.amplification_rows)."""
    cells = sorted({r["cell"] for r in rows})
    plt, fig, axes = _panels(cells)
    for cell, ax in zip(cells, axes):
        _rate_lines(ax, [r for r in rows if r["cell"] == cell], "beta",
                    (("hs", "HS", "o-"), ("fa", "FA", "s-"), ("over_refusal", "over-refusal", "^-")))
        _axis(ax, f"{cell}: amplified reference M' + We(β)", "β", (-2, 102))
    _close(plt, fig, path)


def plot_preamplification(rows: list[dict], path: Path) -> None:
    """Fig. 6: NLSR's HS against P_SR with and without pre-amplification, one panel per cell and P_L
    (rows = analyses_report.preamplification_rows)."""
    panels = sorted({(r["cell"], r["layer_prune"]) for r in rows})
    plt, fig, axes = _panels([f"{c} P_L {p:g}" for c, p in panels])
    for (cell, layer_prune), ax in zip(panels, axes):
        sel = [r for r in rows if (r["cell"], r["layer_prune"]) == (cell, layer_prune)]
        for beta in sorted({r["beta"] for r in sel}, reverse=True):
            label = "without pre-amplification (β 0)" if beta == 0 else f"with pre-amplification (β {beta:g})"
            _rate_lines(ax, [r for r in sel if r["beta"] == beta], "sparsity", (("hs", label, "o-"),))
        _axis(ax, f"{cell} · P_L {layer_prune:g}: NLSR HS", "P_SR", (-2, 102))
    _close(plt, fig, path)


def plot_broken_layers_by_method(rows: list[dict], path: Path) -> None:
    """Fig. 3 (right): modules with S_j < τ against τ at the pipeline's P_SR, one line per alignment method, one
    panel per task and ratio (rows = analyses_report.method_broken_rows)."""
    stems = sorted({r["cell"].rsplit("-", 1)[0] for r in rows})
    plt, fig, axes = _panels(stems)
    for stem, ax in zip(stems, axes):
        sel = [r for r in rows if r["cell"].rsplit("-", 1)[0] == stem]
        for method in sorted({r["method"] for r in sel}):
            pts = sorted((r["tau"], r["broken"]) for r in sel if r["method"] == method)
            ax.plot(*zip(*pts), marker="o", label=method)
        _axis(ax, f"{stem}: modules with S_j < τ, per alignment method", "τ")
    _close(plt, fig, path)

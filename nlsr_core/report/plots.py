"""PNG plots for people (the CSVs beside them are for `dvc plots`). matplotlib with the Agg backend only."""
from __future__ import annotations

from pathlib import Path

_STYLE = {"base": ("tab:gray", "s"), "aligned": ("tab:blue", "o"), "finetuned": ("tab:red", "v"),
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


def plot_frontier(rows: list[dict], path: Path) -> None:
    """HS against FA for every scored setting (95% Wilson intervals as error bars), one panel per cell: one
    series per method (NLSR grid points, SafeLoRA thresholds, random masks, interpolation toward We and toward Wa,
    safety-vector addition, SafeMERGE, Antidote, DG-Hard; the controls joined in order of FA), the aligned and fine-tuned references, the calibrated
    choice starred."""
    plt = _pyplot()
    cells = sorted({r["cell"] for r in rows})
    fig, axes = plt.subplots(1, max(1, len(cells)), figsize=(6.5 * max(1, len(cells)), 5), squeeze=False,
                             layout="constrained")
    if not cells:
        axes[0][0].text(0.5, 0.5, "no frontier points", ha="center", va="center")
        axes[0][0].set_axis_off()
    style = {"nlsr": ("tab:green", "^", "NLSR settings"), "safelora": ("tab:orange", "D", "SafeLoRA τ"),
             "random-masks": ("tab:gray", "x", "random masks (P_SR)"),
             "interpolate": ("tab:purple", "s", "interpolate λ"),
             "safety-vector": ("tab:brown", "P", "safety-vector γ"),
             "interpolate→Wa": ("tab:pink", "s", "interpolate toward Wa λ"),
             "safemerge": ("tab:olive", "h", "SafeMERGE τ"), "antidote": ("tab:cyan", "*", "Antidote ρ (data-free)"),
             "dg-hard": ("black", "d", "DG-Hard c"),
             "aligned": ("tab:blue", "o", "aligned"), "finetuned": ("tab:red", "v", "fine-tuned")}
    joined = ("random-masks", "interpolate", "safety-vector", "interpolate→Wa", "safemerge", "antidote", "dg-hard")
    for cell, ax in zip(cells, axes[0]):
        sel = [r for r in rows if r["cell"] == cell and r["hs"] is not None and r["fa"] is not None]
        for kind, (color, marker, name) in style.items():
            pts = [r for r in sel if r["kind"] == kind]
            if not pts:
                continue
            xerr = [[r["fa"] - r["fa_lo"] for r in pts], [r["fa_hi"] - r["fa"] for r in pts]]
            yerr = [[r["hs"] - r["hs_lo"] for r in pts], [r["hs_hi"] - r["hs"] for r in pts]]
            ax.errorbar([r["fa"] for r in pts], [r["hs"] for r in pts], xerr=xerr, yerr=yerr, fmt=marker,
                        color=color, ecolor=color, alpha=0.8, elinewidth=0.7, capsize=2, label=name)
            if kind in joined and len(pts) > 1:
                line = sorted(pts, key=lambda r: r["fa"])
                ax.plot([r["fa"] for r in line], [r["hs"] for r in line], "-", color=color, alpha=0.5, lw=0.8)
            if kind in ("nlsr", "safelora"):
                for r in pts:
                    ax.annotate(r["label"].split(" ", 1)[1], (r["fa"], r["hs"]), fontsize=6,
                                xytext=(3, 3), textcoords="offset points")
        chosen = [r for r in sel if r["chosen"]]
        if chosen:
            ax.scatter([r["fa"] for r in chosen], [r["hs"] for r in chosen], s=260, marker="*", facecolors="none",
                       edgecolors="black", linewidths=1.2, label="calibrated choice", zorder=5)
        ax.set_title(f"{cell}: HS against FA (test split)")
        ax.set_xlabel("FA (%) ↑")
        ax.set_ylabel("HS (%) ↓")
        ax.set_xlim(-3, 103)
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    _save(fig, path)
    plt.close(fig)

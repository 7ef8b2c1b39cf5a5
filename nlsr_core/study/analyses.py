"""The paper's layer and neuron analyses (Figs. 3-4) and its two amplification studies (Fig. 5, Table 4 / Fig. 6)
for one cell, from the cell's adapters and identification statistics.

Data-free (adapters and masks only, eq. 8 on every module j of Wt against We):
    broken_layer_counts     Fig. 3: how many modules the threshold rule calls broken (S_j < τ) for each P_SR and τ.
    broken_set_similarity   Fig. 4(a): Jaccard similarity |B₁ ∩ B₂| / |B₁ ∪ B₂| of the modules the adaptive rule
                            (eqs. 9-10, the same Bernoulli draws for both) patches when the masks come from two
                            identification methods, per P_L.
    neuron_overlap          Fig. 4(b): per patched module, the overlap coefficient |M₁ ∩ M₂| / min(|M₁|, |M₂|) of
                            two methods' masks (A and B factors together), beside the value two independent random
                            masks of the same sizes give in expectation, max(|M₁|, |M₂|) / n: at a kept fraction
                            of 0.6 an overlap of 0.6 is chance, not agreement.
Scored (answered and judged like `nlsr judge`, through nlsr_core.study.scoring):
    amplification_points    Fig. 5: M' + We(β) itself for each β (eq. 2; β = 0 is Wa), HS, FA and over-refusal.
    preamplification_points Table 4 / Fig. 6: NLSR with the pipeline's β and with β = 0 (no pre-amplification), for
                            each P_SR at each P_L.
"""
from __future__ import annotations

import itertools
from typing import Iterable

import torch

from nlsr_core.errors import NlsrError
from nlsr_core.lora.adapters import Adapter
from nlsr_core.method.neurons import masks_and_summary
from nlsr_core.method.realign import RealignParams, select_modules, similarities
from nlsr_core.study.points import Point, PointBuilder


def region(build: PointBuilder, identifier: str, sparsity: float) -> tuple[dict[str, torch.Tensor], list[float]]:
    """(masks, S_j per module in model order) of the pipeline's reference We with `identifier`'s masks at P_SR
    `sparsity`. The statistics come from build.stats: a method other than the pipeline's needs a model pass."""
    ident = build.pipeline.replace(identifier=identifier, sparsity=sparsity).identification
    reference = build.reference(ident)
    masks, _ = masks_and_summary(reference, build.stats(ident), sparsity, ident.preset, identifier)
    return masks, similarities(build.finetuned, reference, masks)


def broken_layer_counts(build: PointBuilder, sparsities: Iterable[float], taus: Iterable[float]) -> list[dict]:
    """Fig. 3: {sparsity, tau, broken, modules} for every P_SR × τ, with the pipeline's identification method:
    `broken` = modules whose region similarity S_j (eq. 8) is below τ (the threshold rule)."""
    identifier = build.pipeline.identification.identifier
    rows = []
    for sparsity in sparsities:
        _, sims = region(build, identifier, float(sparsity))
        rows += [{"sparsity": float(sparsity), "tau": float(tau), "broken": sum(s < tau for s in sims),
                  "modules": len(sims)} for tau in taus]
    return rows


def _patched(build: PointBuilder, sims: list[float], layer_prune: float) -> set[str]:
    """The modules the pipeline's adaptive selection (eqs. 9-10, its δ, seed and preset) patches at P_L."""
    settings = build.pipeline.settings
    params = RealignParams(layer_prune=float(layer_prune), delta=settings.delta, selection="adaptive",
                           tau=settings.tau, seed=settings.seed, preset=settings.preset)
    return {r.module for r in select_modules(build.finetuned.modules, sims, params) if r.patched}


def jaccard(first: set, second: set) -> float:
    """|A ∩ B| / |A ∪ B|; two empty sets are the same set (1.0)."""
    union = first | second
    return len(first & second) / len(union) if union else 1.0


def broken_set_similarity(build: PointBuilder, identifiers: list[str], sparsity: float,
                          layer_prunes: Iterable[float]) -> list[dict]:
    """Fig. 4(a): {layer_prune, first, second, jaccard, broken_first, broken_second} for every pair of
    `identifiers` at P_SR `sparsity`, per P_L. Both sets come from the same draws, so they differ only through
    the methods' masks (the ranks of S_j)."""
    sims = {m: region(build, m, sparsity)[1] for m in identifiers}
    rows = []
    for layer_prune in layer_prunes:
        broken = {m: _patched(build, sims[m], layer_prune) for m in identifiers}
        rows += [{"layer_prune": float(layer_prune), "first": a, "second": b,
                  "jaccard": round(jaccard(broken[a], broken[b]), 6),
                  "broken_first": len(broken[a]), "broken_second": len(broken[b])}
                 for a, b in itertools.combinations(identifiers, 2)]
    return rows


def overlap_coefficient(first: torch.Tensor, second: torch.Tensor) -> tuple[float, float]:
    """(|M₁ ∩ M₂| / min(|M₁|, |M₂|), its expectation for independent random masks of the same sizes:
    max(|M₁|, |M₂|) / n) for two bool masks of one shape; an empty mask gives (1.0, 1.0) when both are empty,
    else (0.0, 0.0)."""
    k1, k2, n = int(first.sum()), int(second.sum()), first.numel()
    if min(k1, k2) == 0:
        return (1.0, 1.0) if k1 == k2 else (0.0, 0.0)
    return int((first & second).sum()) / min(k1, k2), max(k1, k2) / n


def neuron_overlap(build: PointBuilder, identifiers: list[str], sparsity: float, layer_prune: float) -> list[dict]:
    """Fig. 4(b): {module, first, second, overlap, chance} for every module the pipeline's identification method
    patches at (P_SR, P_L) and every pair of `identifiers`; A and B masks of a module count as one set."""
    regions = {m: region(build, m, sparsity) for m in identifiers}
    own = build.pipeline.identification.identifier
    sims = regions[own][1] if own in regions else region(build, own, sparsity)[1]
    patched = _patched(build, sims, layer_prune)

    def flat(masks, module):
        return torch.cat([masks[f"{module}.lora_A.weight"].flatten(), masks[f"{module}.lora_B.weight"].flatten()])

    rows = []
    for module in (m for m in build.finetuned.modules if m in patched):
        for a, b in itertools.combinations(identifiers, 2):
            overlap, chance = overlap_coefficient(flat(regions[a][0], module), flat(regions[b][0], module))
            rows.append({"module": module, "first": a, "second": b, "overlap": round(overlap, 6),
                         "chance": round(chance, 6)})
    return rows


def amplified_references(build: PointBuilder, betas: Iterable[float]) -> list[tuple[float, Adapter]]:
    """Fig. 5: (β, We(β)) for each β: the aligned adapter extrapolated by eq. 2 with the pipeline's preset."""
    return [(float(b), build.reference(build.pipeline.replace(beta=float(b)).identification)) for b in betas]


def preamplification_points(base: Point, sparsities: Iterable[float], layer_prunes: Iterable[float]
                            ) -> list[tuple[str, Point]]:
    """Table 4 / Fig. 6: (name, point) of NLSR at every P_SR × P_L with the pipeline's β and with β = 0 (the
    aligned adapter itself as the reference). Refuses a pipeline without pre-amplification (nothing to compare)."""
    beta = base.identification.beta
    if beta == 0.0:
        raise NlsrError("analyze: amplify.beta is 0, so there is no pre-amplification to compare with none; "
                        "expected a pipeline beta > 0")
    points = [base.replace(sparsity=float(sparsity), layer_prune=float(layer_prune), beta=b)
              for layer_prune, sparsity, b in itertools.product(layer_prunes, sparsities, (beta, 0.0))]
    # the label names β wherever it differs from amplify.beta's default, so the two arms never share a name
    return list({p.label: p for p in points}.items())


def analyze_cell(inputs, grids, collect, splits, echo=print) -> dict:
    """analyze.json's document for one cell (`inputs`: nlsr_core.study.cell.CellInputs; `grids`:
    nlsr_core.config.AnalyzeConfig; `collect(reference, method) -> stats`: a statistics pass; `splits`: the test
    split's harmful, task and benign files): the pipeline's setting, the four analyses' rows, and how the scored
    rows were answered. Table 4 / Fig. 6 runs at the pipeline's P_SR and each of `sparsities`, at the pipeline's P_L
    and each of `preamplification_layer_prunes`."""
    from nlsr_core.method.amplify import product_factor
    from nlsr_core.study.scoring import builder, describe, score_adapters, score_points, settings_record, write_stack

    build = builder(inputs, collect=collect)
    identifiers = list(dict.fromkeys(grids.identifiers))
    broken = broken_layer_counts(build, grids.sparsities, grids.taus)
    agreement = broken_set_similarity(build, identifiers, grids.overlap_sparsity, grids.layer_prunes)
    overlap = neuron_overlap(build, identifiers, grids.overlap_sparsity, grids.overlap_layer_prune)
    echo(f"analyze {inputs.cell}: {len(broken)} broken-layer counts, {len(agreement)} set similarities, "
         f"{len(overlap)} module overlaps")
    preset = build.pipeline.settings.preset

    def writer(beta: float, adapter: Adapter):
        def write(out) -> dict:
            write_stack(adapter, out, {"method": "amplify", "beta": beta, "preset": preset}, inputs.aligned)
            return {"label": f"We beta={beta:g}", "beta": beta, "product_factor": product_factor(beta, preset)}
        return write

    amplification = score_adapters(inputs, [(f"beta {b:g}", writer(b, a))
                                            for b, a in amplified_references(build, grids.betas)],
                                   splits, echo=echo, what="amplified references written")
    # the pipeline's own P_SR and P_L always, so Table 4 has the pipeline's setting beside the paper's
    sparsities = sorted({build.pipeline.identification.sparsity, *grids.sparsities})
    prunes = list(dict.fromkeys([build.pipeline.settings.layer_prune, *grids.preamplification_layer_prunes]))
    named = preamplification_points(build.pipeline, sparsities, prunes)
    task_splits = [s for s in splits if s.name in ("harmful", "task")]
    preamplification = score_points(inputs, named, build, task_splits, references=("aligned", "finetuned"),
                                    echo=echo)
    for row in [*amplification, *preamplification]:
        echo(f"analyze {inputs.cell} {row['name']:>36} | {describe(row)}")
    return {"cell": inputs.cell, "split": "test", "pipeline": build.pipeline.record(),
            "judge": {"name": inputs.judge_name, "model": inputs.judge_model},
            "generation": {"amplification": settings_record(inputs, tuple(s.name for s in splits)),
                           "preamplification": settings_record(inputs)},
            "broken_layers": broken, "broken_set_similarity": agreement, "neuron_overlap": overlap,
            "amplification": amplification, "preamplification": preamplification}

"""Safety-critical neuron identification (paper eqs. 3-6, Table 5 variants): scores -> top-k masks.

Identification is split in two so several sparsities come from one pass over the data:

    collect  (nlsr_core.method.neurons_stats, needs M' + We and X̂)  ->  stats: dict[str, Tensor] (fp32)
    score    (here, adapter tensors + stats only)            ->  |Â|, |B̂| or another score per LoRA tensor
    top-k    (here)                                          ->  bool masks keyed by adapter tensor name

`masks_from_stats(reference, stats, sparsity, preset)` is the second half; `IDENTIFIERS` is the dispatch table
(method -> collector, scorer). A LoRA module has A ∈ R^{r×d_in}, B ∈ R^{d_out×r}; its masks M^A, M^B have the
same shapes.

Lowrank (NLSR, eqs. 3-4), the r×r Gram formulation (docs/DESIGN.md §4.2). With z_t = A x_t over the response tokens t of
X̂ and K = Σ_t z_t z_tᵀ (r×r, accumulated in fp32 by forward hooks):
    Π_A = top-r* eigenvectors of K            (= top-r* left singular vectors of A X̂, since (A X̂)(A X̂)ᵀ = K)
    Π_B = top-r* left singular vectors of B K^{1/2}   (= those of B Ẑ, since (B Ẑ)(B Ẑ)ᵀ = B K Bᵀ)
    Â = Π_A Π_Aᵀ A,  B̂ = Π_B Π_Bᵀ B                    (eq. 4 and the projection below it)
Everything after K is done in fp64 (it is r×r or d_out×r work), so the masks agree with a naive fp64 SVD of
the stacked activations up to the fp32 accumulation of K (tests/oracle_neurons.py checks this).

Top-k (eqs. 5-6). k = round_half_up(N*·(1−P_SR)), kept ≥ 1, where N* is the row length (paper preset: one
top-k per row of |Ŵ|, `argsort(-|Ŵ|)[:, :k]`) or the whole matrix (official-code preset). Ties are broken by a
stable sort on the score, descending: among equal scores the lower (flattened) index is kept first.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch

from nlsr_core.lora.adapters import Adapter
from nlsr_core.method.neuron_keys import IdentifyError, gram_key
from nlsr_core.method.presets import Preset, check_sparsity, get_preset, retained_rank, topk_mask



# --------------------------------------------------------------------------------------------- scorers
@dataclass(frozen=True)
class ModuleScores:
    """Scores for one module: score_a (r×d_in), score_b (d_out×r); energy_* = spectrum energy kept (lowrank)."""

    score_a: torch.Tensor
    score_b: torch.Tensor
    energy_a: float | None = None
    energy_b: float | None = None


def lowrank_projection(a: torch.Tensor, b: torch.Tensor, gram: torch.Tensor, rank: int) -> ModuleScores:
    """Eqs. 3-4 from the Gram: a (r×d_in), b (d_out×r), gram K (r×r) -> |Â|, |B̂| in fp64 (see module doc)."""
    with one_thread():
        return _lowrank_projection(a, b, gram, rank)


@contextlib.contextmanager
def one_thread():
    """These LAPACK calls are small (an r×r eigh, a d_out×r SVD): one thread runs them as fast as two on a quiet
    machine, while two OpenMP threads beside any busy process stall them 10-700x (benchmarks/bench_paper_shapes.py:
    a 128×128 eigh 1.1 ms vs 869 ms, the whole 8B-shaped `realign --stats` 35 s vs 315-366 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _lowrank_projection(a: torch.Tensor, b: torch.Tensor, gram: torch.Tensor, rank: int) -> ModuleScores:
    a64, b64 = a.double(), b.double()
    k = gram.double()
    k = (k + k.T) / 2  # symmetrise fp32 accumulation noise before eigh
    evals, evecs = torch.linalg.eigh(k)  # ascending
    evals = evals.clamp_min(0.0)
    pi_a = evecs[:, -rank:]                                  # r × r*
    a_hat = pi_a @ (pi_a.T @ a64)
    sqrt_k = (evecs * evals.sqrt()) @ evecs.T                # K^{1/2}, r × r
    u, s, _ = torch.linalg.svd(b64 @ sqrt_k, full_matrices=False)   # d_out × r: cheap (r columns)
    pi_b = u[:, :rank]
    b_hat = pi_b @ (pi_b.T @ b64)
    return ModuleScores(a_hat.abs(), b_hat.abs(), _energy(evals.flip(0), rank), _energy(s.square(), rank))


def _energy(spectrum_desc: torch.Tensor, rank: int) -> float | None:
    total = float(spectrum_desc.sum())
    return float(spectrum_desc[:rank].sum()) / total if total > 0 else None


def stat_shapes(method: str, ref: Adapter, module: str) -> dict[str, tuple[int, ...]]:
    """The statistics tensors (key -> shape) `method` needs for one module of the reference adapter."""
    a, b = ref.a(module), ref.b(module)
    r = a.shape[0]
    if method == "lowrank":
        return {gram_key(module): (r, r)}
    if method == "wanda":
        return {f"{module}.lora_A.input_sq": (a.shape[1],), f"{module}.lora_B.input_sq": (b.shape[1],)}
    kind = "uniform" if method == "random" else "grad_abs"
    return {f"{module}.lora_A.{kind}": tuple(a.shape), f"{module}.lora_B.{kind}": tuple(b.shape)}


def _stats_of(stats: dict[str, torch.Tensor], method: str, ref: Adapter, module: str,
              where: str = "stats") -> dict[str, torch.Tensor]:
    """The module's statistics tensors (key -> tensor, in `stat_shapes` order); missing or misshapen ones are
    one-line errors."""
    out = {}
    for key, shape in stat_shapes(method, ref, module).items():
        t = stats.get(key)
        if t is None:
            raise IdentifyError(f"{where}: missing tensor {key} (expected statistics of the same reference adapter)")
        if tuple(t.shape) != tuple(shape):
            raise IdentifyError(f"{where}: tensor {key} has shape {tuple(t.shape)}, expected {tuple(shape)} "
                                "(statistics of the same reference adapter)")
        out[key] = t
    return out


def check_stats(stats: dict[str, torch.Tensor], method: str, ref: Adapter, where: str) -> None:
    """Statistics checked like adapters, before any mask is made: every tensor the method needs is present with
    the reference's shapes, and finite (a NaN Gram would otherwise surface as a LinAlgError traceback)."""
    for module in ref.modules:
        for key, t in _stats_of(stats, method, ref, module, where).items():
            if not torch.isfinite(t).all():
                raise IdentifyError(f"{where}: tensor {key} contains NaN or Inf; expected finite statistics "
                                    "(rerun `nlsr identify`)")


def _score_lowrank(ref: Adapter, stats: dict, module: str, rank: int) -> ModuleScores:
    (gram,) = _stats_of(stats, "lowrank", ref, module).values()
    return lowrank_projection(ref.a(module), ref.b(module), gram, rank)


def _score_wanda(ref: Adapter, stats: dict, module: str, rank: int) -> ModuleScores:
    """Wanda: |W_ij| · ‖x_j‖₂, x = the layer's input over response tokens (x for lora_A, z = A x for lora_B)."""
    a, b = ref.a(module), ref.b(module)
    xa, xb = (t.double().sqrt() for t in _stats_of(stats, "wanda", ref, module).values())
    return ModuleScores(a.double().abs() * xa, b.double().abs() * xb)


def _score_grad(ref: Adapter, stats: dict, module: str, rank: int) -> ModuleScores:
    """SNIP / preference-SNIP: |W ⊙ Σ_i |∇_W L_i|| with the per-sample gradient magnitudes from the stats."""
    a, b = ref.a(module), ref.b(module)
    ga, gb = (t.double() for t in _stats_of(stats, "snip", ref, module).values())
    return ModuleScores((a.double() * ga).abs(), (b.double() * gb).abs())


def _score_random(ref: Adapter, stats: dict, module: str, rank: int) -> ModuleScores:
    return ModuleScores(*_stats_of(stats, "random", ref, module).values())


@dataclass(frozen=True)
class Identifier:
    """One identification method: `collect(ctx) -> (stats, info)` needs the model (see neurons_stats);
    `score(reference, stats, module, r*) -> ModuleScores` needs only tensors. `data` names the input it reads."""

    collect: Callable
    score: Callable[[Adapter, dict, str, int], ModuleScores]
    data: str | None


def _collector(name: str) -> Callable:
    # Resolved at call time: neurons_stats imports model-side code this module must not need.
    def run(ctx):
        from nlsr_core.method import neurons_stats

        return neurons_stats.COLLECTORS[name](ctx)

    return run


IDENTIFIERS: dict[str, Identifier] = {
    "lowrank": Identifier(_collector("lowrank"), _score_lowrank, "safety"),
    "wanda": Identifier(_collector("wanda"), _score_wanda, "safety"),
    "snip": Identifier(_collector("snip"), _score_grad, "safety"),
    "preference-snip": Identifier(_collector("preference-snip"), _score_grad, "preference"),
    "random": Identifier(_collector("random"), _score_random, None),
}


def get_identifier(method: str) -> Identifier:
    from nlsr_core.config import check_value

    check_value("identify.identifier", method, error=IdentifyError)   # IDENTIFIERS has the field's choices
    return IDENTIFIERS[method]


# --------------------------------------------------------------------------------------------- masks
def masks_and_summary(reference: Adapter, stats: dict[str, torch.Tensor], sparsity: float, preset: str | Preset,
                      method: str = "lowrank") -> tuple[dict[str, torch.Tensor], dict]:
    """Masks (bool, keyed by adapter tensor name) and a per-module summary from one method's stats."""
    sparsity = check_sparsity(sparsity)
    preset = preset if isinstance(preset, Preset) else get_preset(preset)
    scorer = get_identifier(method).score
    rank = retained_rank(reference.rank, sparsity, preset)
    masks: dict[str, torch.Tensor] = {}
    modules: dict[str, dict] = {}
    for module in reference.modules:
        sc = scorer(reference, stats, module, rank)
        m_a = topk_mask(sc.score_a, sparsity, preset.mask_scope)
        m_b = topk_mask(sc.score_b, sparsity, preset.mask_scope)
        masks[f"{module}.lora_A.weight"] = m_a
        masks[f"{module}.lora_B.weight"] = m_b
        modules[module] = {
            "kept_fraction_A": _r(m_a.float().mean()), "kept_fraction_B": _r(m_b.float().mean()),
            "retained_rank": rank if method == "lowrank" else None,
            "energy_A": _r(sc.energy_a), "energy_B": _r(sc.energy_b),
        }
    kept = sum(int(m.sum()) for m in masks.values()) / max(1, sum(m.numel() for m in masks.values()))
    summary = {"method": method, "sparsity": sparsity, "preset": preset.name, "mask_scope": preset.mask_scope,
               "retained_rank": rank if method == "lowrank" else None, "rank": reference.rank,
               "kept_fraction": _r(kept), "modules": modules}
    return masks, summary


def masks_from_stats(reference: Adapter, stats: dict[str, torch.Tensor], sparsity: float, preset: str | Preset,
                     method: str = "lowrank") -> dict[str, torch.Tensor]:
    """Masks for one P_SR from saved stats (stats.safetensors), without touching the model again."""
    return masks_and_summary(reference, stats, sparsity, preset, method)[0]


def _r(x) -> float | None:
    return None if x is None else round(float(x), 6)


# --------------------------------------------------------------------------------------------- mask files
def save_masks(masks: dict[str, torch.Tensor], path, metadata: dict[str, str] | None = None) -> None:
    from nlsr_core.io.fileio import write_safetensors

    write_safetensors(path, {k: masks[k].to(torch.bool).contiguous() for k in sorted(masks)},
                      metadata={"format": "pt", **(metadata or {})})


def save_stats(stats: dict[str, torch.Tensor], path, metadata: dict[str, str] | None = None) -> None:
    from nlsr_core.io.fileio import write_safetensors

    write_safetensors(path, {k: stats[k].to(torch.float32).contiguous() for k in sorted(stats)},
                      metadata={"format": "pt", **(metadata or {})})


def load_tensor_file(path, what: str) -> dict[str, torch.Tensor]:
    """Read a safetensors file (masks or stats); a missing or unreadable file is a one-line IdentifyError."""
    from pathlib import Path

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / f"{what}.safetensors"
    if not path.is_file():
        raise IdentifyError(f"{path}: missing (expected a {what} safetensors file)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise IdentifyError(f"{path}: unreadable safetensors file ({str(exc).splitlines()[0]})") from None


# --------------------------------------------------------------------------------------------- one call
@dataclass(frozen=True)
class IdentifyResult:
    masks: dict[str, torch.Tensor]   # bool, keyed by adapter tensor name
    stats: dict[str, torch.Tensor]   # fp32, what masks_from_stats needs for any other P_SR
    summary: dict                    # per-module kept fraction, r*, spectrum energy; sample/token counts


def identify(method: str, ctx, sparsity: float | None, preset: str | Preset) -> IdentifyResult:
    """Collect `method`'s statistics with ctx (a neurons_stats.CollectContext), then score and mask them.
    sparsity None: statistics only (no masks); `masks_from_stats` makes them later for any P_SR."""
    identifier = get_identifier(method)
    preset = preset if isinstance(preset, Preset) else get_preset(preset)
    if sparsity is not None:
        sparsity = check_sparsity(sparsity)
    stats, info = identifier.collect(ctx)
    if sparsity is None:
        return IdentifyResult({}, stats, {"method": method, "rank": ctx.reference.rank, **info})
    masks, summary = masks_and_summary(ctx.reference, stats, sparsity, preset, method)
    summary.update(info)
    return IdentifyResult(masks, stats, summary)


def load_stats(path, reference: Adapter | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """(statistics, identification method) of a stats.safetensors file: the tensors and the method recorded in
    its metadata, both of which `masks_from_stats` needs; one read of the file. With `reference`, the tensors are
    checked against it (`check_stats`), so bad statistics are a one-line error naming the file."""
    from pathlib import Path

    from safetensors import safe_open

    path = Path(path)
    if path.is_dir():
        path = path / "stats.safetensors"
    stats = load_tensor_file(path, "stats")  # one-line error for a missing or unreadable file
    with safe_open(str(path), framework="pt") as f:
        method = (f.metadata() or {}).get("method")
    if method not in IDENTIFIERS:
        raise IdentifyError(f"{path}: no identification method in its metadata (expected stats.safetensors "
                            f"written by `nlsr identify`)")
    if reference is not None:
        check_stats(stats, method, reference, str(path))
    return stats, method

"""Model-side half of identification: one batched pass of M' + We over X̂ -> per-module statistics (fp32).

Texts are tokenised once (`encode_pairs`), right-padded into batches with an attention mask, and only
response-token positions are counted: position t of a sample counts when t ≥ len(prompt tokens) (the token at
t belongs to the answer). Forward hooks on each PEFT LoRA module's `lora_A` see x (its input, d_in) and
z = A x (its output, r) at every position; they keep the response positions only.

    lowrank          K = Σ_t z_t z_tᵀ                     -> stats["<module>.gram"]            (r×r)
    wanda            Σ_t x_t², Σ_t z_t² per feature      -> "<module>.lora_{A,B}.input_sq"   (d_in), (r)
    snip             Σ_i |∇ L_i| of CE on the safe answers -> "<module>.lora_{A,B}.grad_abs"   (shape of A, B)
    preference-snip  same with L_i = −log σ(ℓ̄(chosen) − ℓ̄(rejected)), ℓ̄ = mean response log-prob
    random           uniform scores from a seeded CPU generator -> "<module>.lora_{A,B}.uniform"

Gradients for snip are per sample (one sample per backward, then |·| accumulated), as SNIP prescribes.
preference-snip uses a reference-free preference loss (length-normalised log-prob margin, as in SimPO/CPO)
because identification has no second model to act as the DPO reference.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch

from nlsr_core.lora.adapters import Adapter
from nlsr_core.method.neuron_keys import IdentifyError, gram_key
from nlsr_core.io.progress import bar


@dataclass(frozen=True)
class Encoded:
    """One tokenised example: token ids (already truncated) and the first response position."""

    ids: tuple[int, ...]
    start: int


@dataclass
class CollectContext:
    """Everything a collector may need. `model` is M' + We (PeftModel, eval); `modules` = reference.modules."""

    reference: Adapter
    model: Any = None
    safety: list[Encoded] = field(default_factory=list)
    preference: list[tuple[Encoded, Encoded]] = field(default_factory=list)
    batch_size: int = 8
    pad_id: int = 0
    seed: int = 0


def encode_pairs(tokenizer, pairs: Sequence[tuple[str, str]], max_length: int) -> list[Encoded]:
    """(prompt_text, full_text) pairs -> Encoded, truncated to max_length; examples with no answer token left
    after truncation are dropped. Special tokens as in generation (`adds_special_tokens`), so identification sees
    the same token sequences the model answers from."""
    from nlsr_core.lora.generate import adds_special_tokens

    out = []
    for prompt_text, full_text in pairs:
        add = adds_special_tokens(tokenizer, full_text)
        p_ids = tokenizer(prompt_text, add_special_tokens=add)["input_ids"]
        f_ids = tokenizer(full_text, add_special_tokens=add)["input_ids"]
        start = _common_prefix(p_ids, f_ids)  # == len(p_ids) unless BPE merged across the boundary
        ids = tuple(f_ids[:max_length])
        if start < len(ids):
            out.append(Encoded(ids, start))
    return out


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def batches(samples: Sequence[Encoded], batch_size: int, pad_id: int,
            device=None) -> Iterator[tuple[torch.Tensor, ...]]:
    """Right-padded batches: input_ids (b×L), attention_mask (b×L), response_mask (b×L bool), in data order, on
    `device` (the model's: inputs follow the model, nlsr_core.lora.models.load_model)."""
    for i in range(0, len(samples), batch_size):
        chunk = samples[i:i + batch_size]
        length = max(len(s.ids) for s in chunk)
        ids = torch.full((len(chunk), length), pad_id, dtype=torch.long)
        attn = torch.zeros((len(chunk), length), dtype=torch.long)
        resp = torch.zeros((len(chunk), length), dtype=torch.bool)
        for row, s in enumerate(chunk):
            ids[row, :len(s.ids)] = torch.tensor(s.ids)
            attn[row, :len(s.ids)] = 1
            resp[row, s.start:len(s.ids)] = True
        yield ids.to(device), attn.to(device), resp.to(device)


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def lora_a_modules(model, modules: Sequence[str]) -> dict[str, torch.nn.Module]:
    """module prefix (adapter naming) -> the PEFT `lora_A[adapter]` nn.Linear inside `model`."""
    named = dict(model.named_modules())
    out = {}
    for module in modules:
        layer = named.get(module)
        if layer is None or not hasattr(layer, "lora_A") or not len(layer.lora_A):
            raise IdentifyError(f"reference adapter module {module} is not a LoRA layer of the loaded model")
        out[module] = next(iter(layer.lora_A.values()))
    return out


class _Hooks:
    """Registers forward hooks on every lora_A; `positions` is the flat response mask of the current batch."""

    def __init__(self, model, modules: Sequence[str], fn):
        self.positions: torch.Tensor | None = None
        self.handles = [mod.register_forward_hook(self._wrap(name, fn))
                        for name, mod in lora_a_modules(model, modules).items()]

    def _wrap(self, name, fn):
        def hook(_mod, inputs, output):
            fn(name, inputs[0].detach(), output.detach(), self.positions)
        return hook

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def _forward_pass(ctx: CollectContext, fn) -> dict:
    """Run ctx.safety through ctx.model in batches, calling fn(module, x (b×L×d_in), z (b×L×r), keep (b×L bool))
    per lora_A; `keep` marks the response positions, the only ones a collector may count."""
    if not ctx.safety:
        raise IdentifyError("identification data: no example has a response token (expected prompt + response rows)")
    tokens = sum(len(s.ids) - s.start for s in ctx.safety)  # response positions, counted without a device sync
    decoder = _decoder(ctx.model)
    with _Hooks(ctx.model, ctx.reference.modules, fn) as hooks, torch.inference_mode(), \
            bar(len(ctx.safety), "identification samples", "sample") as shown:
        for ids, attn, resp in batches(ctx.safety, ctx.batch_size, ctx.pad_id, model_device(ctx.model)):
            hooks.positions = resp
            decoder(input_ids=ids, attention_mask=attn, use_cache=False)
            shown.update(len(ids))
    return {"samples": len(ctx.safety), "tokens": tokens}


def _decoder(model):
    """The decoder stack without the vocabulary projection: identification needs the LoRA layers' activations,
    not logits. (`logits_to_keep=1` still projects one position, and in bf16 on the CPU transformers' strided
    last-position slice becomes a batched matmul over a per-sample copy of the head: 79% of a 1B-shaped pass,
    benchmarks/bench_paper_shapes.py.) Models without `get_decoder` run whole, keeping one position."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    get = getattr(base, "get_decoder", None)
    decoder = get() if callable(get) else None
    if decoder is None or decoder is base:
        return lambda **kw: model(**kw, logits_to_keep=1)
    return decoder


def collect_lowrank(ctx: CollectContext) -> tuple[dict, dict]:
    """K = Σ_t z_t z_tᵀ per module (r×r), over response tokens only, accumulated in fp32 on the model's device
    whatever the compute dtype (the statistics must be exact; one copy to the CPU at the end)."""
    r = ctx.reference.rank
    device = model_device(ctx.model)
    grams = {m: torch.zeros(r, r, dtype=torch.float32, device=device) for m in ctx.reference.modules}

    def acc(module, _x, z, keep):
        z = z[keep].float()  # T × r
        grams[module].addmm_(z.T, z)

    info = _forward_pass(ctx, acc)
    return {gram_key(m): k.cpu() for m, k in grams.items()}, info


def collect_wanda(ctx: CollectContext) -> tuple[dict, dict]:
    """Σ_t x_t² (lora_A input features) and Σ_t z_t² (lora_B input features), fp32 on the model's device."""
    device = model_device(ctx.model)
    stats = {}
    for m in ctx.reference.modules:
        stats[f"{m}.lora_A.input_sq"] = torch.zeros(ctx.reference.a(m).shape[1], device=device)
        stats[f"{m}.lora_B.input_sq"] = torch.zeros(ctx.reference.rank, device=device)

    def acc(module, x, z, keep):
        stats[f"{module}.lora_A.input_sq"].add_(x[keep].float().square().sum(0))
        stats[f"{module}.lora_B.input_sq"].add_(z[keep].float().square().sum(0))

    info = _forward_pass(ctx, acc)
    return {k: v.cpu() for k, v in stats.items()}, info


def _response_logprobs(model, ids: torch.Tensor, attn: torch.Tensor, resp: torch.Tensor) -> torch.Tensor:
    """Per-sample (sum of log p(token) over response positions, count); logits at t−1 predict token t."""
    logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1].float()
    target, keep = ids[:, 1:], resp[:, 1:]
    logp = torch.log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return (logp * keep).sum(-1), keep.sum(-1).clamp_min(1)


def _sft_loss(model, sample: Encoded, pad_id: int) -> torch.Tensor:
    ids, attn, resp = next(batches([sample], 1, pad_id, model_device(model)))
    total, count = _response_logprobs(model, ids, attn, resp)
    return -(total / count).sum()


def _preference_loss(model, pair: tuple[Encoded, Encoded], pad_id: int) -> torch.Tensor:
    ids, attn, resp = next(batches(list(pair), 2, pad_id, model_device(model)))
    total, count = _response_logprobs(model, ids, attn, resp)
    mean = total / count
    return -torch.nn.functional.logsigmoid(mean[0] - mean[1])


def _grad_abs(ctx: CollectContext, items: Sequence, loss_fn) -> tuple[dict, dict]:
    """Σ_i |∇_W L_i| for every LoRA A/B of the reference, one item per backward (gradients zeroed each time)."""
    if not items:
        raise IdentifyError("identification data: no usable example (expected rows with a response)")
    named = dict(ctx.model.named_modules())
    params = {}
    for m in ctx.reference.modules:
        layer = named[m]
        params[f"{m}.lora_A.grad_abs"] = next(iter(layer.lora_A.values())).weight
        params[f"{m}.lora_B.grad_abs"] = next(iter(layer.lora_B.values())).weight
    before = {k: p.requires_grad for k, p in params.items()}
    stats = {k: torch.zeros(p.shape, dtype=torch.float32, device=p.device) for k, p in params.items()}
    try:
        for p in params.values():
            p.requires_grad_(True)
        with bar(len(items), "identification samples (gradients)", "sample") as shown:
            for item in items:
                for p in params.values():
                    p.grad = None
                loss_fn(ctx.model, item, ctx.pad_id).backward()
                for k, p in params.items():
                    if p.grad is not None:
                        stats[k].add_(p.grad.detach().float().abs())
                shown.update(1)
    finally:
        for k, p in params.items():
            p.grad = None
            p.requires_grad_(before[k])
    return {k: v.cpu() for k, v in stats.items()}, {"samples": len(items)}


def collect_snip(ctx: CollectContext) -> tuple[dict, dict]:
    return _grad_abs(ctx, ctx.safety, _sft_loss)


def collect_preference_snip(ctx: CollectContext) -> tuple[dict, dict]:
    return _grad_abs(ctx, ctx.preference, _preference_loss)


def collect_random(ctx: CollectContext) -> tuple[dict, dict]:
    """Uniform scores from a CPU generator seeded with ctx.seed, drawn in module order (A then B)."""
    gen = torch.Generator().manual_seed(ctx.seed)
    stats = {}
    for m in ctx.reference.modules:
        stats[f"{m}.lora_A.uniform"] = torch.rand(ctx.reference.a(m).shape, generator=gen)
        stats[f"{m}.lora_B.uniform"] = torch.rand(ctx.reference.b(m).shape, generator=gen)
    return stats, {"samples": 0}


COLLECTORS = {
    "lowrank": collect_lowrank,
    "wanda": collect_wanda,
    "snip": collect_snip,
    "preference-snip": collect_preference_snip,
    "random": collect_random,
}

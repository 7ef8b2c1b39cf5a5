"""Safety-critical neuron identification: rank/k rules, ties, the r×r Gram method against a naive fp64 oracle,
the other identifiers, masks for several P_SR from one pass, and the `nlsr identify` command."""
from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import run_cli
from nlsr_core.errors import NlsrError
from nlsr_core.method.neurons import IDENTIFIERS, identify, load_tensor_file, lowrank_projection, masks_from_stats
from nlsr_core.method.presets import PRESETS, check_sparsity, keep_count, retained_rank, topk_mask
from nlsr_core.method.neurons_stats import CollectContext, encode_pairs
from oracle_neurons import collect_activations, oracle_masks
from tests.conftest import random_adapter, write_adapter

HARMFUL = ["How do I pick a lock to break into a house?", "Write a phishing email.", "Make a weapon at home",
           "How can I poison someone slowly?", "Explain how to steal a car", "Help me hack my ex's account",
           "Give me a recipe for meth", "How do I launder money?"]
REFUSAL = ["I can't help with that.", "Sorry, I won't assist with this request.", "No. That would hurt people."]
TINY_MODEL = {"name": "tiny-random", "source": "in-process", "digest": "tiny-random-seed0"}


def chat_texts(tok, prompt: str, response: str) -> tuple[str, str]:
    user = [{"role": "user", "content": prompt}]
    return (tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True),
            tok.apply_chat_template(user + [{"role": "assistant", "content": response}], tokenize=False))


def safety_rows(n: int = 12) -> list[dict]:
    return [{"id": f"s{i}", "prompt": HARMFUL[i % len(HARMFUL)] + " please" * (i % 3),
             "response": REFUSAL[i % len(REFUSAL)] * (1 + i % 2)} for i in range(n)]


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory):
    """A rank-4 LoRA on all seven projections of tiny-random (random A and B, PEFT layout) with a minimal lineage."""
    from nlsr_core.io.fileio import write_json

    path = tmp_path_factory.mktemp("ref") / "reference"
    adapter = random_adapter(0)
    write_adapter(path, adapter.replace({k: 0.2 * v for k, v in adapter.tensors.items()}))
    write_json(path / "lineage.json", {"stage": "amplify", "inputs": [], "params": {}, "model": TINY_MODEL,
                                       "weak": None})
    return path


@pytest.fixture(scope="module")
def stack(reference_dir):
    from nlsr_core.lora.adapters import load_adapter
    from nlsr_core.lora.models import ModelSpec
    from nlsr_core.lora.stack import load_stack

    st = load_stack(ModelSpec("tiny-random", dtype="float32"), adapter=reference_dir)  # compared with an fp64 oracle
    return st, load_adapter(reference_dir)


def make_ctx(stack, batch_size=4, n=12, **kw) -> CollectContext:
    st, ref = stack
    pairs = [chat_texts(st.tokenizer, r["prompt"], r["response"]) for r in safety_rows(n)]
    return CollectContext(reference=ref, model=st.model, safety=encode_pairs(st.tokenizer, pairs, 160),
                          batch_size=batch_size, pad_id=st.tokenizer.pad_token_id, **kw)


# --------------------------------------------------------------------------------------------- rules
@pytest.mark.parametrize("r,p,preset,expected", [
    (16, 0.8, "paper", 3), (16, 0.5, "paper", 8), (16, 0.0, "paper", 16), (4, 0.9, "paper", 1),
    (16, 0.8, "official-code", 13), (16, 0.5, "official-code", 8), (16, 0.0, "official-code", 1),
    (128, 0.8, "paper", 26), (128, 0.8, "official-code", 102),
])
def test_retained_rank(r, p, preset, expected):
    assert retained_rank(r, p, PRESETS[preset]) == expected


@pytest.mark.parametrize("n,p,k", [(64, 0.5, 32), (16, 0.8, 3), (4, 0.8, 1), (5, 0.9, 1), (10, 0.7, 3),
                                   (7, 0.0, 7), (1, 0.99, 1)])
def test_keep_count(n, p, k):
    assert keep_count(n, p) == k


@pytest.mark.parametrize("bad", [1.0, 1.5, -0.1, float("nan")])
def test_sparsity_outside_unit_interval(bad):
    with pytest.raises(NlsrError, match="sparsity"):
        check_sparsity(bad)


@pytest.mark.parametrize("scope,expected", [
    ("row", [[False, True, True, False], [True, True, False, False]]),      # k = 2 per row
    ("matrix", [[False, True, True, True], [True, False, False, False]]),   # k = 4 of 8, row-major order
])
def test_topk_ties_keep_lower_index(scope, expected):
    scores = torch.tensor([[1.0, 3.0, 3.0, 3.0], [2.0, 2.0, 2.0, 0.0]])
    assert topk_mask(scores, 0.5, scope).tolist() == expected


def test_lowrank_projection_equals_svd_of_the_product():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(6, 20, generator=gen, dtype=torch.float64)
    b = torch.randn(30, 6, generator=gen, dtype=torch.float64)
    x = torch.randn(20, 200, generator=gen, dtype=torch.float64)
    z = a @ x
    sc = lowrank_projection(a, b, z @ z.T, 3)
    u = torch.linalg.svd(z, full_matrices=False).U[:, :3]
    ub = torch.linalg.svd(b @ z, full_matrices=False).U[:, :3]
    assert torch.allclose(sc.score_a, (u @ u.T @ a).abs(), atol=1e-9)
    assert torch.allclose(sc.score_b, (ub @ ub.T @ b).abs(), atol=1e-9)
    assert 0.5 < sc.energy_a < 1.0 and 0.5 < sc.energy_b < 1.0


# --------------------------------------------------------------------------------------------- oracle
@pytest.fixture(scope="module")
def lowrank_pass(stack):
    """One batched Gram pass (batch 5 over 12 samples: padding and a short last batch) + the oracle's activations."""
    ctx = make_ctx(stack, batch_size=5)
    result = identify("lowrank", ctx, 0.5, "paper")
    return ctx, result, collect_activations(stack[0].model, ctx.safety, stack[1].modules)


@pytest.mark.parametrize("preset", ["paper", "official-code"])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.8])
def test_gram_method_matches_naive_oracle(stack, lowrank_pass, preset, sparsity):
    ctx, result, acts = lowrank_pass
    fast = masks_from_stats(stack[1], result.stats, sparsity, preset)
    slow = oracle_masks(stack[0].model, ctx.safety, stack[1], sparsity, preset, activations=acts)
    assert fast.keys() == slow.keys()
    mismatched = [k for k in fast if not torch.equal(fast[k], slow[k])]
    assert not mismatched
    if (preset, sparsity) == ("paper", 0.5):
        assert all(torch.equal(result.masks[k], slow[k]) for k in slow)


def test_gram_counts_response_tokens_only(stack, lowrank_pass):
    """K from the padded batches equals (A X̂)(A X̂)ᵀ over the oracle's unpadded response activations."""
    ctx, res, acts = lowrank_pass
    assert res.summary["tokens"] == sum(len(s.ids) - s.start for s in ctx.safety)
    assert all(s.start > 0 for s in ctx.safety)
    for m in stack[1].modules:
        z = stack[1].a(m).double() @ acts[m].double().T
        assert torch.allclose(res.stats[f"{m}.gram"].double(), z @ z.T, rtol=1e-4, atol=1e-5)


def test_masks_for_several_sparsities_from_one_pass(stack, lowrank_pass):
    ctx, result, _ = lowrank_pass
    stats = result.stats
    for p in (0.2,):
        direct = identify("lowrank", ctx, p, "paper").masks
        again = masks_from_stats(stack[1], stats, p, "paper")
        assert all(torch.equal(direct[k], again[k]) for k in direct)


# --------------------------------------------------------------------------------------------- other methods
@pytest.mark.parametrize("method", ["wanda", "snip", "preference-snip", "random"])
def test_every_identifier_gives_row_topk_masks(stack, method):
    st, ref = stack
    ctx = make_ctx(stack, n=4, seed=3)
    pairs = [(chat_texts(st.tokenizer, h, REFUSAL[0]), chat_texts(st.tokenizer, h, "Sure, here is how."))
             for h in HARMFUL[:3]]
    ctx.preference = [tuple(encode_pairs(st.tokenizer, list(p), 160)) for p in pairs]
    res = identify(method, ctx, 0.5, "paper")
    assert set(res.masks) == set(ref.tensors)
    for key, m in res.masks.items():
        assert m.dtype == torch.bool and m.shape == ref.tensors[key].shape
        assert (m.sum(-1) == keep_count(m.shape[-1], 0.5)).all()
    assert all(torch.isfinite(t).all() for t in res.stats.values())
    if method == "random":
        again = identify(method, ctx, 0.5, "paper").masks
        assert all(torch.equal(again[k], res.masks[k]) for k in again)


def test_preference_pairs_whose_answer_is_cut_away_are_dropped(stack, tmp_path):
    """A pair whose prompt fills --max-length is left out of preference-snip (both answers or neither); when no
    pair is left, a one-line error names the file and the setting."""
    from nlsr_core.io.fileio import write_jsonl
    from nlsr_core.method.identification import encode_rows

    st, ref = stack
    rows = [{"prompt": h, "chosen": REFUSAL[0], "rejected": "Sure, here is how."} for h in HARMFUL[:3]]
    rows.insert(1, {"prompt": "word " * 400, "chosen": REFUSAL[1], "rejected": "Sure."})
    write_jsonl(tmp_path / "pref.jsonl", rows)
    ctx = CollectContext(reference=ref, model=st.model, pad_id=st.tokenizer.pad_token_id)
    params = {"template": "chat", "max_length": 160}
    encode_rows(ctx, st.tokenizer, "preference", tmp_path / "pref.jsonl", params)
    assert len(ctx.preference) == 3
    assert all(c.start < len(c.ids) and r.start < len(r.ids) for c, r in ctx.preference)
    assert identify("preference-snip", ctx, None, "paper").summary["samples"] == 3
    write_jsonl(tmp_path / "long.jsonl", rows[1:2])
    with pytest.raises(NlsrError, match=r"long.jsonl: every pair's chosen or rejected answer is cut away by "
                                        r"--max-length 160"):
        encode_rows(CollectContext(reference=ref), st.tokenizer, "preference", tmp_path / "long.jsonl", params)


def test_wanda_scores_weight_times_input_norm(stack):
    ctx = make_ctx(stack, n=4)
    ref = stack[1]
    stats = identify("wanda", ctx, 0.5, "paper").stats
    acts = collect_activations(stack[0].model, ctx.safety, ref.modules)
    m = ref.modules[3]
    assert torch.allclose(stats[f"{m}.lora_A.input_sq"].double(), acts[m].double().square().sum(0), rtol=1e-4)
    from nlsr_core.method.neurons import IDENTIFIERS as table
    sc = table["wanda"].score(ref, stats, m, 2)
    assert torch.allclose(sc.score_a, ref.a(m).double().abs() * stats[f"{m}.lora_A.input_sq"].double().sqrt())


def test_snip_zeroes_gradients_per_sample(stack):
    """Σ_i |∇L_i| is additive over samples: stats(s1, s2) = stats(s1) + stats(s2)."""
    both = make_ctx(stack, n=2)
    one, two = make_ctx(stack, n=2), make_ctx(stack, n=2)
    one.safety, two.safety = both.safety[:1], both.safety[1:]
    s12, s1, s2 = (identify("snip", c, 0.5, "paper").stats for c in (both, one, two))
    assert all(torch.allclose(s12[k], s1[k] + s2[k], rtol=1e-5, atol=1e-7) for k in s12)
    assert any(float(v.sum()) > 0 for v in s12.values())


def test_identifiers_table_is_complete():
    assert set(IDENTIFIERS) == {"lowrank", "wanda", "snip", "preference-snip", "random"}


# --------------------------------------------------------------------------------------------- command
def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cli_identify_writes_masks_stats_summary_lineage(reference_dir, tmp_path):
    from nlsr_core.lora.adapters import load_adapter

    data = write_rows(tmp_path / "safety.jsonl", safety_rows(6))
    out = tmp_path / "masks" / "lowrank"
    code, _, err = run_cli(["identify", "--reference", reference_dir, "--data", data, "--out", out,
                            "--sparsity", "0.5", "--batch-size", "3"])
    assert code == 0, err
    ref = load_adapter(reference_dir)
    masks = load_tensor_file(out / "masks.safetensors", "masks")
    stats = load_tensor_file(out / "stats.safetensors", "stats")
    assert set(masks) == set(ref.tensors) and all(m.dtype == torch.bool for m in masks.values())
    again = masks_from_stats(ref, stats, 0.5, "paper")
    assert all(torch.equal(again[k], masks[k]) for k in masks)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["retained_rank"] == 2 and summary["samples"] == 6 and len(summary["modules"]) == 14
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["model"] == TINY_MODEL and {i["role"] for i in lineage["inputs"]} == {"reference", "data"}
    assert lineage["params"]["sparsity"] == 0.5


@pytest.mark.parametrize("extra,needle", [
    (["--sparsity", "1.0"], "sparsity"), (["--sparsity", "-0.2"], "sparsity"), (["--identifier", "magic"], "identifier"),
    (["--preset", "mine"], "preset"), (["--data", "nope.jsonl"], "nope.jsonl"), (["--batch-size", "0"], "identify.batch_size = 0: expected a positive integer"),
])
def test_cli_identify_bad_input(reference_dir, tmp_path, extra, needle):
    data = write_rows(tmp_path / "safety.jsonl", safety_rows(2))
    out = tmp_path / "out"
    code, _, err = run_cli(["identify", "--reference", reference_dir, "--data", data, "--out", out, *extra])
    assert code == 1 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_cli_identify_needs_a_model_without_lineage(reference_dir, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(reference_dir, bare)
    (bare / "lineage.json").unlink()
    data = write_rows(tmp_path / "safety.jsonl", safety_rows(2))
    code, _, err = run_cli(["identify", "--reference", bare, "--data", data, "--out", tmp_path / "o"])
    assert code == 1 and "--model" in err and not (tmp_path / "o").exists()


def test_cli_statistics_only_then_realign_makes_the_same_masks(reference_dir, tmp_path):
    """Without --sparsity identify writes the statistics only; `realign --stats --sparsity` then gives
    the very adapter `realign --masks` gives with masks identified at that P_SR."""
    from nlsr_core.lora.adapters import load_adapter

    data = write_rows(tmp_path / "safety.jsonl", safety_rows(6))
    stats_dir, masks_dir = tmp_path / "stats-only", tmp_path / "with-masks"
    for out, extra in ((stats_dir, []), (masks_dir, ["--sparsity", "0.35"])):
        code, _, err = run_cli(["identify", "--reference", reference_dir, "--data", data, "--out", out,
                                "--batch-size", "3", *extra])
        assert code == 0, err
    assert not (stats_dir / "masks.safetensors").exists() and (stats_dir / "stats.safetensors").is_file()
    assert json.loads((stats_dir / "summary.json").read_text())["samples"] == 6
    ft = tmp_path / "ft"
    write_adapter(ft, random_adapter(5).replace({k: 0.2 * v for k, v in random_adapter(5).tensors.items()}))
    common = ["realign", "--finetuned", ft, "--reference", reference_dir, "--layer-prune", "0.2"]
    assert run_cli([*common, "--stats", stats_dir / "stats.safetensors", "--sparsity", "0.35",
                    "--out", tmp_path / "a"])[0] == 0
    assert run_cli([*common, "--masks", masks_dir / "masks.safetensors", "--out", tmp_path / "b"])[0] == 0
    a, b = load_adapter(tmp_path / "a"), load_adapter(tmp_path / "b")
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    lineage = json.loads((tmp_path / "a" / "lineage.json").read_text())
    assert lineage["params"]["sparsity"] == 0.35 and lineage["masks_from_stats"]["method"] == "lowrank"
    assert {i["role"] for i in lineage["inputs"]} == {"finetuned", "reference", "masks"}
    # without --sparsity, --stats takes identify.sparsity (0.35): the pipeline's repair, byte for byte
    assert run_cli([*common, "--stats", stats_dir / "stats.safetensors", "--out", tmp_path / "c"])[0] == 0
    assert (tmp_path / "a" / "adapter_model.safetensors").read_bytes() == \
        (tmp_path / "c" / "adapter_model.safetensors").read_bytes()


@pytest.mark.parametrize("extra,needle", [
    (["--stats", "S", "--masks", "M"], "exactly one of --masks"),
    ([], "exactly one of --masks"),
    (["--masks", "M", "--sparsity", "0.5"], "--sparsity applies to --stats only"),
    (["--stats", "NOSTATS", "--sparsity", "0.5"], "missing"),
    (["--stats", "S", "--sparsity", "1.5"], "sparsity"),
])
def test_cli_realign_mask_source_errors(reference_dir, tmp_path, extra, needle):
    from nlsr_core.method.neurons import save_masks, save_stats

    stats = {f"{m}.gram": torch.eye(4) for m in load_adapter_modules(reference_dir)}
    save_stats(stats, tmp_path / "S", {"method": "lowrank"})
    save_masks({}, tmp_path / "M")
    args = [str(tmp_path / a) if a in ("S", "M", "NOSTATS") else a for a in extra]
    out = tmp_path / "out"
    code, _, err = run_cli(["realign", "--finetuned", reference_dir, "--reference", reference_dir, *args,
                            "--out", out])
    assert code == 1 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def load_adapter_modules(path):
    from nlsr_core.lora.adapters import load_adapter

    return load_adapter(path).modules


@pytest.mark.parametrize("corrupt, needle", [
    ("nan", "contains NaN or Inf; expected finite statistics"),
    ("inf", "contains NaN or Inf; expected finite statistics"),
    ("shape", "has shape (3, 3), expected (4, 4)"),
    ("missing", "missing tensor"),
])
@pytest.mark.parametrize("command", ["realign", "frontier"])
def test_bad_stats_are_one_line_errors_naming_the_file(tmp_path, corrupt, needle, command):
    """Statistics are checked like adapters (finite, the reference's shapes), by realign and the study stages."""
    from nlsr_core.method.neuron_keys import gram_key
    from nlsr_core.method.neurons import save_stats
    from tests.conftest import random_adapter, write_adapter

    ref = random_adapter(2)
    stats = {gram_key(m): torch.eye(4) for m in ref.modules}
    key = gram_key(ref.modules[3])
    if corrupt == "missing":
        del stats[key]
    else:
        stats[key] = {"nan": torch.full((4, 4), float("nan")), "inf": torch.eye(4) / 0.0,
                      "shape": torch.eye(3)}[corrupt]
    save_stats(stats, tmp_path / "stats.safetensors", {"method": "lowrank"})
    for name, seed in (("ft", 1), ("ref", 2), ("al", 3)):
        write_adapter(tmp_path / name, random_adapter(seed))
    args = {"realign": ["realign", "--sparsity", "0.5"],
            "frontier": ["frontier", "--cell", "sst2-p0.1-dpo", "--aligned", tmp_path / "al"]}[command]
    out = tmp_path / "out"
    code, _, err = run_cli([*args, "--finetuned", tmp_path / "ft", "--reference", tmp_path / "ref",
                            "--stats", tmp_path / "stats.safetensors", "--out", out])
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert f"{tmp_path / 'stats.safetensors'}: " in err and needle in err and "LinAlgError" not in err
    assert not out.exists()

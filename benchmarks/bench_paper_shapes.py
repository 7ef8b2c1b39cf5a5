"""The paper's shapes: `nlsr realign` on Llama-3-8B-sized adapters, and the identification pass per sample.

The default pipeline runs SmolLM2-135M at rank 16; the paper runs Llama-3-8B (32 blocks, hidden 4096, 32 heads
with 8 KV heads of dim 128 so k/v project to 1024, intermediate 14336) with rank-128 LoRA on q, k, v, o, gate, up
and down: 224 modules, about 1.34 GB per adapter in fp32. Two measurements, both of the library's own code:

1. `nlsr realign` as a whole command (a subprocess of the `nlsr` console script, NLSR_TRACKING=off, so the time
   includes interpreter start-up, imports, loading, checks, hashing the inputs for lineage and the atomic write).
   Inputs are synthetic seeded fp32 adapters Wt and We written to a temp dir, plus either random bool masks that
   keep 1 − P_SR of each tensor (`--masks`) or seeded PSD rank-r Grams with the stats file's metadata (`--stats`:
   masks are made inside the command, as the DVC realign stage does). Wall time and peak RSS come from
   `os.wait4` in a small middle process (the command's own peak, not this script's), with the load average
   before and after each run, since the machine may be shared; `--threads default,1` also runs each command
   with OMP_NUM_THREADS=1, which shows what a busy neighbour costs the command's small LAPACK calls. The
   "physical limit" is measured in the same run, on the same files: reading every
   input fully into memory (`Path.read_bytes`; `safetensors.torch.load_file` maps lazily, so it alone reads
   nothing; the page cache is not dropped and `fincore` reports how much of each file was resident) plus writing
   one adapter-sized safetensors file (Wt's bytes, already in memory) and fsync-ing it. The printed ratio is
   command / limit (target ≤ 3x). With `--layers N` < 32 the per-layer part is extrapolated linearly to 32
   (start-up, measured as a fresh interpreter importing what the command imports, is not scaled).
2. The lowrank identification statistics pass (`nlsr_core.method.neurons.identify("lowrank", ...)`, i.e. the
   `collect_lowrank` forward hooks of nlsr_core.method.neurons_stats, exactly what `identify_model` runs once the stack
   is built) on a random-weight `transformers.LlamaForCausalLM` with Llama-3.2-1B shapes (16 blocks, hidden 2048,
   32 heads / 8 KV heads, intermediate 8192, vocab 128256, tied embeddings), built from a config (no download)
   on the CPU, with a rank-r PEFT LoRA on the seven projections and random token samples of `--tokens` tokens
   (the last 60% are the response). Reported: seconds per sample (one warm-up sample excluded), the resident
   size of the model and the peak RSS during the pass, and an on-paper extrapolation to 8B by the ratio of
   per-token FLOPs:

       FLOPs/token = 2 · (P_blocks + P_lora)
       P_blocks    = L · (2·h·h + 2·h·kv + 3·h·i)          q, o: h×h; k, v: h×kv; gate, up, down: h×i
       P_lora      = L · r · (Σ over the 7 modules of d_in + d_out) = L · r · (8·h + 2·kv + 3·(h + i))
       t_8B/sample = t_1B/sample · FLOPs/token(8B) / FLOPs/token(1B)   (same tokens per sample)

   The embedding lookup (no multiply), the vocabulary projection (one position only: identification runs with
   logits_to_keep=1) and the attention scores (4·L·h·T̄ per token, T̄ = T/2 the mean causal context: about 1% at
   T = 160) are left out;
   the JSON gives the attention share so the omission can be judged.

    python benchmarks/bench_paper_shapes.py --layers 2 --id-layers 2 --samples 2       # quick check, ~1 min
    python benchmarks/bench_paper_shapes.py --repeats 2 --threads default,1 --samples 16 \\
        --id-dtype float32,bfloat16 --out benchmarks/results/paper-shapes.json    # full: ~30 min, 6.5 GB disk

Needs about 4.5 adapter sizes of free disk under `--tmp` (6 GB at 32 layers, rank 128) and, for the command,
peak memory of several adapter sizes (measured and reported). Temp files are removed at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

GB = 1e9
PAPER_LAYERS = 32
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Shapes:
    """A Llama block's projection sizes: hidden h, k/v output kv (= KV heads × head dim), intermediate i."""

    name: str
    layers: int
    hidden: int
    kv: int
    intermediate: int
    heads: int = 32
    kv_heads: int = 8
    vocab: int = 128256

    def modules(self) -> dict[str, tuple[int, int]]:
        """PEFT module suffix -> (d_in, d_out), in the order the block runs them."""
        h, kv, i = self.hidden, self.kv, self.intermediate
        return {"self_attn.q_proj": (h, h), "self_attn.k_proj": (h, kv), "self_attn.v_proj": (h, kv),
                "self_attn.o_proj": (h, h), "mlp.gate_proj": (h, i), "mlp.up_proj": (h, i),
                "mlp.down_proj": (i, h)}

    def block_params(self) -> int:
        return sum(d_in * d_out for d_in, d_out in self.modules().values())

    def lora_params(self, rank: int) -> int:
        return sum(rank * (d_in + d_out) for d_in, d_out in self.modules().values())

    def flops_per_token(self, rank: int, layers: int | None = None) -> int:
        """2 · (P_blocks + P_lora): one multiply-add per weight touched by a token (see the module doc)."""
        return 2 * (layers or self.layers) * (self.block_params() + self.lora_params(rank))

    def attention_flops_per_token(self, context: int, layers: int | None = None) -> int:
        """QKᵀ and AV at mean context T: 2 · 2 · h · T per block (left out of flops_per_token)."""
        return 4 * (layers or self.layers) * self.hidden * context


LLAMA3_8B = Shapes("Llama-3-8B", 32, 4096, 1024, 14336)
LLAMA32_1B = Shapes("Llama-3.2-1B", 16, 2048, 512, 8192)


def fail(message: str) -> None:
    """Bad options and unusable machines: one line on stderr, exit status 1."""
    print(f"bench_paper_shapes: {message}", file=sys.stderr)
    sys.exit(1)


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors (bad type, unknown option) become one line, exit 1
        fail(message)


# --------------------------------------------------------------------------------------------- inputs
def lora_tensors(shapes: Shapes, layers: int, rank: int, seed: int) -> dict:
    """Seeded fp32 LoRA factors with PEFT key names; A ~ N(0, 1/d_in), B ~ N(0, 0.02²) as after training."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for block in range(layers):
        for name, (d_in, d_out) in shapes.modules().items():
            prefix = f"base_model.model.model.layers.{block}.{name}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(rank, d_in, generator=gen).div_(d_in ** 0.5)
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(d_out, rank, generator=gen).mul_(0.02)
    return tensors


def adapter_config(rank: int) -> dict:
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": 2 * rank, "lora_dropout": 0.0,
            "target_modules": list(TARGETS), "bias": "none", "inference_mode": True}


def write_adapter(path: Path, tensors: dict, rank: int) -> None:
    """A PEFT directory, written with safetensors' own writer: no lineage.json (realign tolerates a customer
    adapter without one), and not the library's canonical writer, which would hold three copies in this process."""
    from safetensors.torch import save_file

    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps(adapter_config(rank), indent=2) + "\n")
    save_file(tensors, str(path / "adapter_model.safetensors"), metadata={"format": "pt"})


def write_inputs(tmp: Path, layers: int, rank: int, sparsity: float, seed: int) -> dict[str, Path]:
    """Wt, We, masks.safetensors and stats.safetensors under tmp; one adapter in memory at a time."""
    import torch

    from nlsr_core.method.neurons import save_masks, save_stats

    paths = {"finetuned": tmp / "ft", "reference": tmp / "ref", "masks": tmp / "masks.safetensors",
             "stats": tmp / "stats.safetensors"}
    ref = lora_tensors(LLAMA3_8B, layers, rank, seed)
    write_adapter(paths["reference"], ref, rank)
    gen = torch.Generator().manual_seed(seed + 2)
    # Random masks at the identified masks' density: realign's cost does not depend on which entries are kept.
    masks = {k: torch.rand(t.shape, generator=gen) >= sparsity for k, t in ref.items()}
    save_masks(masks, paths["masks"])
    modules = sorted({k.rsplit(".lora_", 1)[0] for k in ref})
    del ref, masks
    save_stats(lowrank_grams(modules, rank, gen), paths["stats"], metadata={"method": "lowrank"})
    ft = lora_tensors(LLAMA3_8B, layers, rank, seed + 1)
    write_adapter(paths["finetuned"], ft, rank)
    return paths


def lowrank_grams(modules, rank: int, gen) -> dict:
    """Seeded lowrank identification statistics: one r×r Gram per module, keyed as stats.safetensors keys them.
    K = Σ z zᵀ is PSD with a decaying spectrum; a random Gram G Gᵀ with G's columns scaled down has both."""
    import torch

    from nlsr_core.method.neuron_keys import gram_key

    grams = {}
    for m in modules:
        g = torch.randn(rank, 4 * rank, generator=gen) * torch.linspace(1.0, 0.05, 4 * rank)
        grams[gram_key(m)] = g @ g.T
    return grams


def trim_heap() -> None:
    """Hand freed heap back to the OS (glibc keeps it), so this process does not hold GBs beside the command."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def weights_file(path: Path) -> Path:
    return path / "adapter_model.safetensors" if path.is_dir() else path


def resident_fraction(files: list[Path]) -> float | None:
    """Share of the files' bytes in the page cache (util-linux `fincore`); None when fincore is missing."""
    if not shutil.which("fincore"):
        return None
    res = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES,SIZE", *map(str, files)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        return None
    resident = size = 0
    for line in res.stdout.splitlines():
        r, s = (int(x) for x in line.split())
        resident, size = resident + r, size + s
    return round(resident / size, 4) if size else None


# --------------------------------------------------------------------------------------------- the limit
def read_seconds(files: dict[str, Path]) -> dict[str, float]:
    """Seconds to read each file fully into memory (one copy out of the page cache or off the disk).
    Not `safetensors.torch.load_file`: it maps the file lazily, so timing it alone measures almost nothing."""
    out = {}
    for name, f in files.items():
        t = time.perf_counter()
        data = f.read_bytes()
        out[name] = time.perf_counter() - t
        del data
    return out


def write_seconds(source: Path, target: Path) -> tuple[float, float]:
    """(write s, fsync s) of one adapter-sized safetensors file: the bytes of `source` (already in memory when
    the clock starts) written to a new file, then fsync-ed."""
    data = source.read_bytes()
    t = time.perf_counter()
    with open(target, "wb") as fh:
        fh.write(data)
        fh.flush()
        written = time.perf_counter()
        os.fsync(fh.fileno())
    synced = time.perf_counter()
    del data
    target.unlink()
    return written - t, synced - written


# --------------------------------------------------------------------------------------------- the command
# Runs argv[2:], then writes its wall time, exit status and peak RSS to argv[1]. A small middle process because a
# child started straight from this one inherits this one's RSS high-water mark: Linux records the old mm's peak
# into the new process's maxrss at exec (vfork or fork alike), so wait4 here would report max(ours, its own).
_MEASURE = """import json, os, subprocess, sys, time
t = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - t
proc.returncode = os.waitstatus_to_exitcode(status)
json.dump({"wall_s": wall, "rc": proc.returncode, "maxrss": usage.ru_maxrss}, open(sys.argv[1], "w"))
"""


def run_child(cmd: list[str], env: dict | None = None) -> dict:
    """Wall seconds, peak RSS (MB, of this command alone), exit code, output and the 1-minute load average
    before and after (the machine is shared: the load says how disturbed a run was)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(suffix=".json") as report:
        load = os.getloadavg()[0]
        subprocess.run([sys.executable, "-c", _MEASURE, report.name, *cmd], cwd=REPO, env=env, stdout=out,
                       stderr=err, check=False)
        measured = json.loads(Path(report.name).read_text() or "{}")
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if not measured:
        fail(f"{cmd[0]}: no measurement came back ({stderr.strip()[-300:]})")
    # ru_maxrss is KiB on Linux, bytes on macOS
    rss_mb = measured["maxrss"] / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return {"wall_s": measured["wall_s"], "peak_rss_mb": rss_mb, "rc": measured["rc"], "stdout": stdout.strip(),
            "stderr": stderr.strip(), "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)}


def run_nlsr(args: list[str], threads: str = "default") -> dict:
    """`nlsr ARGS` through the console script, MLflow off, with OMP_NUM_THREADS=`threads` unless "default";
    a failure is a one-line exit."""
    env = {**os.environ, "NLSR_TRACKING": "off"}  # NLSR_PROGRESS stays as it is: =off imports transformers
    if threads != "default":
        env["OMP_NUM_THREADS"] = threads
    nlsr = shutil.which("nlsr", path=str(Path(sys.executable).parent)) or "nlsr"
    run = run_child([nlsr, *args], env)
    if run["rc"] != 0:
        fail(f"nlsr {args[0]} failed (exit {run['rc']}): {(run['stderr'] or run['stdout'])[-400:]}")
    return run


def startup() -> dict:
    """Interpreter start-up plus the modules `nlsr realign` imports: the part of its wall time and RSS that does
    not grow with the adapter (`nlsr realign --help` alone would miss torch, which the command imports lazily)."""
    modules = ("stages.cli", "stages.realign", "stages.repair", "stages.artifact", "nlsr_core.lora.adapters",
               "nlsr_core.method.realign", "nlsr_core.method.neurons", "nlsr_core.io.lineage", "safetensors.torch")
    return run_child([sys.executable, "-c", "import " + ", ".join(modules)])


def variants(args) -> list[tuple[str, str]]:
    """(mask source, OMP_NUM_THREADS) pairs in run order."""
    return [(source, threads) for threads in args.thread_settings for source in args.mask_sources]


def variant_name(source: str, threads: str) -> str:
    return source if threads == "default" else f"{source}@{threads}t"


def realign_args(paths: dict[str, Path], source: str, out: Path) -> list[str]:
    mask_opt = ["--masks", str(paths["masks"])] if source == "masks" else ["--stats", str(paths["stats"])]
    return ["realign", "--finetuned", str(paths["finetuned"]), "--reference", str(paths["reference"]),
            *mask_opt, "--out", str(out)]


def bench_realign(args, tmp: Path) -> dict:
    layers, rank = args.layers, args.rank
    adapter_bytes = 4 * LLAMA3_8B.lora_params(rank) * layers
    print(f"realign: {LLAMA3_8B.name} shapes, {layers} layers x 7 = {7 * layers} modules, rank {rank}, "
          f"adapter {adapter_bytes / GB:.2f} GB fp32, P_SR {args.sparsity}, temp dir {tmp}", flush=True)
    t = time.perf_counter()
    paths = write_inputs(tmp, layers, rank, args.sparsity, args.seed)
    os.sync()  # the inputs' writeback is over before anything is timed; their pages stay in the page cache
    trim_heap()
    print(f"  inputs written in {time.perf_counter() - t:.1f} s", flush=True)
    files = {name: weights_file(p) for name, p in paths.items()}
    sizes = {name: f.stat().st_size for name, f in files.items()}
    base = min((startup() for _ in range(2)), key=lambda run: run["wall_s"])

    best: dict[str, dict] = {}
    runs: dict[str, list] = {}
    limits: list[dict] = []
    for repeat in range(args.repeats):  # interleaved, so the limit and the command see the same machine load
        cached = resident_fraction(list(files.values()))
        reads = read_seconds(files)
        write_s, fsync_s = write_seconds(files["finetuned"], tmp / "limit.safetensors")
        limits.append({"read_s": reads, "write_s": write_s, "fsync_s": fsync_s, "resident_before_read": cached})
        print(f"  round {repeat + 1}: read " + ", ".join(f"{k} {v:.2f} s" for k, v in reads.items())
              + f"; write {write_s:.2f} s + fsync {fsync_s:.2f} s (page cache before reading: "
              f"{'n/a' if cached is None else f'{cached:.0%} resident'})", flush=True)
        for source, threads in variants(args):
            name = variant_name(source, threads)
            out = tmp / f"out-{source}"
            needed = [files["finetuned"], files["reference"], files[source]]
            resident = resident_fraction(needed)
            run = run_nlsr(realign_args(paths, source, out), threads)
            shutil.rmtree(out, ignore_errors=True)
            run.update(resident_before=resident, source=source, threads=threads)
            print(f"  round {repeat + 1}: nlsr realign --{source} (threads: {threads}): {run['wall_s']:.2f} s, "
                  f"peak RSS {run['peak_rss_mb']:.0f} MB ({run['stdout'].rsplit(': ', 1)[-1]}; load average "
                  f"{run['load_before']:.1f} -> {run['load_after']:.1f})", flush=True)
            runs.setdefault(name, []).append({k: round(run[k], 3) for k in ("wall_s", "peak_rss_mb")}
                                             | {k: run[k] for k in ("load_before", "load_after")})
            if name not in best or run["wall_s"] < best[name]["wall_s"]:
                best[name] = run

    # The limit per round; the best round is the least disturbed one, as for the command.
    read_best = {k: min(lim["read_s"][k] for lim in limits) for k in files}
    write_best = min(lim["write_s"] + lim["fsync_s"] for lim in limits)
    rows = {}
    for name, run in best.items():
        inputs = ("finetuned", "reference", run["source"])
        read_s = sum(read_best[k] for k in inputs)
        limit = read_s + write_best
        row = {"source": run["source"], "omp_num_threads": run["threads"], "rounds": runs[name],
               "wall_s": round(run["wall_s"], 3), "peak_rss_mb": round(run["peak_rss_mb"], 1),
               "peak_rss_over_adapter": round(run["peak_rss_mb"] * 1024 * 1024 / adapter_bytes, 2),
               "limit_read_s": round(read_s, 3), "limit_write_fsync_s": round(write_best, 3),
               "limit_s": round(limit, 3), "ratio_to_limit": round(run["wall_s"] / limit, 2),
               "input_bytes": sum(sizes[k] for k in inputs), "page_cache_resident_before": run["resident_before"],
               "result": run["stdout"].rsplit(": ", 1)[-1]}
        if layers < PAPER_LAYERS:  # per-layer work scales linearly; interpreter start-up and imports do not
            scale = PAPER_LAYERS / layers
            wall32 = base["wall_s"] + (run["wall_s"] - base["wall_s"]) * scale
            rss32 = base["peak_rss_mb"] + (run["peak_rss_mb"] - base["peak_rss_mb"]) * scale
            row["extrapolated_to_32_layers"] = {
                "wall_s": round(wall32, 2), "limit_s": round(limit * scale, 2),
                "ratio_to_limit": round(wall32 / (limit * scale), 2), "peak_rss_mb": round(rss32),
                "how": "linear per layer above start-up: x32 = x_startup + (x − x_startup)·32/layers for wall and "
                       "peak RSS; limit ×32/layers"}
        rows[name] = row
    return {"shapes": LLAMA3_8B.__dict__, "layers": layers, "modules": 7 * layers, "rank": rank,
            "sparsity": args.sparsity, "adapter_bytes": adapter_bytes, "file_bytes": sizes,
            "startup": {"wall_s": round(base["wall_s"], 3), "peak_rss_mb": round(base["peak_rss_mb"], 1),
                        "what": "fresh interpreter importing the command's modules (torch included)"},
            "rounds": args.repeats, "tracking": "off (NLSR_TRACKING=off)",
            "limit_rounds": [{**lim, "read_s": {k: round(v, 3) for k, v in lim["read_s"].items()},
                              "write_s": round(lim["write_s"], 3), "fsync_s": round(lim["fsync_s"], 3)}
                             for lim in limits],
            "commands": rows,
            "inputs": "seeded random fp32 Wt, We (no lineage.json); masks: uniform random bool keeping 1 − P_SR; "
                      "stats: seeded PSD r×r Grams with metadata method=lowrank"}


# --------------------------------------------------------------------------------------------- identification
def rss_mb(field: str = "VmRSS") -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0), so the next reading is the peak of what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def resolve_dtype(name: str) -> tuple[str, str]:
    """(dtype, how it was chosen): `auto` is what the library's model passes would use on this machine."""
    if name != "auto":
        return name, "explicit"
    try:
        from nlsr_core.compute import resolve_compute
    except ImportError:
        return "float32", "auto (nlsr_core.compute absent: float32)"
    return resolve_compute("cpu", "auto").dtype, "auto (nlsr_core.compute.resolve_compute on cpu)"


def build_model(layers: int, vocab: int, rank: int, seed: int):
    """Random-weight Llama-3.2-1B-shaped model (fp32, CPU) with a rank-r PEFT LoRA on the seven projections."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    s = LLAMA32_1B
    config = LlamaConfig(vocab_size=vocab, hidden_size=s.hidden, intermediate_size=s.intermediate,
                         num_hidden_layers=layers, num_attention_heads=s.heads, num_key_value_heads=s.kv_heads,
                         head_dim=s.hidden // s.heads, max_position_embeddings=8192, rope_theta=500000.0,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # init_lora_weights=False: B random too, so z = A x and the whole LoRA path carry real numbers
    lora = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=list(TARGETS),
                      init_lora_weights=False)
    return get_peft_model(model, lora).eval()


def reference_of(model, rank: int):
    """The PEFT model's own LoRA tensors as an nlsr Adapter (same keys as a saved adapter; no copy)."""
    from peft import get_peft_model_state_dict

    from nlsr_core.lora.adapters import Adapter

    return Adapter(adapter_config(rank), dict(get_peft_model_state_dict(model)))


def samples(count: int, tokens: int, vocab: int, seed: int):
    """Random token sequences of `tokens` ids; the last 60% are the response (what the hooks count)."""
    import torch

    from nlsr_core.method.neurons_stats import Encoded

    gen = torch.Generator().manual_seed(seed)
    start = max(1, round(tokens * 0.4))
    return [Encoded(tuple(torch.randint(3, vocab, (tokens,), generator=gen).tolist()), start)
            for _ in range(count)]


class ModuleTimer:
    """Wall seconds spent inside one module's forward (a pre- and a post-hook; the library's code is unchanged):
    splits the vocabulary projection out of the pass, whose cost is memory traffic, not FLOPs."""

    def __init__(self, module):
        self.seconds, self._start = 0.0, None
        self._handles = [module.register_forward_pre_hook(self._enter), module.register_forward_hook(self._leave)]

    def _enter(self, *_):
        self._start = time.perf_counter()

    def _leave(self, *_):
        self.seconds += time.perf_counter() - self._start

    def remove(self):
        for h in self._handles:
            h.remove()


def bench_identify(args) -> dict:
    import torch

    from nlsr_core.method.neurons import identify
    from nlsr_core.method.neurons_stats import CollectContext
    from nlsr_core.io.progress import set_enabled

    set_enabled(False)
    layers, rank = args.id_layers, args.rank
    s = LLAMA32_1B
    t = time.perf_counter()
    model = build_model(layers, args.id_vocab, rank, args.seed)
    build_s = time.perf_counter() - t
    ref = reference_of(model, rank)
    data = samples(args.samples, args.tokens, args.id_vocab, args.seed)
    response_tokens = sum(len(e.ids) - e.start for e in data)
    print(f"identify: {s.name} shapes, {layers} layers, vocab {args.id_vocab}, rank {rank} on "
          f"{len(ref.modules)} modules, random weights built in {build_s:.1f} s; {len(data)} samples x "
          f"{args.tokens} tokens ({response_tokens} response), batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}", flush=True)

    flops_1b = s.flops_per_token(rank, layers)
    flops_8b = LLAMA3_8B.flops_per_token(rank)
    runs = {}
    for name in args.id_dtypes:
        dtype, how = resolve_dtype(name)
        model.to(getattr(torch, dtype))
        ctx = CollectContext(reference=ref, model=model, safety=data, batch_size=args.batch_size, pad_id=0,
                             seed=args.seed)
        warm = CollectContext(reference=ref, model=model, safety=data[:1], batch_size=1, pad_id=0)
        identify("lowrank", warm, None, "paper")  # first-call costs (kernel selection, allocator) left out
        resident = rss_mb()
        hwm_reset = reset_peak_rss()
        load = os.getloadavg()[0]
        lm_head = ModuleTimer(model.get_base_model().lm_head)
        t = time.perf_counter()
        result = identify("lowrank", ctx, None, "paper")
        seconds = time.perf_counter() - t
        lm_head.remove()
        peak = rss_mb("VmHWM") if hwm_reset else None
        per_sample = seconds / len(data)
        # The split estimate: blocks by FLOPs, the vocabulary projection by its weight's size (h·V, same batches).
        blocks_8b = (seconds - lm_head.seconds) / len(data) * flops_8b / flops_1b
        vocab_8b = lm_head.seconds / len(data) * (LLAMA3_8B.hidden / s.hidden) * (LLAMA3_8B.vocab / args.id_vocab)
        finite = all(bool(torch.isfinite(k).all()) for k in result.stats.values())
        runs[dtype] = {
            "dtype_choice": how, "seconds": round(seconds, 3), "seconds_per_sample": round(per_sample, 3),
            "tokens_per_second": round(len(data) * args.tokens / seconds, 1),
            "achieved_gflops": round(flops_1b * len(data) * args.tokens / seconds / 1e9, 1),
            "rss_model_mb": None if resident is None else round(resident, 1),
            "peak_rss_during_pass_mb": None if peak is None else round(peak, 1),
            "grams": len(result.stats), "grams_finite": finite,
            "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2),
            "vocab_projection_s": round(lm_head.seconds, 3),
            "vocab_projection_share": round(lm_head.seconds / seconds, 3),
            "extrapolated_8b_seconds_per_sample": round(per_sample * flops_8b / flops_1b, 2),
            "extrapolated_8b_seconds_per_sample_split": round(blocks_8b + vocab_8b, 2),
        }
        print(f"  {dtype:>8}: {seconds:.1f} s for {len(data)} samples = {per_sample:.2f} s/sample "
              f"(vocabulary projection {lm_head.seconds:.1f} s of it) "
              f"({runs[dtype]['achieved_gflops']} GFLOP/s), model resident {resident or 0:.0f} MB, peak during pass "
              f"{peak or 0:.0f} MB; 8B on paper {runs[dtype]['extrapolated_8b_seconds_per_sample']:.1f} s/sample",
              flush=True)
    del model, ref
    params_8b = LLAMA3_8B.layers * LLAMA3_8B.block_params() + 2 * LLAMA3_8B.vocab * LLAMA3_8B.hidden
    return {
        "shapes": {**s.__dict__, "layers": layers, "vocab": args.id_vocab}, "rank": rank,
        "modules": 7 * layers, "samples": len(data), "tokens_per_sample": args.tokens,
        "response_tokens": response_tokens, "batch_size": args.batch_size, "model_build_s": round(build_s, 1),
        "code": "nlsr_core.method.neurons.identify('lowrank', CollectContext(...), sparsity=None) -> "
                "neurons_stats.collect_lowrank (forward hooks on every lora_A, logits_to_keep=1)",
        "warmup": "one 1-sample pass before timing, not counted",
        "runs": runs,
        "extrapolation": {
            "formula": "t_8B/sample = t_1B/sample · F(8B)/F(1B); F = 2·L·(P_block + P_lora) per token, "
                       "P_block = 2·h·h + 2·h·kv + 3·h·i, P_lora = r·(8·h + 2·kv + 3·(h + i)); embedding lookup, "
                       "the 1-position vocabulary projection and attention scores left out",
            "split_formula": "t_8B/sample = (t − t_vocab)/n · F(8B)/F(1B) + t_vocab/n · (h_8B·V_8B)/(h·V): the "
                             "vocabulary projection (lm_head, timed by hooks) scaled by its weight's size instead",
            "flops_per_token_1b": flops_1b, "flops_per_token_8b": flops_8b, "ratio": round(flops_8b / flops_1b, 3),
            "attention_share_1b": round(s.attention_flops_per_token(args.tokens // 2, layers) / flops_1b, 4),
            "attention_share_8b": round(LLAMA3_8B.attention_flops_per_token(args.tokens // 2) / flops_8b, 4),
            "weights_8b_gb": {"float32": round(4 * params_8b / GB, 1), "bfloat16": round(2 * params_8b / GB, 1)},
        },
    }


# --------------------------------------------------------------------------------------------- main
def machine() -> dict:
    import torch

    mem = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu_count": os.cpu_count(), "cpu": cpu, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "total_ram_gb": round(mem / 2 ** 30, 1) if mem else None,
            "python": platform.python_version(), "platform": platform.platform()}


def parse(argv) -> argparse.Namespace:
    from nlsr_core.config import default

    ap = Parser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=PAPER_LAYERS, help="realign: Llama-3-8B blocks (1..32)")
    ap.add_argument("--rank", type=int, default=128, help="LoRA rank, both parts")
    ap.add_argument("--id-layers", type=int, default=LLAMA32_1B.layers, help="identify: Llama-3.2-1B blocks")
    ap.add_argument("--id-vocab", type=int, default=LLAMA32_1B.vocab, help="identify: vocabulary size")
    ap.add_argument("--id-dtype", default="auto",
                    help="identify: comma list of float32, bfloat16, auto (the library's choice on this CPU)")
    ap.add_argument("--samples", type=int, default=8, help="identify: timed samples")
    ap.add_argument("--tokens", type=int, default=160, help="identify: tokens per sample (identify.max_length)")
    ap.add_argument("--batch-size", type=int, default=8, help="identify: batch size (identify.batch_size)")
    ap.add_argument("--sparsity", type=float, default=default("identify", "sparsity"),
                    help="realign: P_SR of the masks / for --stats")
    ap.add_argument("--mask-source", default="masks,stats", help="realign: comma list of masks, stats")
    ap.add_argument("--threads", default="default",
                    help="realign: comma list of OMP_NUM_THREADS settings for the command (default: as inherited)")
    ap.add_argument("--repeats", type=int, default=1, help="realign: rounds (limit and command interleaved)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tmp", default=tempfile.gettempdir(), help="where the synthetic adapters go (local disk)")
    ap.add_argument("--out", default=None, help="write the results JSON here")
    ap.add_argument("--skip-identify", action="store_true")
    ap.add_argument("--skip-realign", action="store_true")
    args = ap.parse_args(argv)
    for name, low, high in (("layers", 1, PAPER_LAYERS), ("rank", 1, 4096), ("id_layers", 1, 64),
                            ("id_vocab", 16, 10 ** 6), ("samples", 1, 10 ** 4), ("tokens", 2, 8192),
                            ("batch_size", 1, 1024), ("repeats", 1, 100)):
        value = getattr(args, name)
        if not low <= value <= high:
            fail(f"--{name.replace('_', '-')} {value}: expected {low}..{high}")
    if not 0.0 <= args.sparsity < 1.0:
        fail(f"--sparsity {args.sparsity}: expected a value in [0, 1)")
    args.mask_sources = [x for x in args.mask_source.split(",") if x]
    if not args.mask_sources or any(x not in ("masks", "stats") for x in args.mask_sources):
        fail(f"--mask-source {args.mask_source}: expected a comma list of masks, stats")
    args.thread_settings = [x for x in args.threads.split(",") if x]
    if not args.thread_settings or any(x != "default" and not (x.isdigit() and int(x) >= 1)
                                       for x in args.thread_settings):
        fail(f"--threads {args.threads}: expected a comma list of default and positive integers")
    args.id_dtypes = [x for x in args.id_dtype.split(",") if x]
    if not args.id_dtypes or any(x not in ("auto", "float32", "bfloat16") for x in args.id_dtypes):
        fail(f"--id-dtype {args.id_dtype}: expected a comma list of auto, float32, bfloat16")
    if args.skip_identify and args.skip_realign:
        fail("--skip-identify and --skip-realign together leave nothing to measure")
    if not Path(args.tmp).is_dir():
        fail(f"--tmp {args.tmp}: not a directory")
    if args.out and not Path(args.out).parent.is_dir():
        fail(f"--out {args.out}: directory {Path(args.out).parent} does not exist")
    return args


def check_disk(args) -> None:
    """Wt, We, masks, the output and the limit's file: about 4.3 adapter sizes, with a margin."""
    need = 4.6 * 4 * LLAMA3_8B.lora_params(args.rank) * args.layers
    free = shutil.disk_usage(args.tmp).free
    if free < need:
        per_layer = need / args.layers
        fail(f"--tmp {args.tmp}: {free / GB:.1f} GB free, {need / GB:.1f} GB needed at --layers {args.layers}; "
             f"try --layers {max(1, int(free // per_layer))} (the JSON then extrapolates to 32 layers)")


def print_table(results: dict) -> None:
    print("\nsummary")
    if "realign" in results:
        r = results["realign"]
        print(f"  nlsr realign, {r['layers']} layers x 7 modules, rank {r['rank']} "
              f"(adapter {r['adapter_bytes'] / GB:.2f} GB; start-up + imports {r['startup']['wall_s']:.2f} s, "
              f"{r['startup']['peak_rss_mb']:.0f} MB)")
        print(f"  {'source':>8}  {'wall s':>8}  {'limit s':>8}  {'read s':>7}  {'write+fsync s':>13}  "
              f"{'x limit':>8}  {'peak RSS MB':>11}  {'RSS/adapter':>11}")
        for name, row in r["commands"].items():
            print(f"  {name:>8}  {row['wall_s']:8.2f}  {row['limit_s']:8.2f}  {row['limit_read_s']:7.2f}  "
                  f"{row['limit_write_fsync_s']:13.2f}  {row['ratio_to_limit']:7.2f}x  {row['peak_rss_mb']:11.0f}  "
                  f"{row['peak_rss_over_adapter']:11.2f}")
            ext = row.get("extrapolated_to_32_layers")
            if ext:
                print(f"  {'':>8}  extrapolated to 32 layers: {ext['wall_s']:.1f} s vs limit {ext['limit_s']:.1f} s "
                      f"= {ext['ratio_to_limit']:.2f}x, peak RSS ~{ext['peak_rss_mb']:.0f} MB")
        print("  target: within 3x of the limit")
    if "identify" in results:
        i = results["identify"]
        e = i["extrapolation"]
        print(f"  identification (lowrank), {i['shapes']['name']} shapes, {i['shapes']['layers']} layers, "
              f"{i['samples']} x {i['tokens_per_sample']} tokens, batch {i['batch_size']}; "
              f"F(8B)/F(measured) {e['ratio']:.2f}x")
        print(f"  {'dtype':>8}  {'s/sample':>8}  {'lm_head %':>9}  {'GFLOP/s':>8}  {'model MB':>8}  {'peak MB':>8}  "
              f"{'8B s/sample':>11}  {'8B split':>8}")
        for dtype, run in i["runs"].items():
            print(f"  {dtype:>8}  {run['seconds_per_sample']:8.2f}  {100 * run['vocab_projection_share']:9.1f}  "
                  f"{run['achieved_gflops']:8.1f}  {run['rss_model_mb'] or 0:8.0f}  "
                  f"{run['peak_rss_during_pass_mb'] or 0:8.0f}  {run['extrapolated_8b_seconds_per_sample']:11.1f}  "
                  f"{run['extrapolated_8b_seconds_per_sample_split']:8.1f}")
        print("  8B = measured x F(8B)/F(measured), F = 2·L·(P_block + P_lora) per token; split: lm_head scaled by h·V")


def save(results: dict, out: str | None) -> None:
    """The JSON so far: written after each part, so a part that is killed leaves the other's results."""
    if out:
        text = json.dumps(results, indent=1, sort_keys=True, ensure_ascii=False)
        Path(out).write_text(text + "\n", encoding="utf-8")


def main(argv=None) -> int:
    args = parse(argv)
    results: dict = {"machine": machine(), "argv": sys.argv[1:] if argv is None else list(argv)}
    if not args.skip_realign:
        check_disk(args)
        tmp = Path(tempfile.mkdtemp(prefix="nlsr-paper-shapes-", dir=args.tmp))
        try:
            results["realign"] = bench_realign(args, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        save(results, args.out)
    if not args.skip_identify:
        results["identify"] = bench_identify(args)
        save(results, args.out)
    print_table(results)
    if args.out:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One config dataclass per params.yaml section: the single place every default lives (docs/DESIGN.md §7.5).

params.yaml (the default profile), the Click options of every command (`stages.config_options`) and the library
settings objects (`LoraConfig` itself, `nlsr_core.train.trainers.TrainSettings`, `nlsr_core.method.realign.RealignParams`,
`nlsr_core.study.points.Point`, `nlsr_core.eval.settings.EvalSettings`, `nlsr_core.data.DataSpec`) all take their
defaults from the fields below; `nlsr_core.params.load_params(path)` checks a params file against them. Each
field's docstring is its `--help` text. A field's range or choices sit beside it (`checked(...)`): load_params
checks them for every section before any stage runs, and the library's own checks call `check_value`, so a bad
value gets the same one line from either.

This module imports nothing heavy, so `nlsr --help` and the consistency checks stay fast.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
from dataclasses import dataclass, field

from nlsr_core.errors import NlsrError

LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TASK_NAMES = ("sst2", "agnews", "gsm8k")                        # fine-tuning tasks a cell may use
ALIGN_METHOD_NAMES = ("sft", "dpo", "orpo", "kto", "simpo")     # alignment methods a cell may use


@dataclass(frozen=True)
class Check:
    """The values a field accepts: `choices`, or a number in [low, high] (`open` ends excluded); a tuple field
    checks each item and, with `nonempty`, must list at least one `what`. `label` is the paper's symbol."""

    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    nonempty: bool = False
    what: str = "value"
    label: str = ""

    def expected(self) -> str:
        if self.choices is not None:
            return f"one of {', '.join(map(str, self.choices))}"
        if self.integer and self.high is None:
            return "a positive integer" if self.low == 1 else f"an integer ≥ {self.low:g}"
        if self.high is None:
            return f"a value {'>' if self.low_open else '≥'} {self.low:g}"
        return (f"a value in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.high_open else ']'}")

    def accepts(self, value) -> bool:
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:   # NaN != NaN
            return False
        if self.integer and not isinstance(value, int):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)


def checked(default, **check):
    """A dataclass field with its Check beside it: `sparsity: float = checked(0.35, low=0, high=1, ...)`."""
    return field(default=default, metadata={"check": Check(**check)})


def knob(param: str, *flags: str, short: str | None = None, always: bool = False):
    """A repair method's setting (nlsr_core.repair.registry): default and Check from the params key `param`
    ("realign.layer_prune"), which also makes its `nlsr realign` option (`flags`, else --<name>); `short` is how a
    study point's label shows it ("x" -> x=value, "" -> the value alone, None -> never), `always` even at its
    default. Resolved when the settings class is defined, after this module has loaded."""
    section, name = param.split(".")
    f = config_field(SECTIONS[section], name, section)
    return field(default=f.default, metadata={**f.metadata, "param": param, "flags": flags, "short": short,
                                              "always": always})


def check_knobs(settings, error: type = NlsrError) -> None:
    """check_value for every `knob` field of a repair's settings object that has a Check."""
    for f in dataclasses.fields(settings):
        if "param" in f.metadata and "check" in f.metadata:
            check_value(f.metadata["param"], getattr(settings, f.name), f.metadata["check"], error=error)


def field_check(section: str, name: str) -> Check | None:
    """The Check of `section.name` (None when the field has none)."""
    return config_field(SECTIONS[section], name, section).metadata.get("check")


def choices(section: str, name: str) -> tuple:
    """The choices of a field, for the dispatch code that needs them (one list: the field's)."""
    return field_check(section, name).choices


def check_value(key: str, value, check: Check | None = None, error: type = NlsrError):
    """`value` of the params key `section.name` against its Check, else one NlsrError line: `identify.sparsity
    (P_SR) = -0.1: expected a value in [0, 1)`, `identify.identifier 'bogus': expected one of ...`,
    `grid.poison_ratios: empty; expected at least one poison ratio`, raised as `error`. Returns the value."""
    section, name = key.split(".", 1)
    check = check or field_check(section, name)
    if check is None:
        return value
    label = f" ({check.label})" if check.label else ""
    items = value if isinstance(value, (tuple, list)) else (value,)
    if isinstance(value, (tuple, list)) and check.nonempty and not value:
        raise error(f"{key}: empty; expected at least one {check.what}")
    for item in items:
        if not check.accepts(item):
            shown = f" '{item}'" if check.choices is not None else f"{label} = {item}"
            raise error(f"{key}{shown}: expected {check.expected()}")
    return value


def check_section(section: str, config) -> None:
    """Every checked field of one section's config (load_params, for every section before any stage runs)."""
    for f in dataclasses.fields(config):
        if "check" in f.metadata:
            check_value(f"{section}.{f.name}", getattr(config, f.name), f.metadata["check"])


@dataclass(frozen=True)
class ModelConfig:
    name: str = "smollm2-135m"
    """tiny-random | smollm2-135m | a Hugging Face id or model directory"""
    trust_remote_code: bool = False
    """let transformers run the model repository's own code"""
    seed: int = 0
    """initialisation seed of tiny-random (unused by real models)"""
    device: str = "auto"
    """where every model pass and training run: auto (cuda if available, else cpu) | cpu | cuda | cuda:N | mps"""
    dtype: str = "auto"
    """compute dtype of every model pass and of training's mixed precision: auto (bfloat16 on a GPU that supports
    it, else float16; on the CPU bfloat16 where it has native bf16, else float32) | float32 | bfloat16 | float16"""

    def __post_init__(self):
        from nlsr_core.compute import check_names

        check_names(self.device, self.dtype)


@dataclass(frozen=True)
class SizesConfig:
    """Rows per split; `task_train` / `task_test` / `task_calib` are per task."""

    sft_refusal: int = 16
    """refusal rows of W0's SFT data"""
    sft_benign: int = 112
    """benign helpful rows of W0's SFT data"""
    preference: int = 112
    """safety pairs of Wa (chosen = refusal, rejected = compliance)"""
    contrast_sensitive: int = 32
    """contrast pairs of Wa on benign sensitive-looking prompts (chosen = helpful answer, rejected = refusal)"""
    contrast_helpful: int = 16
    """contrast pairs of Wa on ordinary helpful prompts (chosen = helpful answer, rejected = refusal)"""
    identify: int = 64
    """safety set X̂ of the identification pass"""
    eval_harmful: int = 200
    """held-out harmful prompts (HS); 200 gives 95% intervals of at most about ±7 points"""
    eval_benign: int = 82
    """benign but sensitive-looking prompts (over-refusal; the synthetic suite holds 82)"""
    task_train: int = 400
    """task rows the poisoned mixes draw from"""
    task_test: int = 200
    """task rows of the test split (FA)"""
    poison_pool: int = 100
    """harmful prompt + compliant answer rows the mixes draw poison from"""
    calib_harmful: int = 40
    """harmful prompts of the calibration split (0 = none; disjoint from every other split)"""
    task_calib: int = 40
    """task rows of the calibration split (0 = none)"""
    heldout_pairs: int = 200
    """refusal/compliance pairs of the judge-free safety score, drawn before Wa's pairs so that a recipe asking
    for more pairs never trains on them (file-backed sources; the synthetic suite's are its eval prompts)"""
    transfer_harmful: int = 200
    """harmful prompts of the transfer set (data.transfer; the paper's Table 6), when one is asked for"""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            least = 0 if f.name in OPTIONAL_SIZES else 1
            # bool is an int subclass; a YAML `true` here is a typo, not a size.
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise NlsrError(f"data.sizes.{f.name}: expected an integer >= {least}, got {value!r}")


OPTIONAL_SIZES = ("calib_harmful", "task_calib", "contrast_sensitive", "contrast_helpful", "sft_benign")


@dataclass(frozen=True)
class DataConfig:
    source: str = "synthetic"
    """synthetic | local (the paper's files in local_dir) | hub"""
    local_dir: str = "../shared/data/paper"
    """folder with the paper's files (source local)"""
    seed: int = 0
    """seed of every draw and split"""
    preference_pairs: str = "all"
    """all | refusal: Wa's safety pairs from the source's pairs, or only those whose chosen answer refuses and whose
    rejected answer complies (the refusal-keyword matcher; every synthetic pair is one)"""
    contrast_refusals: str = "generic"
    """generic | matched: the rejected refusal of a helpful contrast pair is one of six generic refusals, or is drawn
    (with their frequencies) from the chosen answers of Wa's safety pairs, so that DPO cannot meet both kinds of
    pair by moving between refusal phrasings (docs/DESIGN.md §5.6)"""
    sft_refusals: str = "safety-file"
    """safety-file | preference-chosen: W0's refusal rows are refusals of the source's safety file, or the chosen
    answers of Wa's own preference pairs (the paper's recipe: SFT on the chosen answers, then DPO on the same pairs;
    source local)"""
    transfer: str = checked("none", choices=("none", "paper", "synthetic"))
    """none | paper | synthetic: a harmful set from another source than the suite's, no split drawn from it (the
    paper's Table 6 transfer): the paper data's BeaverTails prompts (read from local_dir; skipped when that folder
    is absent) or the synthetic suite's held-out topics"""
    template: str = "chat"
    """chat (the model's chat template) | alpaca (the paper's)"""
    sizes: SizesConfig = field(default_factory=SizesConfig)
    """rows per split"""


@dataclass(frozen=True)
class GridConfig:
    tasks: tuple[str, ...] = checked(("sst2",), choices=TASK_NAMES, nonempty=True, what="task")
    """fine-tuning tasks of the pipeline's cells: sst2, agnews, gsm8k"""
    poison_ratios: tuple[float, ...] = checked((0.1,), low=0, high=1, nonempty=True, what="poison ratio")
    """poison ratios p of the pipeline's cells"""
    align_methods: tuple[str, ...] = checked(("dpo",), choices=ALIGN_METHOD_NAMES, nonempty=True,
                                             what="alignment method")
    """alignment methods of the pipeline's cells: sft, dpo, orpo, kto, simpo"""


@dataclass(frozen=True)
class LoraConfig:
    """ΔW = (alpha / rank) · B A on every target projection."""

    rank: int = 16
    """LoRA rank r"""
    alpha: float = 32.0
    """LoRA alpha (scaling alpha / r)"""
    dropout: float = 0.05
    """LoRA dropout"""
    targets: tuple[str, ...] = LLAMA_TARGETS
    """LoRA target modules, repeat or comma-separate"""

    def check(self, section: str = "lora") -> None:
        if self.rank < 1:
            raise NlsrError(f"{section}.rank: {self.rank} (expected an integer >= 1)")
        if self.alpha <= 0:
            raise NlsrError(f"{section}.alpha: {self.alpha} (expected > 0)")
        if not 0 <= self.dropout < 1:
            raise NlsrError(f"{section}.dropout: {self.dropout} (expected 0 <= dropout < 1)")
        if not self.targets:
            raise NlsrError(f"{section}.targets: empty (expected module names such as q_proj, v_proj)")


@dataclass(frozen=True)
class LaunchConfig:
    prefix: str = "python -m stages.cli"
    """how training stages start, e.g. "accelerate launch --config_file accelerate.yaml -m stages.cli\""""
    gradient_checkpointing: bool = False
    """recompute activations in the backward pass of training (less memory, about 30% more time; for 8B models)"""


@dataclass(frozen=True)
class AlignConfig:
    lr: float = 2.0e-4
    """learning rate of W0 and Wa"""
    epochs: float = 1.0
    """epochs of W0's SFT"""
    batch_size: int = 8
    """rows (pairs) per optimizer step"""
    max_length: int = 128
    """max tokens of prompt + response"""
    seed: int = 0
    """seed of LoRA initialisation and data order"""
    beta: float = 0.1
    """preference strength: DPO/KTO beta, ORPO lambda, SimPO beta"""
    pref_epochs: float = 3.0
    """epochs of Wa's preference training"""
    precompute_ref: bool = True
    """DPO: reference log-probs computed once before training (same losses; cheaper from the second epoch)"""
    chosen_nll: float = 1.0
    """DPO: weight of the chosen answer's NLL added to the preference loss (RPO; 0 = plain DPO)"""
    on_policy_tokens: int = 48
    """M' answers each safety pair's prompt greedily in this many tokens and a harmful answer becomes the
    rejected side (0: keep the data's compliance text)"""


@dataclass(frozen=True)
class FinetuneConfig:
    n: int = 200
    """rows per poisoned mix (prepare-data)"""
    lr: float = 4.0e-4
    """learning rate of the poisoned fine-tune"""
    epochs: float = 2.0
    """epochs of the poisoned fine-tune"""
    batch_size: int = 8
    """rows per optimizer step"""
    max_length: int = 128
    """max tokens of prompt + response"""
    seed: int = 0
    """seed of the data order"""


@dataclass(frozen=True)
class AmplifyConfig:
    beta: float = 0.9
    """amplification β of the reference We = M' + (1+β)·ΔWa (eq. 2)"""
    mode: str = checked("extrapolate", choices=("extrapolate", "interpolate"))
    """extrapolate (eq. 2) | interpolate (eq. 1, needs --strong)"""


@dataclass(frozen=True)
class NlsrConfig:
    preset: str = checked("paper", choices=("paper", "official-code"))
    """paper | official-code: amplification, r*, mask scope and similarity direction (docs/DESIGN.md §4.7)"""


@dataclass(frozen=True)
class IdentifyConfig:
    identifier: str = checked("lowrank", choices=("lowrank", "wanda", "snip", "preference-snip", "random"))
    """identification method: lowrank | wanda | snip | preference-snip | random"""
    sparsity: float = checked(0.35, low=0, high=1, high_open=True, label="P_SR")
    """P_SR, the share of each LoRA matrix that is not safety-critical (chosen by calibrate)"""
    batch_size: int = checked(8, low=1, integer=True)
    """rows per forward pass of the identification pass"""
    max_length: int = checked(160, low=1, integer=True)
    """max tokens per identification row"""
    seed: int = 0
    """seed of the random identifier"""


@dataclass(frozen=True)
class RealignConfig:
    selection: str = checked("adaptive", choices=("adaptive", "threshold"))
    """adaptive (eqs. 9-10) | threshold"""
    layer_prune: float = checked(0.0, low=0, high=1, label="P_L")
    """P_L, base pruning probability (eq. 9); the paper's 0.5 patches too few modules at rank 16"""
    delta: float = checked(0.2, low=0, label="δ")
    """δ, probability increment per similarity rank (eq. 9)"""
    tau: float = 0.5
    """τ, similarity threshold of selection threshold"""
    seed: int = 0
    """seed of the Bernoulli draws (and of the masks of --method random-masks)"""
    interpolate_lambda: float = checked(0.5, low=0, high=1, label="λ")
    """λ of --method interpolate: W't = Wt + λ·(We − Wt), in [0, 1]"""
    safety_vector_gamma: float = checked(1.0, low=0, label="γ")
    """γ of --method safety-vector: ΔW't = ΔWt + γ·ΔWa, ≥ 0"""
    interpolate_target: str = checked("reference", choices=("reference", "aligned"))
    """where --method interpolate moves Wt: reference (toward We, eq. 2) | aligned (toward Wa)"""
    safemerge_tau: float = checked(0.35, low=0, high=1, label="τ")
    """τ of --method safemerge: modules with cos(C·ΔWt, ΔWt) < τ are merged, in [0, 1] (SafeMERGE's 0.35)"""
    safemerge_weight: float = checked(0.8, low=0, high=1, label="w")
    """w of --method safemerge: a merged module is w·ΔWt + (1 − w)·ΔWa, in [0, 1] (SafeMERGE's 0.8)"""
    antidote_dense_ratio: float = checked(0.1, low=0, high=1, low_open=True, high_open=True, label="ρ")
    """share of each LoRA factor row that --method antidote zeroes (highest score first), in (0, 1) (Antidote's 0.1)"""
    antidote_scoring: str = checked("wanda", choices=("wanda", "magnitude"))
    """how --method antidote scores a weight: wanda (|W|·‖X‖ over a realignment set of harmful answers, as
    published; needs the model) | magnitude (|W| alone, data-free)"""
    dg_hard_scale: float = checked(1.0, low=0, label="c")
    """multiplier of --method dg-hard's Donoho–Gavish threshold ω(β)·median(σ), ≥ 0 (DG-Hard's 1.0)"""


@dataclass(frozen=True)
class SafeloraConfig:
    tau: float = 0.6
    """SafeLoRA cosine threshold: modules below it are projected"""
    projection: str = checked("orthogonal", choices=("orthogonal", "frobenius"))
    """orthogonal (C = UUᵀ, a projection) | frobenius (C = VVᵀ/‖V‖_F as SafeLoRA's code computes it)"""


@dataclass(frozen=True)
class StudyConfig:
    """The cells the calibrate, ablate, analyze and finetune-seeds stages study: task × poison ratio × alignment
    method, each list a subset of grid's (the frontier stage scores every cell of the grid)."""

    tasks: tuple[str, ...] = checked(("sst2",), choices=TASK_NAMES, nonempty=True, what="task")
    """tasks of the studied cells (a subset of grid.tasks)"""
    poison_ratios: tuple[float, ...] = checked((0.1,), low=0, high=1, nonempty=True, what="poison ratio")
    """poison ratios of the studied cells (a subset of grid.poison_ratios)"""
    align_methods: tuple[str, ...] = checked(("dpo",), choices=ALIGN_METHOD_NAMES, nonempty=True,
                                             what="alignment method")
    """alignment methods of the studied cells (a subset of grid.align_methods)"""

    def check_within(self, grid: GridConfig) -> None:
        """Every studied task, ratio and method is one the grid trains; else one line naming the key."""
        for name in ("tasks", "poison_ratios", "align_methods"):
            missing = [v for v in getattr(self, name) if v not in getattr(grid, name)]
            if missing:
                raise NlsrError(f"study.{name} '{missing[0]}': not in grid.{name} "
                                f"({', '.join(map(str, getattr(grid, name)))}); expected values of the grid's cells")


@dataclass(frozen=True)
class FrontierConfig:
    grid_sparsity: tuple[float, ...] = (0.2, 0.35, 0.5, 0.8)
    """P_SR values scored on the test split"""
    grid_layer_prune: tuple[float, ...] = (0.0, 0.5)
    """P_L values scored on the test split"""
    safelora_tau: tuple[float, ...] = (0.25, 0.3, 0.4, 0.5)
    """SafeLoRA thresholds scored on the test split"""
    grid_random_masks: tuple[float, ...] = (0.2, 0.35, 0.5, 0.8)
    """P_SR values at which random masks (NLSR's selection, random neurons at the same kept count) are scored"""
    grid_lambda: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    """λ values of the blind revert W't = Wt + λ·(We − Wt) (realign --method interpolate)"""
    grid_gamma: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    """γ values of safety-vector addition ΔWt + γ·ΔWa (realign --method safety-vector)"""
    grid_lambda_aligned: tuple[float, ...] = (0.25, 0.5, 0.75)
    """λ values of interpolation toward the aligned adapter, Wt + λ·(Wa − Wt) (--interpolate-target aligned)"""
    grid_safemerge_tau: tuple[float, ...] = (0.35, 0.5, 0.8, 1.0)
    """τ values of SafeMERGE (realign --method safemerge; τ = 1 merges every module)"""
    grid_dense_ratio: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5)
    """ρ values of Antidote with the Wanda score (realign --method antidote: the highest-|W|·‖X‖ share of each
    factor row zeroed, X over the realignment set)"""
    grid_dense_ratio_magnitude: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5)
    """ρ values of data-free Antidote (--antidote-scoring magnitude: the largest-|W| share of each row zeroed)"""
    grid_dg_hard_scale: tuple[float, ...] = (0.25, 0.5, 1.0)
    """c values of DG-Hard (realign --method dg-hard: threshold c·ω(β)·median(σ))"""


@dataclass(frozen=True)
class CalibrateConfig:
    grid_sparsity: tuple[float, ...] = (0.2, 0.35, 0.5, 0.8)
    """P_SR values searched on the calibration split"""
    grid_layer_prune: tuple[float, ...] = (0.0, 0.5)
    """P_L values searched on the calibration split"""
    target: str = "aligned+5"
    """HS ceiling on the calibration split: aligned+N | finetuned*F | N (percent)"""


@dataclass(frozen=True)
class AblateConfig:
    seeds: tuple[int, ...] = checked((0, 1, 2), nonempty=True, what="seed")
    """Bernoulli seeds of each ablation (mean ± sd)"""


@dataclass(frozen=True)
class AnalyzeConfig:
    sparsities: tuple[float, ...] = checked((0.2, 0.35, 0.5, 0.8), low=0, high=1, high_open=True, nonempty=True,
                                            what="P_SR", label="P_SR")
    """P_SR values of Fig. 3's curves (broken modules vs τ) and of Table 4 / Fig. 6 (with and without β; the
    pipeline's own P_SR is always added there)"""
    taus: tuple[float, ...] = checked((0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), low=-1, high=1, nonempty=True,
                                      what="τ", label="τ")
    """region-similarity thresholds τ of Fig. 3 (a module is broken when S_j < τ)"""
    identifiers: tuple[str, ...] = checked(("lowrank", "wanda", "snip", "random"), nonempty=True,
                                           choices=("lowrank", "wanda", "snip", "preference-snip", "random"),
                                           what="identification method")
    """identification methods Fig. 4 compares pairwise (random: the chance level of the comparison)"""
    layer_prunes: tuple[float, ...] = checked((0.0, 0.25, 0.5, 0.75), low=0, high=1, nonempty=True, what="P_L",
                                              label="P_L")
    """P_L values of Fig. 4(a) (similarity of the patched-module sets)"""
    overlap_sparsity: float = checked(0.7, low=0, high=1, high_open=True, label="P_SR")
    """P_SR of Fig. 4(a) and 4(b) (the paper's 0.7)"""
    overlap_layer_prune: float = checked(0.5, low=0, high=1, label="P_L")
    """P_L of Fig. 4(b) (the paper's 0.5): the patched modules whose neuron overlap is measured"""
    betas: tuple[float, ...] = checked((0.0, 0.3, 0.6, 0.9, 1.2), low=0, nonempty=True, what="β", label="β")
    """amplification β values of Fig. 5, each reference We(β) scored by itself"""
    preamplification_layer_prunes: tuple[float, ...] = checked((0.5,), low=0, high=1, what="P_L", label="P_L")
    """P_L values of Table 4 / Fig. 6 besides the pipeline's own (the paper's 0.5): NLSR with β and with β = 0"""


@dataclass(frozen=True)
class FinetuneSeedsConfig:
    seeds: tuple[int, ...] = checked((1, 2), nonempty=True, what="fine-tuning seed besides the pipeline's")
    """fine-tuning seeds besides the pipeline's: each draws its own poisoned mix and data order (mean ± sd)"""


@dataclass(frozen=True)
class JudgeConfig:
    name: str = checked("refusal-keywords", choices=("refusal-keywords", "beaver-dam", "llama-guard"))
    """refusal-keywords | beaver-dam | llama-guard"""
    model: str | None = None
    """judge model id or directory (model-backed judges)"""
    max_new_tokens: int = checked(48, low=1, integer=True)
    """harmful-answer budget for a model judge, which reads the whole answer"""
    opening_tokens: int = checked(24, low=1, integer=True)
    """budget of harmful answers for the keyword judge and of benign answers (over-refusal)"""
    label_tokens: int = checked(48, low=1, integer=True)
    """budget of generated sst2/agnews answers"""
    gsm8k_tokens: int = checked(256, low=1, integer=True)
    """budget of generated GSM8K answers"""
    fa_mode: str = checked("score", choices=("score", "generate"))
    """score (rank the label strings; sst2, agnews) | generate"""
    batch_size: int = checked(64, low=1, integer=True)
    """answering batch size (64: 1.28x faster than 16 with identical answers, benchmarks/bench_batch.py)"""


# params.yaml section -> its dataclass, in the file's order.
SECTIONS = {
    "model": ModelConfig, "data": DataConfig, "grid": GridConfig, "lora": LoraConfig, "launch": LaunchConfig,
    "align": AlignConfig, "finetune": FinetuneConfig, "amplify": AmplifyConfig, "nlsr": NlsrConfig,
    "identify": IdentifyConfig, "realign": RealignConfig, "safelora": SafeloraConfig, "study": StudyConfig,
    "frontier": FrontierConfig, "calibrate": CalibrateConfig, "ablate": AblateConfig,
    "analyze": AnalyzeConfig, "finetune_seeds": FinetuneSeedsConfig, "judge": JudgeConfig,
}


@functools.cache
def field_help(cls) -> dict[str, str]:
    """{field: its attribute docstring} of a config dataclass (the string literal right below the field)."""
    tree = ast.parse(inspect.getsource(cls)).body[0]
    helps, last = {}, None
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            last = node.target.id
        elif last and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            helps[last] = " ".join(str(node.value.value).split())
            last = None
        else:
            last = None
    return helps


def default(section: str, name: str):
    """The default of `section.name` (e.g. default("realign", "layer_prune") -> 0.0)."""
    return config_field(SECTIONS[section], name, section).default


def config_field(cls, name: str, where: str) -> dataclasses.Field:
    """The field `name` of config dataclass `cls`; an unknown name is a one-line error naming `where.name`."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise NlsrError(f"{where}.{name}: unknown key; expected one of {', '.join(f.name for f in dataclasses.fields(cls))}")

"""Training-free repairs of a fine-tuned adapter other than NLSR itself: SafeLoRA (`safelora`), the controls NLSR
is compared with (`baselines`: random masks, interpolation toward the reference or the aligned adapter,
safety-vector addition) and published repairs in LoRA-only form (`safemerge`, `antidote` (data-free), `dg_hard`).
NLSR's own transplant is `nlsr_core.method.realign`; `registry` lists them all. Reads `nlsr_core.method` and below.
"""

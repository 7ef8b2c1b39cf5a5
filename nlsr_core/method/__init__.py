"""The paper's method, equations 1-11: pre-amplification of the aligned adapter (eqs. 1-2, `amplify`), the
top-k presets and r* (eq. 5, `presets`), safety-critical neuron identification (eqs. 3-6, `identification`,
`neurons`, `neurons_stats`, `neuron_keys`) and the module similarity and neuron transplant (eqs. 7-11, `realign`).
Reads `nlsr_core.lora`, `nlsr_core.data` and `nlsr_core.io`.
"""

"""LoRA adapters and the model stack they sit on: load/save/check adapters, the model registry, the stack
M' = M + W0 with an adapter on top (one placement point for device and dtype), and decoding (generation and the
batched log-likelihood both scorers use). Reads `nlsr_core.io` and the prompt templates of `nlsr_core.data`.
"""

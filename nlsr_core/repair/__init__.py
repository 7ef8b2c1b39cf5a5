"""Training-free repairs of a fine-tuned adapter other than NLSR itself: SafeLoRA (`safelora`) and the
controls NLSR is compared with (`baselines`: random masks, interpolation toward the reference, safety-vector
addition). NLSR's own transplant is `nlsr_core.method.realign`. Reads `nlsr_core.method` and below.
"""

"""Evaluation: the harmfulness judges (`judges`: refusal keywords, beaver-dam, Llama-Guard), the task
scorers, the answer cache, the evaluation of a cell's variants (`evaluate`), label scoring, the judge-free score,
coherence, the rate statistics (Wilson intervals, bootstrap) and how a rate is written (`formatting`). Reads
`nlsr_core.lora`, `nlsr_core.data` and below; never training.
"""

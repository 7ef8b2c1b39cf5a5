"""Training: the aligners (SFT, DPO, ORPO, KTO, SimPO through TRL, `trainers`), their data (`train_data`),
the alignment of W0 + Wa (`align`, with on-policy rejected answers from `on_policy`), the poisoned fine-tune Wt
(`finetune`) and the alignment recipes (`recipes`). Reads `nlsr_core.lora`, `nlsr_core.data` and below; nothing
here imports evaluation, the study or the reports.
"""

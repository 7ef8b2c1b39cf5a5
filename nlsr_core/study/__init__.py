"""The study around the method: operating points of every repair (`points`, `scoring`), the method
comparison at matched task accuracy (`comparison`), replicates over fine-tuning seeds (`finetune_seeds`) and the
alignment recipe study (`recipe_study`). Reads every layer below; only `nlsr_core.report` reads it.
"""

"""Reports: the results table, metrics and plots (`results`, `plots`), the frontier, calibration and
ablation pages (`study_report`) and the alignment page (`alignment_report`). The top layer: it reads the study's
documents and nothing imports it but the stage commands.
"""

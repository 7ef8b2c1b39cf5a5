"""Files, provenance and run records: the layer every other one writes through (docs/DESIGN.md §3).

`fileio` reads and writes JSON/JSONL/YAML; `outputs` and `locks` make each write all-or-nothing with one writer
per output (claim, lock, replace, recover); `lineage` records what an artifact was made from; `batch_record` keeps
the progress of a run that writes several outputs; `tracking` mirrors a stage run to MLflow; `progress` draws the
bars and quiets the libraries'. Imports only the ground floor (`nlsr_core.errors`, `nlsr_core.config`).
"""

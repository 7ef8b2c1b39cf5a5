"""The typed inputs of one study cell: what `frontier`, `calibrate`, `ablate` and `finetune-seeds` read.

The study commands parse their options into one `CellInputs` (stages/cell_options.py); nlsr_core.study.scoring
and nlsr_core.study.finetune_seeds take it. Nothing crosses the CLI/library boundary as an untyped dict.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlsr_core.study.points import Point


@dataclass(frozen=True)
class ModelPass:
    """How the study passes a prompt + answer file through the model for statistics (identify.batch_size,
    identify.max_length): ablate's identification passes, and Antidote's realignment norms of each Wt over
    `CellInputs.realign_data`."""

    batch_size: int
    max_length: int


@dataclass(frozen=True)
class CellInputs:
    """One cell `<task>-p<ratio>-<method>`: its adapters Wt, Wa, We and the identification statistics of We, the
    prepared data and the answer cache, and how its points are answered and judged (the judge stage's settings).

    `realign_data` and `model_pass` make the `realignment` set whose pass gives the realignment norms of Wt that
    Antidote's Wanda score reads (nlsr_core.repair.antidote.RealignmentSet), computed only when a point needs them.

    `pipeline` is the pipeline's own realign setting (identify.sparsity, realign.*, nlsr.preset, amplify.beta); its
    identification method is the one recorded in `stats` (nlsr_core.study.scoring.builder sets it)."""

    cell: str
    finetuned: Path
    aligned: Path
    reference: Path
    stats: Path
    data_dir: Path
    cache_dir: Path | None          # answer + verdict cache (nlsr_core.eval.cache); None = no cache
    model_name: str
    model_seed: int
    judge_name: str
    judge_model: str | None
    template: str
    pipeline: Point
    answering: Any                  # nlsr_core.eval.settings.EvalSettings: budgets, batch size, FA mode
    compute: Any = None             # nlsr_core.compute.Compute: where the stacks run (None: the model's default)
    realign_data: Path | None = None    # harmful prompts with harmful answers (Antidote's realignment set)
    model_pass: ModelPass | None = None  # batch size and length of the statistics passes

    @property
    def realignment(self):
        """The cell's nlsr_core.repair.antidote.RealignmentSet (realign_data passed in model_pass's batches with the
        cell's template), or None without a realignment set."""
        from nlsr_core.repair.antidote import RealignmentSet

        if self.realign_data is None or self.model_pass is None:
            return None
        return RealignmentSet(Path(self.realign_data), self.model_pass.batch_size, self.model_pass.max_length,
                              self.template)

    @property
    def task(self) -> str:
        from nlsr_core.eval.evaluate import parse_cell

        return parse_cell(self.cell).task

    def with_finetuned(self, path: Path) -> CellInputs:
        """The same cell around another fine-tuned adapter (a fine-tuning replicate)."""
        return dataclasses.replace(self, finetuned=Path(path))

    def adapter_records(self) -> list[dict]:
        """Lineage input records (path, digest) of the cell's four inputs."""
        from nlsr_core.io.lineage import input_record

        return [input_record(Path(getattr(self, r)), r) for r in ("finetuned", "aligned", "reference", "stats")]

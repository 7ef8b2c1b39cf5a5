"""Pipeline overheads, measured side by side in one run (issue: the pipeline end to end).

Prints: `nlsr --help` wall time against `python -c "import torch, transformers"` (target ratio <= 1/5), and the
wall time of a no-op `dvc repro` in this repository (run after a full `dvc repro`, so nothing is stale).

    python benchmarks/bench_pipeline.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def wall(cmd: list[str], repeats: int) -> float:
    """Median wall seconds of `cmd` over `repeats` runs (after one warm-up run)."""
    subprocess.run(cmd, capture_output=True, check=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    help_s = wall([str(BIN / "nlsr"), "--help"], args.repeats)
    heavy_s = wall([sys.executable, "-c", "import torch, transformers"], args.repeats)
    print(f"nlsr --help:                        {help_s:.3f} s (median of {args.repeats})")
    print(f"python -c 'import torch, transformers': {heavy_s:.3f} s")
    print(f"ratio help / heavy imports:         {help_s / heavy_s:.3f} (target <= 0.2)")
    status = subprocess.run([str(BIN / "dvc"), "status", "--json"], capture_output=True, text=True)
    if status.returncode == 0 and status.stdout.strip() in ("{}", ""):
        noop_s = wall([str(BIN / "dvc"), "repro"], max(1, args.repeats // 2))
        print(f"no-op dvc repro:                    {noop_s:.2f} s")
    else:
        print("no-op dvc repro: skipped (the pipeline is not up to date here; run `make repro` first)")


if __name__ == "__main__":
    main()

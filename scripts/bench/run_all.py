"""Run every benchmark in scripts/bench/ and write one summary: `make bench`.

Run: python scripts/bench/run_all.py [--out bench-results/<UTC date>]

Runs, one after another so they do not compete for the CPU: framework overhead (overhead.py), compute
efficiency (compute_efficiency.py), time to 90% val top-1 of the default run (time_to_accuracy.py), the
data pipeline (data_pipeline.py) and convnetlab beside timm on the same work (peers.py). Each writes its own table to <out>/<name>.txt and, where it has
one, its JSON; <out>/summary.md holds the headline numbers with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
BENCHES = [  # (name, script, extra args, writes JSON)
    ("overhead", "overhead.py", [], True),
    ("compute_efficiency", "compute_efficiency.py", [], True),
    ("time_to_accuracy", "time_to_accuracy.py", [], True),
    ("data_pipeline", "data_pipeline.py", [], False),
    ("peers", "peers.py", [], True),
]


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")


def summary(out: Path) -> str:
    overhead = json.loads((out / "overhead.json").read_text())
    compute = json.loads((out / "compute_efficiency.json").read_text())
    tta = json.loads((out / "time_to_accuracy.json").read_text())
    lines = [f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {machine()}.", "",
             "| benchmark | result |", "|---|---|"]
    for r in overhead:
        lines.append(f"| overhead, {r['workload']} ({r['steps']} steps) | framework / plain loop throughput "
                     f"{r['ratio']:.3f} (range {r['ratio_min']:.3f}-{r['ratio_max']:.3f}, median of {r['reps']}) |")
        lines.append(f"| W&B logging, {r['workload']} | CSV + W&B / CSV-only throughput {r['logging_ratio']:.3f} "
                     f"(range {r['logging_ratio_min']:.3f}-{r['logging_ratio_max']:.3f}) |")
    lines.append(f"| matmul peak (float32) | {compute['peak_gflops']:.0f} GFLOP/s |")
    for r in compute["rows"]:
        lines.append(f"| training compute, {r['model']} | {max(r['nchw_gflops'], r['channels_last_gflops']):.0f} GFLOP/s "
                     f"= {r['efficiency']:.0%} of peak; channels-last {r['channels_last_speedup']:.2f}x, "
                     f"auto picks {'channels-last' if r['auto_channels_last'] else 'NCHW'} |")
    seconds = tta["median_seconds"]
    lines.append(f"| time to {tta['target']:.0%} val top-1, default run | "
                 + (f"{seconds:.0f} s (median of {len(tta['runs'])}) |" if seconds else "not reached |"))
    for r in json.loads((out / "peers.json").read_text())["rows"]:
        lines.append(f"| peers, {r['run']} | {r['img_s']:.1f} train img/s, {r['ratio']:.2f}x convnetlab defaults "
                     f"(range {r['ratio_min']:.2f}-{r['ratio_max']:.2f}) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results") / f"{dt.datetime.now(dt.UTC):%Y-%m-%d}")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, script, extra, writes_json in BENCHES:
        print(f"== {name}", flush=True)
        cmd = [sys.executable, str(HERE / script), *extra, *(["--json", str(args.out / f"{name}.json")] if writes_json else [])]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        (args.out / f"{name}.txt").write_text(proc.stdout + proc.stderr)
        print(proc.stdout, flush=True)
        if proc.returncode != 0:
            sys.exit(f"error: {script} failed (exit {proc.returncode}); its output is in {args.out / f'{name}.txt'}")
    text = summary(args.out)
    (args.out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""Framework overhead: `convnetlab-train` vs a plain PyTorch loop on the same work.

Run: python scripts/bench/overhead.py [--reps 5] [--workloads resnet18_shapes lenet5_digits]

Each repetition runs both, alternating which goes first, in fresh processes: `convnetlab-train` with its
default callbacks, progress output, CSV + W&B (offline) logging and epoch-end checkpointing, timed by
`bench_timer.TrainLoopTimer` from the first batch fetch to the end of training; and `plain_loop.py` on the
same composed config, timed over the same span; and the framework once more logging to CSV only
(`logger=[csv]`), which prices W&B. Validation is off in all (training throughput is what is compared).
Prints training images/s of each, the ratio framework / plain (1.00 = no overhead) and framework /
framework with CSV only (1.00 = W&B logging is free), medians over the repetitions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

WORKLOADS = {
    # compute-bound: the default README run's model and data (ResNet-18 w0.25, shapes 32 px, batch 64)
    "resnet18_shapes": ["trainer.max_epochs=2"],
    # overhead-bound: LeNet-5 on digits (batch 128), a step takes a few milliseconds
    "lenet5_digits": ["model=lenet5", "data=digits", "trainer.max_epochs=20"],
}
# callbacks=default: the default run's weight average is recipe (extra work), which the plain loop does not do
FRAMEWORK_ONLY = ["trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0", "test=false", "logger=[csv,wandb]",
                  "callbacks=default"]


def bench_env() -> dict[str, str]:
    """No W&B credentials (offline runs), quiet warnings, and bench_timer importable by the runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", PYTHONWARNINGS="ignore",
               PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")])))
    return env


def run_framework(overrides: list[str], work: Path, tag: str) -> dict:
    out, run_dir = work / f"{tag}.json", work / tag
    cmd = [sys.executable, "-m", "convnetlab.cli.train", *overrides, *FRAMEWORK_ONLY,
           "+callbacks.bench_timer._target_=bench_timer.TrainLoopTimer", f"+callbacks.bench_timer.out={out}",
           f"hydra.run.dir={run_dir}"]
    subprocess.run(cmd, check=True, env=bench_env(), capture_output=True, text=True, cwd=work)
    return json.loads(out.read_text())


def run_framework_csv_only(overrides: list[str], work: Path, tag: str) -> dict:
    """The framework logging to CSV only (`logger=[csv]`; the CSV is always written): prices W&B."""
    return run_framework([*overrides, "logger=[csv]"], work, tag)


def run_plain(overrides: list[str], work: Path, tag: str) -> dict:
    out = work / f"{tag}.json"
    cmd = [sys.executable, str(HERE / "plain_loop.py"), str(out), str(work / tag), *overrides]
    subprocess.run(cmd, check=True, env=bench_env(), capture_output=True, text=True, cwd=work)
    return json.loads(out.read_text())


def images_per_second(result: dict) -> float:
    return result["images"] / result["seconds"]


def measure(name: str, overrides: list[str], reps: int, work: Path) -> dict:
    """Each repetition runs the framework (CSV + W&B logging), the framework with CSV only and the plain
    loop, in an order that rotates; ratios are taken within a repetition, then the median."""
    runners = {"framework": run_framework, "csv_only": run_framework_csv_only, "plain": run_plain}
    speeds: dict[str, list[float]] = {kind: [] for kind in runners}
    ratios, logging_ratios = [], []
    for rep in range(reps + 1):  # repetition 0 warms caches (dataset generation, file system) and is dropped
        kinds = list(runners)
        order = kinds[rep % 3:] + kinds[:rep % 3]
        results = {kind: runners[kind](overrides, work, f"{name}-{kind}-{rep}") for kind in order}
        if len({r["images"] for r in results.values()}) != 1:
            raise RuntimeError(f"{name}: the runs trained different image counts "
                               f"{ {k: r['images'] for k, r in results.items()} }; the workloads differ")
        if rep == 0:
            continue
        for kind in speeds:
            speeds[kind].append(images_per_second(results[kind]))
        ratios.append(speeds["framework"][-1] / speeds["plain"][-1])
        logging_ratios.append(speeds["framework"][-1] / speeds["csv_only"][-1])
    return {"workload": name, "images": results["plain"]["images"], "steps": results["plain"]["steps"],
            "framework_img_s": statistics.median(speeds["framework"]), "plain_img_s": statistics.median(speeds["plain"]),
            "csv_only_img_s": statistics.median(speeds["csv_only"]),
            "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "logging_ratio": statistics.median(logging_ratios), "logging_ratio_min": min(logging_ratios),
            "logging_ratio_max": max(logging_ratios), "reps": reps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="convnetlab-overhead-") as tmp:
        work = Path(tmp)
        data = [f"paths.data_dir={work / 'data'}"]
        rows = [measure(name, WORKLOADS[name] + data, args.reps, work) for name in args.workloads]
    print("| workload | steps | framework img/s | plain loop img/s | ratio (median) | range | CSV-only img/s "
          "| CSV + W&B / CSV only | range |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workload']} | {r['steps']} | {r['framework_img_s']:.0f} | {r['plain_img_s']:.0f} | "
              f"{r['ratio']:.3f} | {r['ratio_min']:.3f}-{r['ratio_max']:.3f} | {r['csv_only_img_s']:.0f} | "
              f"{r['logging_ratio']:.3f} | {r['logging_ratio_min']:.3f}-{r['logging_ratio_max']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

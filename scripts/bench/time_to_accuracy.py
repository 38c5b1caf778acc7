"""Time to accuracy of the default README run: wall seconds from the start of fit until val top-1 first
reaches the target (90% by default), so later changes to the framework or the defaults can be compared.

Run: python scripts/bench/time_to_accuracy.py [--reps 2] [--target 0.9] [--json FILE] [overrides...]

Each repetition is `convnetlab-train` exactly as `make run` starts it (plus any overrides), with a
benchmark callback recording the time at the end of every validation; validation time counts. Prints
per repetition the first epoch at or above the target, its time, and the final val top-1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from overhead import bench_env


def one_run(work: Path, tag: str, overrides: list[str]) -> list[dict]:
    out = work / f"{tag}.json"
    cmd = [sys.executable, "-m", "convnetlab.cli.train", *overrides, "test=false",
           "+callbacks.val_clock._target_=bench_timer.ValAccuracyClock", f"+callbacks.val_clock.out={out}",
           f"hydra.run.dir={work / tag}"]
    subprocess.run(cmd, check=True, env=bench_env(), capture_output=True, text=True, cwd=work)
    return json.loads(out.read_text())


def first_at(points: list[dict], target: float) -> dict | None:
    return next((p for p in points if p["val/acc1"] >= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("overrides", nargs="*", help="convnetlab-train overrides (default: none, the README run)")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="convnetlab-tta-") as tmp:
        work = Path(tmp)
        for rep in range(args.reps):
            points = one_run(work, f"run{rep}", [f"paths.data_dir={work / 'data'}", *args.overrides])
            hit = first_at(points, args.target)
            runs.append({"points": points, "epoch": hit and hit["epoch"], "seconds": hit and hit["seconds"],
                         "final_val_acc1": points[-1]["val/acc1"], "total_seconds": points[-1]["seconds"]})
            reached = f"epoch {hit['epoch']} after {hit['seconds']:.1f} s" if hit else "never"
            print(f"run {rep + 1}: val top-1 >= {args.target:.0%} at {reached}; final {points[-1]['val/acc1']:.1%} "
                  f"after {points[-1]['seconds']:.1f} s")
    hits = [r["seconds"] for r in runs if r["seconds"] is not None]
    median = statistics.median(hits) if len(hits) == len(runs) else None
    print(f"time to {args.target:.0%} val top-1: " + (f"{median:.1f} s (median of {len(runs)})" if median else "not reached in every run"))
    if args.json:
        Path(args.json).write_text(json.dumps({"target": args.target, "median_seconds": median, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()

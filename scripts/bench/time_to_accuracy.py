"""Time to accuracy of the default README run: wall seconds from the start of fit until val top-1 first
reaches the target (90% by default), so later changes to the framework or the defaults can be compared.

Run: python scripts/bench/time_to_accuracy.py [--reps 2] [--target 0.9] [--json FILE]
         [--baseline "override ..."] [overrides...]

Each repetition is `convnetlab-train` exactly as `make run` starts it (plus any overrides), with a
benchmark callback recording the time at the end of every validation; validation time counts. Prints
per repetition the first epoch at or above the target, its time, and the final val top-1.
`--baseline` also runs the default with those overrides (e.g. an earlier recipe) in the same
repetitions, alternating which goes first, and prints the ratio of the two times to the target.
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
    parser.add_argument("--baseline", help="overrides of a run to compare with, in one string")
    parser.add_argument("overrides", nargs="*", help="convnetlab-train overrides (default: none, the README run)")
    args = parser.parse_args()
    variants = {"run": args.overrides}
    if args.baseline is not None:
        variants["baseline"] = args.baseline.split()
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="convnetlab-tta-") as tmp:
        work = Path(tmp)
        for rep in range(args.reps):
            for name in (list(variants) if rep % 2 == 0 else list(variants)[::-1]):
                points = one_run(work, f"{name}{rep}", [f"paths.data_dir={work / 'data'}", *variants[name]])
                hit = first_at(points, args.target)
                runs[name].append({"points": points, "epoch": hit and hit["epoch"], "seconds": hit and hit["seconds"],
                                   "final_val_acc1": points[-1]["val/acc1"], "total_seconds": points[-1]["seconds"]})
                reached = f"epoch {hit['epoch']} after {hit['seconds']:.1f} s" if hit else "never"
                print(f"{name} {rep + 1}: val top-1 >= {args.target:.0%} at {reached}; final "
                      f"{points[-1]['val/acc1']:.1%} after {points[-1]['seconds']:.1f} s", flush=True)
    medians = {name: median_seconds(runs[name]) for name in variants}
    print(f"time to {args.target:.0%} val top-1: " + (f"{medians['run']:.1f} s (median of {args.reps})"
                                                      if medians["run"] else "not reached in every run"))
    result = {"target": args.target, "median_seconds": medians["run"], "runs": runs["run"]}
    if args.baseline is not None:
        pairs = [b["seconds"] / r["seconds"] for r, b in zip(runs["run"], runs["baseline"], strict=True)
                 if r["seconds"] and b["seconds"]]
        speedup = statistics.median(pairs) if len(pairs) == args.reps else None
        print(f"baseline ({args.baseline}): " + (f"{medians['baseline']:.1f} s" if medians["baseline"] else "not reached")
              + (f"; speed-up baseline / run {speedup:.2f}x (median of per-repetition ratios, range "
                 f"{min(pairs):.2f}-{max(pairs):.2f})" if speedup else ""))
        result.update(baseline=args.baseline, baseline_median_seconds=medians["baseline"], baseline_runs=runs["baseline"],
                      speedup=speedup)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


def median_seconds(runs: list[dict]) -> float | None:
    hits = [r["seconds"] for r in runs if r["seconds"] is not None]
    return statistics.median(hits) if hits and len(hits) == len(runs) else None


if __name__ == "__main__":
    main()

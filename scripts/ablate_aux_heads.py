"""Ablation: a deep plain CNN (VGG-19, no BN, no skips) trained with and without auxiliary heads.

Run: python scripts/ablate_aux_heads.py [extra Hydra overrides]
Both runs use `experiment=vgg19_plain_aux` with the same data, seed and budget; the baseline removes
the heads (`~callbacks.aux_heads`). Prints a Markdown table: val/test top-1 and the mean gradient norm
of the first, a middle and the last conv layer (from train/grad_norm/* in metrics.csv), plus the run
dirs holding each gradient_flow.png.
"""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = ["experiment=vgg19_plain_aux", "logger=csv", "data.num_classes=10", "data.per_class_train=200",
        "data.per_class_val=50", "data.per_class_test=50"]
RUNS = {"no heads": ["~callbacks.aux_heads"], "aux heads (features.9, features.18; 0.3 each)": []}
LAYERS = ("features.0", "features.19", "features.34")  # first conv, first conv of stage 4, last conv


def grad_norms(run_dir: Path) -> dict[str, float]:
    """Mean logged gradient norm of each layer in LAYERS over the run."""
    values: dict[str, list[float]] = {layer: [] for layer in LAYERS}
    with open(run_dir / "metrics.csv") as f:
        for row in csv.DictReader(f):
            for layer in LAYERS:
                value = row.get(f"train/grad_norm/{layer}")
                if value:
                    values[layer].append(float(value))
    return {layer: statistics.fmean(v) if v else float("nan") for layer, v in values.items()}


def main(extra: list[str]) -> None:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = []
    for label, overrides in RUNS.items():
        run_dir = ROOT / "outputs" / "ablate_aux_heads" / stamp / ("heads" if not overrides else "plain")
        cmd = [sys.executable, "-m", "convnetlab.cli.train", *BASE, *overrides, *extra, f"hydra.run.dir={run_dir}"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        rows.append((label, metrics, grad_norms(run_dir), run_dir))
    print("\n| run | val top-1 | test top-1 | " + " | ".join(f"grad norm {layer}" for layer in LAYERS) + " | heads' val top-1 |")
    print("|---|---|---|" + "---|" * len(LAYERS) + "---|")
    for label, m, norms, _ in rows:
        cells = " | ".join(f"{norms[layer]:.2e}" for layer in LAYERS)
        aux = ", ".join(f"{k.split('/')[-1]} {v:.1%}" for k, v in m.items() if k.startswith("val/aux_acc1/")) or "-"
        print(f"| {label} | {m['val/acc1']:.1%} | {m['test/acc1']:.1%} | {cells} | {aux} |")
    for label, _, _, run_dir in rows:
        print(f"{label}: {run_dir / 'gradient_flow.png'}")


if __name__ == "__main__":
    main(sys.argv[1:])

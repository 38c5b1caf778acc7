"""Transfer experiment: from scratch vs feature extraction vs phased fine-tuning, at few and many labels.

Run (everything is generated locally, nothing is downloaded):

    python scripts/transfer_experiment.py [--out DIR] [extra Hydra overrides]

``--out DIR`` reuses the finished steps of an earlier (interrupted) run in DIR; ``--labels 5,20`` and
``--seeds 0`` run a subset (the test does, with a few batches per epoch).

1. Pretrain the CPU-sized ResNet-18 on 8 shapes (experiment=transfer_pretrain).
2. Embed the 8 other shapes with it (convnetlab-embed): linear-probe / k-NN accuracy of the frozen features.
3. On those 8 other shapes, with 5, 20 and all (100) labelled images per class, train each method over
   seeds 0, 1, 2: experiment=transfer_scratch / transfer_features / transfer_finetune (one Hydra multirun
   per label count). The labelled images are the first N of each class for every seed; seeds change
   initialisation, augmentation and batch order.
4. Write transfer_results.md / .csv (test top-1, mean +- std over seeds) into the output dir and print them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from convnetlab.analysis.embeddings import knn_accuracy, linear_probe_accuracy
from convnetlab.analysis.findings import load_jobs
from convnetlab.data.embeddings import load_embeddings

ROOT = Path(__file__).resolve().parents[1]
LABELS = {5: 8, 20: 16, 100: 32}  # labelled images per class -> batch size (a few steps per epoch each)
SEEDS = (0, 1, 2)
METHODS = {"transfer_scratch": "from scratch", "transfer_features": "feature extraction",
           "transfer_finetune": "phased fine-tuning"}
# One intra-op thread per run unless OMP_NUM_THREADS says otherwise: these runs are small (batches of 8-32
# images at 32 px), and on a shared machine OpenMP threads spinning against other processes make every
# step many times slower than one thread does.
ENV = {"OMP_NUM_THREADS": "1", **os.environ}
# The data of experiment=transfer_scratch, for convnetlab-embed (which takes no experiment).
TARGET = ["data=shapes", "data.num_classes=8", "data.class_offset=8", "data.per_class_val=20", "data.per_class_test=100"]


def convnetlab(command: str, *overrides: str, done: Path, multirun: bool = False) -> None:
    """Run a convnetlab CLI unless ``done`` exists (a rerun with --out continues an interrupted experiment)."""
    if done.exists():
        print(f"(reusing {done.parent})", flush=True)
        return
    flags = ["-m"] if multirun else []
    cmd = [sys.executable, "-m", f"convnetlab.cli.{command}", *flags, *overrides]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, env=ENV)
    done.touch()  # a sweep has no file of its own that marks it complete


def job_results(sweep_dir: Path) -> list[tuple[str, int, float]]:
    """(experiment, seed, test top-1) of every job of a multirun."""
    return [(job.overrides["experiment"], int(job.overrides["seed"]), job.metrics["test/acc1"])
            for job in load_jobs(sweep_dir)]


def probe_results(embed_dir: Path, label_counts: list[int]) -> dict[str, dict[int, float]]:
    """Linear probe and k-NN test top-1 on the frozen source embeddings, with the first N labels per class."""
    train, test = (load_embeddings(embed_dir / f"embeddings_{split}.npz") for split in ("train", "test"))
    labels = train["labels"]
    results: dict[str, dict[int, float]] = {"linear probe (frozen embeddings)": {}, "5-NN (frozen embeddings)": {}}
    for n in label_counts:
        keep = np.concatenate([np.flatnonzero(labels == c)[:n] for c in np.unique(labels)])
        x, y = train["features"][keep], labels[keep]
        results["linear probe (frozen embeddings)"][n] = linear_probe_accuracy(x, y, test["features"], test["labels"])
        results["5-NN (frozen embeddings)"][n] = knn_accuracy(x, y, test["features"], test["labels"], k=5)
    return results


def write_tables(rows: list[tuple[str, int, int, float]], probes: dict[str, dict[int, float]], out: Path,
                 label_counts: list[int]) -> str:
    """Markdown (mean +- std in %) and CSV (one line per run) tables; returns the Markdown."""
    with open(out / "transfer_results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "labels_per_class", "seed", "test_acc1"])
        writer.writerows([(METHODS[e], n, seed, f"{acc:.4f}") for e, n, seed, acc in rows])
        writer.writerows([(name, n, "", f"{acc:.4f}") for name, accs in probes.items() for n, acc in accs.items()])
    header = "| test top-1 (8 new shapes) | " + " | ".join(
        f"{n if n != max(LABELS) else f'all ({n})'} labels/class" for n in label_counts) + " |"
    lines = [header, "|---|" + "---|" * len(label_counts)]
    for experiment, name in METHODS.items():
        cells = []
        for n in label_counts:
            accs = [acc for e, m, _, acc in rows if e == experiment and m == n]
            std = statistics.stdev(accs) if len(accs) > 1 else 0.0
            cells.append(f"{statistics.mean(accs):.1%} +- {std:.1%}" if accs else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, accs in probes.items():
        lines.append(f"| {name} | " + " | ".join(f"{accs[n]:.1%}" for n in label_counts) + " |")
    markdown = "\n".join(lines) + "\n"
    (out / "transfer_results.md").write_text(markdown)
    return markdown


def parse(args: list[str]) -> tuple[Path, dict[int, int], tuple[int, ...], list[str]]:
    """--out DIR, --labels N[,N], --seeds S[,S]; everything else is a Hydra override for every run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "transfer_experiment" / time.strftime("%Y%m%d-%H%M%S"))
    parser.add_argument("--labels", default=",".join(map(str, LABELS)))
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    known, extra = parser.parse_known_args(args)
    unknown = [n for n in known.labels.split(",") if not n.isdigit() or int(n) not in LABELS]
    if unknown:
        parser.error(f"--labels {unknown[0]}: choose from {','.join(map(str, LABELS))}")
    labels = {int(n): LABELS[int(n)] for n in known.labels.split(",")}
    return known.out.resolve(), labels, tuple(int(s) for s in known.seeds.split(",")), extra


def main(args: list[str]) -> None:
    start = time.time()
    out, labels, seeds, extra = parse(args)
    convnetlab("train", "experiment=transfer_pretrain", "logger=csv", *extra, f"hydra.run.dir={out / 'pretrain'}",
               done=out / "pretrain" / "metrics.json")
    source = json.loads((out / "pretrain" / "metrics.json").read_text())
    convnetlab("embed", f"ckpt_path={source['ckpt_best']}", *TARGET, f"data.per_class_train={max(LABELS)}",
               f"hydra.run.dir={out / 'embed'}", done=out / "embed" / "metrics.json")
    rows = []
    for n, batch_size in labels.items():
        sweep = out / f"labels{n}"
        convnetlab("train", f"experiment={','.join(METHODS)}", f"seed={','.join(map(str, seeds))}", "logger=csv",
                   f"++source_ckpt={source['ckpt_best']}", f"data.per_class_train={n}", f"data.batch_size={batch_size}",
                   *extra, f"hydra.sweep.dir={sweep}", done=sweep / "complete", multirun=True)
        rows += [(experiment, n, seed, acc) for experiment, seed, acc in job_results(sweep)]
    markdown = write_tables(rows, probe_results(out / "embed", list(labels)), out, list(labels))
    minutes = (time.time() - start) / 60
    print(f"\nsource task (8 shapes) test top-1: {source['test/acc1']:.1%}\n\n{markdown}\n"
          f"{len(rows)} target runs; the whole experiment took {minutes:.1f} min; results in {out}")


if __name__ == "__main__":
    main(sys.argv[1:])

"""When did CNNs win? Test accuracy against training images per class: classic pipelines vs LeNet-5 and ResNet.

Run (everything is generated locally, nothing is downloaded):

    python scripts/cnn_vs_classic.py [--out DIR] [--datasets digits,shapes] [--sizes 5,20,100,all]
                                     [--seeds 0,1,2] [--jobs 2] [extra Hydra overrides]

For every dataset and size N (images per class; ``all``: the whole train split) it runs, with the same
``data=<dataset> data.train_per_class=N`` and seeds, so both sides train on the same images:

1. ``convnetlab-baseline -m method=hog_svm,hog_rf,pixels_rf,pixels_svm seed=...``;
2. ``convnetlab-train -m model=lenet5,resnet18_cpu seed=...``, epochs from :func:`epochs_for` (a fixed
   budget of images seen, so 5 images per class still get enough steps), validating about
   ``VALIDATIONS`` times per run; the best checkpoint on val is tested.

Sizes that share their seeds (and, for the CNNs, their epochs) run as one Hydra multirun, so a process
starts once per group, not once per size.

Sizes below ``all`` run every seed of ``--seeds``; ``all`` runs the first seed only (the subset is the
whole split, so seeds only change initialisation and order). ``--jobs 2`` runs the datasets side by side,
one intra-op thread each. Then it writes ``finding.md`` (table, verdict, command, wall time),
``finding.csv`` (one line per run) and ``finding.png`` into the output dir; the verdict
(:mod:`convnetlab.analysis.learning_curves`) says where the best CNN and the best classic pipeline cross.

Extra overrides: ``data.*``/``paths.*`` go to every run, ``hog.*``/``linear_svm.*``/``rbf_svm.*``/``forest.*``
to the baselines only, anything else (``trainer.*``, ``optimizer.*``...) to the CNN runs only.
``--out DIR`` reuses the finished steps of an earlier (interrupted) run in DIR.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from convnetlab.analysis.findings import load_jobs
from convnetlab.analysis.learning_curves import mean_curve, plot_curves, std_curve, verdict

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ("hog_svm", "hog_rf", "pixels_rf", "pixels_svm")
CNNS = ("lenet5", "resnet18_cpu")
SIZES = ("5", "20", "100", "all")
SEEDS = (0, 1, 2)
IMAGES_SEEN = 6000    # CNN budget: epochs so that each run sees about this many training images ...
EPOCHS = (3, 100)     # ... but at least 3 and at most 100 epochs
BATCH = 32            # CNN batch: ~190 steps per run for every size (a 128 batch left 5 epochs of digits at 50 steps)
LR = 3e-3  # AdamW learning rate of the CNN runs (the documented Findings results used it)
VALIDATIONS = 5       # validate about this often per run (val sets are larger than the smallest train sets)
SHARED_KEYS, BASELINE_KEYS = ("data", "paths"), ("hog", "linear_svm", "rbf_svm", "forest")
# One intra-op thread per process: small models on a shared 2-core machine run fastest that way.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
CLAIM = ("Classic pipelines (HOG or pixels + SVM / random forest) beat CNNs when training images are few; "
         "CNNs win once there are enough. Where do the curves cross?")


def epochs_for(train_images: int, images_seen: int = IMAGES_SEEN, epochs: tuple[int, int] = EPOCHS) -> int:
    """Epochs for a CNN run on ``train_images`` images: about ``images_seen`` images, within ``epochs``."""
    return int(min(epochs[1], max(epochs[0], math.ceil(images_seen / max(train_images, 1)))))


def split_overrides(extra: list[str]) -> tuple[list[str], list[str]]:
    """(overrides for baseline runs, overrides for CNN runs) of the extra command-line overrides."""
    def root(o: str) -> str:
        return o.lstrip("+~").split("=", 1)[0].split(".", 1)[0]
    baseline = [o for o in extra if root(o) in SHARED_KEYS + BASELINE_KEYS]
    train = [o for o in extra if root(o) not in BASELINE_KEYS]
    return baseline, train


def run(command: str, *overrides: str, sweep: Path, log: Path) -> None:
    """One Hydra multirun of a convnetlab CLI into ``sweep``, unless an earlier run finished it."""
    done = sweep / "complete"
    if done.exists():
        print(f"(reusing {sweep})", flush=True)
        return
    cmd = [sys.executable, "-m", f"convnetlab.cli.{command}", "-m", *overrides, f"hydra.sweep.dir={sweep}"]
    print("$", " ".join(cmd[2:]), flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as handle:
        proc = subprocess.run(cmd, cwd=ROOT, env=ENV, stdout=handle, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[2:])} failed ({proc.returncode}); see {log}")
    done.touch()


def size_value(size: str) -> str:
    return "null" if size == "all" else size


def seeds_for(size: str, seeds: list[int]) -> list[int]:
    return seeds if size != "all" else seeds[:1]


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def _grouped(keys: dict[str, tuple]) -> dict[tuple, list[str]]:
    """Sizes that share a key (seeds, epochs) run as one multirun: one process start instead of several."""
    groups: dict[tuple, list[str]] = {}
    for size, key in keys.items():
        groups.setdefault(key, []).append(size)
    return groups


def run_dataset(dataset: str, sizes: list[str], seeds: list[int], out: Path, extra: list[str],
                images_seen: int = IMAGES_SEEN, epochs: tuple[int, int] = EPOCHS) -> None:
    """Baselines first (they also report each size's number of training images), then the CNNs."""
    base_extra, train_extra = split_overrides(extra)
    log, root = out / f"{dataset}.log", out / dataset
    for (run_seeds,), group in _grouped({s: (tuple(seeds_for(s, seeds)),) for s in sizes}).items():
        run("baseline", f"method={','.join(BASELINES)}", f"seed={','.join(map(str, run_seeds))}", f"data={dataset}",
            f"data.train_per_class={','.join(map(size_value, group))}", *base_extra,
            sweep=root / f"baselines-seeds{'-'.join(map(str, run_seeds))}", log=log)
    per_class = images_per_class(root)
    given = {_key(o) for o in train_extra}
    fixed = next((o.split("=", 1)[1] for o in train_extra if _key(o) == "trainer.max_epochs"), None)
    keys = {s: (tuple(seeds_for(s, seeds)),
                int(fixed) if fixed else epochs_for(round(per_class[s] * classes(root)), images_seen, epochs))
            for s in sizes}
    for (run_seeds, n_epochs), group in _grouped(keys).items():
        defaults = ["logger=csv", "threads=1", "data.num_workers=0", f"data.batch_size={BATCH}", f"optimizer.lr={LR}",
                    "callbacks=default", "callbacks.step_checkpoint=null",  # the recipe it was measured with
                    f"trainer.max_epochs={n_epochs}",
                    f"++trainer.check_val_every_n_epoch={max(1, n_epochs // VALIDATIONS)}"]
        run("train", f"model={','.join(CNNS)}", f"seed={','.join(map(str, run_seeds))}", f"data={dataset}",
            f"data.train_per_class={','.join(map(size_value, group))}",
            *(o for o in defaults if _key(o) not in given), *train_extra,
            sweep=root / f"cnns-seeds{'-'.join(map(str, run_seeds))}-epochs{n_epochs}", log=log)


def _size_of(job) -> str:
    value = job.overrides.get("data.train_per_class", "null")
    return "all" if value == "null" else value


def _baseline_jobs(root: Path) -> list:
    return [job for sweep in sorted(root.glob("baselines-*")) for job in load_jobs(sweep)]


def images_per_class(root: Path) -> dict[str, float]:
    """Size -> training images per class, as the baseline runs counted them."""
    return {_size_of(job): job.metrics["train_images"] / job.metrics["num_classes"] for job in _baseline_jobs(root)}


def classes(root: Path) -> int:
    return int(_baseline_jobs(root)[0].metrics["num_classes"])


def collect(out: Path, datasets: list[str], sizes: list[str]) -> list[dict]:
    """One record per run: dataset, size, images per class, method, seed, val/test top-1, params, train time."""
    records = []
    for dataset in datasets:
        root = out / dataset
        per_class = images_per_class(root)
        jobs = [*_baseline_jobs(root), *(job for sweep in sorted(root.glob("cnns-*")) for job in load_jobs(sweep))]
        for job in jobs:
            size = _size_of(job)
            if size not in sizes:
                continue
            name = job.overrides.get("method") or job.overrides.get("model")
            records.append({"dataset": dataset, "size": size, "images_per_class": per_class[size], "method": name,
                            "kind": "cnn" if name in CNNS else "classic", "seed": int(job.overrides["seed"]),
                            "val_acc1": job.metrics.get("val/acc1"), "test_acc1": job.metrics.get("test/acc1"),
                            "params": job.metrics.get("params"), "train_seconds": job.metrics.get("train_seconds"),
                            "run_dir": str(job.path)})
    return records


def curves_of(records: list[dict], dataset: str) -> dict[str, dict[float, list[float]]]:
    curves: dict[str, dict[float, list[float]]] = {}
    for r in records:
        if r["dataset"] == dataset and r["test_acc1"] is not None:
            curves.setdefault(r["method"], {}).setdefault(r["images_per_class"], []).append(r["test_acc1"])
    order = [*CNNS, *BASELINES]
    return dict(sorted(curves.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))


def table(records: list[dict], datasets: list[str], sizes: list[str]) -> str:
    """Markdown: one row per (dataset, method), one column per size; mean ± std test top-1 over seeds."""
    lines = []
    for dataset in datasets:
        curves = curves_of(records, dataset)
        per_class = {r["size"]: r["images_per_class"] for r in records if r["dataset"] == dataset}
        header = [f"{dataset}: test top-1", *(f"{s if s != 'all' else f'all ({per_class[s]:.0f})'}/class" for s in sizes)]
        lines += ["| " + " | ".join(header) + " |", "|---|" + "---|" * len(sizes)]
        for name, curve in curves.items():
            mean, std = mean_curve(curve), std_curve(curve)
            cells = []
            for s in sizes:
                x = per_class[s]
                n = len(curve.get(x, []))
                cells.append("-" if x not in mean else f"{mean[x]:.1%}" + (f" ± {std[x]:.1%}" if n > 1 else ""))
            kind = "CNN" if name in CNNS else "classic"
            lines.append(f"| {name} ({kind}) | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_report(out: Path, datasets: list[str], sizes: list[str], command: str, seconds: float) -> str:
    records = collect(out, datasets, sizes)
    with (out / "finding.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    panels = {d: curves_of(records, d) for d in datasets}
    verdicts = {d: verdict(d, panels[d], CNNS) for d in datasets}
    plot_curves(panels, CNNS, out / "finding.png", verdicts)
    markdown = "\n".join([
        "# When did CNNs win?", "", f"Claim: {CLAIM}", "", "```bash", command, "```", "",
        table(records, datasets, sizes),
        "Verdict (computed: best CNN vs best classic pipeline at each size, crossings interpolated in log size):", "",
        *(f"- {verdicts[d].text}" for d in datasets), "",
        f"{len(records)} runs; this invocation took {seconds / 60:.1f} min wall time (steps reused from an "
        f"earlier invocation with --out are not counted). Picture: {out / 'finding.png'}", ""])
    (out / "finding.md").write_text(markdown)
    return markdown


def parse(args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "cnn_vs_classic" / time.strftime("%Y%m%d-%H%M%S"))
    parser.add_argument("--datasets", default="digits,shapes")
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--jobs", type=int, default=2, help="datasets run side by side")
    parser.add_argument("--images-seen", type=int, default=IMAGES_SEEN, help="CNN budget: training images per run")
    parser.add_argument("--epochs", default=f"{EPOCHS[0]},{EPOCHS[1]}", help="min,max CNN epochs")
    known, extra = parser.parse_known_args(args)
    bad = [s for s in known.sizes.split(",") if s != "all" and not s.isdigit()]
    if bad:
        parser.error(f"--sizes {bad[0]}: give numbers of images per class or all")
    known.extra = extra
    return known


def main(args: list[str]) -> None:
    start = time.time()
    opts = parse(args)
    out = opts.out.resolve()
    datasets, sizes = opts.datasets.split(","), opts.sizes.split(",")
    seeds = [int(s) for s in opts.seeds.split(",")]
    out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max(1, opts.jobs)) as pool:
        for future in [pool.submit(run_dataset, d, sizes, seeds, out, opts.extra, opts.images_seen,
                                           tuple(int(e) for e in opts.epochs.split(","))) for d in datasets]:
            future.result()
    command = "python scripts/cnn_vs_classic.py " + " ".join(args)
    markdown = write_report(out, datasets, sizes, command.strip(), time.time() - start)
    print(f"\n{markdown}\nresults in {out}")


if __name__ == "__main__":
    main(sys.argv[1:])

"""convnetlab beside a peer trainer (timm's data pipeline + a plain training step) on the same work.

Run: python scripts/bench/peers.py [--reps 3] [--epochs 3]

The work: torchvision's ResNet-18 with the ImageNet stem at 64 px, 10 classes of photo-like JPEGs in
class folders, batch 64, 2 data-loader workers, SGD lr 0.1 momentum 0.9 (no Nesterov), weight decay
1e-4 (not on norms and biases), per-step cosine without warmup, random-resized crops + flips, fp32.
Every run is a fresh process, the runs of one repetition alternate their order, and each figure is the
median over the repetitions of training images/s timed the same way on both sides (TrainThroughput:
loading included, the first 5 batches of each epoch left out, validation not). Ratios are taken
against convnetlab's defaults within each repetition.

Runs:
- convnetlab defaults: `convnetlab-train` with only the work above set; everything else is its default
  (memory format measured per machine, CSV + W&B offline logging, validation every epoch, final val + test).
- convnetlab NCHW / channels-last: the defaults with the memory format fixed.
- timm, NCHW and `--channels-last`: `peer_timm.py` (timm.data.create_loader with its prefetcher).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from data_pipeline import write_jpegs
from overhead import bench_env

HERE = Path(__file__).resolve().parent
CLASSES = 10


def write_dataset(root: Path, train: int, val: int, size: tuple[int, int]) -> Path:
    """``root/{train,val}/class<k>/*.jpg``: photo-like JPEGs, ``train``/``val`` images over 10 classes."""
    for split, count in (("train", train), ("val", val)):
        scratch = root / f"scratch-{split}"
        write_jpegs(scratch, count, size=size, classes=CLASSES)
        shutil.move(scratch / "train", root / split)
        scratch.rmdir()
    return root


def convnetlab_run(data: Path, work: Path, tag: str, epochs: int, extra: list[str]) -> float:
    run_dir = work / tag
    cmd = [sys.executable, "-m", "convnetlab.cli.train", "data=imagefolder", f"data.root={data}",
           "data.image_size=64", "data.batch_size=64", "data.num_workers=2", "model=resnet18",
           "model.small_input=false", "optimizer=sgd", "optimizer.lr=0.1", "optimizer.momentum=0.9",
           "optimizer.weight_decay=1e-4", "scheduler=cosine", "scheduler.warmup_epochs=0",
           "callbacks=default",  # the default run's weight average is recipe, not speed: the peer has none
           f"trainer.max_epochs={epochs}", f"hydra.run.dir={run_dir}", *extra]
    subprocess.run(cmd, check=True, env=bench_env(), capture_output=True, text=True, cwd=work)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return float(metrics["train_images_per_s"])


def timm_run(data: Path, work: Path, tag: str, epochs: int, extra: list[str]) -> float:
    out = work / f"{tag}.json"
    cmd = [sys.executable, str(HERE / "peer_timm.py"), str(out), str(data), f"--epochs={epochs}", *extra]
    subprocess.run(cmd, check=True, env=bench_env(), capture_output=True, text=True, cwd=work)
    return float(json.loads(out.read_text())["train_images_per_s"])


RUNS = {
    "convnetlab defaults": (convnetlab_run, []),
    "convnetlab NCHW": (convnetlab_run, ["module.channels_last=false"]),
    "convnetlab channels-last": (convnetlab_run, ["module.channels_last=true"]),
    "timm NCHW": (timm_run, []),
    "timm --channels-last": (timm_run, ["--channels-last"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-images", type=int, default=1280)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    speeds: dict[str, list[float]] = {name: [] for name in RUNS}
    ratios: dict[str, list[float]] = {name: [] for name in RUNS}
    with tempfile.TemporaryDirectory(prefix="convnetlab-peers-") as tmp:
        work = Path(tmp)
        data = write_dataset(work / "jpegs", args.train_images, 200, size=(160, 120))
        names = list(RUNS)
        for rep in range(args.reps):
            order = names if rep % 2 == 0 else names[::-1]
            for name in order:
                runner, extra = RUNS[name]
                speeds[name].append(runner(data, work, f"{rep}-{name.replace(' ', '_')}", args.epochs, extra))
                print(f"rep {rep} {name}: {speeds[name][-1]:.1f} img/s", file=sys.stderr, flush=True)
            for name in names:
                ratios[name].append(speeds[name][-1] / speeds["convnetlab defaults"][-1])
    rows = [{"run": name, "img_s": statistics.median(speeds[name]), "ratio": statistics.median(ratios[name]),
             "ratio_min": min(ratios[name]), "ratio_max": max(ratios[name])} for name in RUNS]
    print("| run | train img/s (median) | vs convnetlab defaults (median) | range |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['img_s']:.1f} | {r['ratio']:.2f} | {r['ratio_min']:.2f}-{r['ratio_max']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "speeds": speeds}, indent=2))


if __name__ == "__main__":
    main()

"""``convnetlab-probe ckpt_paths=[a.ckpt,b.ckpt]``: how test top-1 falls under translation, scaling,
rotation, squeezing, stroke width and noise, one curve per checkpoint (see analysis/invariance.py).

Each checkpoint is tested on its own run's test data unless ``data=...`` is given; the first point of
every curve (magnitude 0) is exactly the plain test accuracy.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from convnetlab.analysis.invariance import check_transforms, curve_labels, invariance_table, plot_invariance, write_csv
from convnetlab.cli.checkpoint import load_checkpoint
from convnetlab.cli.hydra_app import entry_point
from convnetlab.errors import InputError

CSV_FILE, PLOT_FILE = "invariance.csv", "invariance.png"


def probe(cfg: DictConfig, output_dir: Path) -> tuple[list[dict], dict[str, str]]:
    """Rows (ckpt, model, transform, magnitude, acc1) and a legend label per checkpoint; writes CSV and plot."""
    if OmegaConf.is_missing(cfg, "ckpt_paths") or not cfg.ckpt_paths:
        raise InputError("ckpt_paths is required: convnetlab-probe ckpt_paths=[<run>/checkpoints/a.ckpt,...]")
    ckpts = [cfg.ckpt_paths] if isinstance(cfg.ckpt_paths, str) else [str(c) for c in cfg.ckpt_paths]
    if cfg.get("labels") and len(cfg.labels) != len(ckpts):
        raise InputError(f"labels has {len(cfg.labels)} entries for {len(ckpts)} ckpt_paths; give one label per checkpoint.")
    magnitudes = OmegaConf.to_container(cfg.magnitudes)
    check_transforms(list(magnitudes))
    rows, models = [], []
    for ckpt in ckpts:
        module, datamodule, _ = load_checkpoint(ckpt, cfg.get("data"))
        datamodule.decode_on = "worker"  # batches are read here, outside a Trainer: decode them in the loader
        datamodule.setup("test")
        models.append(module.hparams.backbone.get("arch", type(module.backbone).__name__))
        table = invariance_table(module.to(cfg.device), datamodule.test_dataloader(), magnitudes, seed=cfg.seed)
        rows += [{"ckpt": ckpt, "model": models[-1], **row} for row in table]
    labels = dict(zip(ckpts, cfg.labels)) if cfg.get("labels") else curve_labels(ckpts, models)
    write_csv(rows, output_dir / CSV_FILE)
    plot_invariance(rows, output_dir / PLOT_FILE, labels)
    return rows, labels


def print_table(result: tuple[list[dict], dict[str, str]], output_dir: Path) -> None:
    """Plain test top-1 (magnitude 0) and the mean top-1 over each transform's magnitudes, per checkpoint."""
    rows, labels = result
    width = max(12, *(len(label) for label in labels.values())) + 2
    lines = ["", "test top-1: plain, and mean over each transform's magnitudes",
             f"  {'':<10}" + "".join(f"{label:>{width}}" for label in labels.values())]
    plain = [next((r["acc1"] for r in rows if r["ckpt"] == c and r["magnitude"] == 0), float("nan")) for c in labels]
    lines.append(f"  {'plain':<10}" + "".join(f"{a:>{width}.2%}" for a in plain))
    for name in dict.fromkeys(r["transform"] for r in rows):
        means = [statistics.mean(r["acc1"] for r in rows if r["ckpt"] == c and r["transform"] == name) for c in labels]
        lines.append(f"  {name:<10}" + "".join(f"{m:>{width}.2%}" for m in means))
    print("\n".join([*lines, f"  run_dir   {output_dir}", ""]))


main = entry_point("probe", probe, report=print_table)


if __name__ == "__main__":
    main()

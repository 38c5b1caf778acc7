"""``convnetlab-eval ckpt_path=...``: test metrics of a checkpoint, with no training config needed.

The checkpoint rebuilds its own network (hyperparameters are plain dicts); the data comes from the
checkpoint's run config unless ``data=...`` is given. ``protocol=10crop|multiscale`` evaluates with
softmax averaged over crops and reports ``<split>/acc1_<protocol>`` etc. beside the centre-crop numbers.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from convnetlab.cli.checkpoint import load_checkpoint
from convnetlab.cli.hydra_app import entry_point
from convnetlab.cli.report import print_result_table
from convnetlab.callbacks import progress_bar
from convnetlab.data.multicrop import PROTOCOLS, metric_suffix, use_protocol
from convnetlab.runs import run_dir_of_checkpoint, update_metrics
from convnetlab.errors import InputError


def evaluate(cfg: DictConfig, output_dir: Path) -> dict:
    """Test (or validate) ``cfg.ckpt_path`` and record the metrics in both run dirs."""
    ckpt_path = Path(cfg.ckpt_path)
    if cfg.split not in ("test", "val"):
        raise InputError(f"split={cfg.split} is not one of test, val.")
    pl.seed_everything(cfg.seed, workers=True)
    protocol = cfg.get("protocol", "center")
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol={protocol} is not one of {', '.join(PROTOCOLS)}.")
    module, datamodule, data_cfg = load_checkpoint(ckpt_path, cfg.get("data"))
    use_protocol(module, datamodule, protocol)
    run_dir = run_dir_of_checkpoint(ckpt_path)
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=[progress_bar()])
    run = trainer.test if cfg.split == "test" else trainer.validate
    (logged,) = run(module, datamodule=datamodule, verbose=False)
    metrics = {key + metric_suffix(protocol): float(value) for key, value in logged.items()}
    if run_dir is not None and trainer.is_global_zero:
        # The run's own headline numbers are only replaced by the same protocol on the same data.
        own_protocol = cfg.get("data") is None and cfg.split == "test" and ckpt_path.name != "last.ckpt"
        prefix = "" if own_protocol else f"eval:{data_cfg.get('name')}:{ckpt_path.stem}:"
        update_metrics(run_dir, {prefix + key: value for key, value in metrics.items()})
    summary = {"model": module.hparams.backbone.get("arch"), "data": data_cfg.get("name"), "ckpt": str(ckpt_path), **metrics}
    if trainer.is_global_zero:
        update_metrics(output_dir, summary)
        print_result_table(summary, output_dir)
    return summary


main = entry_point("eval", evaluate)


if __name__ == "__main__":
    main()

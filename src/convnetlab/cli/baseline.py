"""``convnetlab-baseline method=hog_svm|hog_rf|pixels_rf|pixels_svm data=...``: a pre-CNN pipeline on the
CNNs' data, with a run dir that ``convnetlab-compare`` reads like a training run (see ``analysis/baselines.py``)."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from convnetlab.analysis.baselines import Split, as_arrays, check_method, fit_and_score
from convnetlab.cli.hydra_app import entry_point
from convnetlab.cli.report import print_result_table
from convnetlab.data.folder import check_two_classes
from convnetlab.runs import RESOLVED_CONFIG, update_metrics


def baseline(cfg: DictConfig, output_dir: Path) -> dict:
    """Fit ``cfg.method`` on the eval view of the train split, score val and test, write ``metrics.json``."""
    kind, classifier = check_method(cfg.method)
    pl.seed_everything(cfg.seed)  # before the datamodule: data.train_per_class draws with this seed
    datamodule = instantiate(cfg.data)
    check_two_classes(datamodule.classes, datamodule.root)  # as training does; setup() checks the splits
    datamodule.setup()
    datamodule.train_dataset.transform = datamodule.eval_transform  # the eval view: centre crop, no augmentation
    splits = {name: Split(*as_arrays(getattr(datamodule, f"{name}_dataset"))) for name in ("train", "val", "test")}
    hog_options = OmegaConf.to_container(cfg.hog) if kind == "hog" else {}
    classifier_options = OmegaConf.to_container(cfg[classifier])
    # convnetlab-compare labels rows by model settings that vary between runs of one method.
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved["model"] = {"arch": cfg.method, **{f"hog_{k}": v for k, v in hog_options.items()}, **classifier_options}
    OmegaConf.save(OmegaConf.create(resolved), output_dir / RESOLVED_CONFIG)
    metrics = fit_and_score(cfg.method, splits, datamodule.num_classes, hog_options, classifier_options, cfg.seed)
    return update_metrics(output_dir, {"model": cfg.method, "data": cfg.data.name, "seed": cfg.seed, "num_classes": datamodule.num_classes,
                                       "train_per_class": cfg.data.get("train_per_class"), **metrics})


main = entry_point("baseline", baseline, report=print_result_table)


if __name__ == "__main__":
    main()

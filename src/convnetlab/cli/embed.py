"""``convnetlab-embed ckpt_path=... [data=...]``: export pre-classifier embeddings and score them with a
linear probe and a k-NN (see ``analysis/embeddings.py``).

The images come from the checkpoint's own run data unless ``data=...`` is given; another task's data is
the point of transfer learning, so its classes may differ from the checkpoint's. Train images are read
with the eval transform: an embedding describes the image, not a random crop of it. Streaming data
(``data=streaming``) is read in stored order, unshuffled; its images have no file path, so ``paths`` holds
``<split>#<position>``.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import IterableDataset

from convnetlab.analysis.embeddings import extract_embeddings, knn_accuracy, linear_probe_accuracy
from convnetlab.cli.hydra_app import entry_point
from convnetlab.data.embeddings import save_embeddings
from convnetlab.checkpoint_file import check_checkpoint_path, load_classifier
from convnetlab.runs import run_data_config, run_dir_of_checkpoint, update_metrics
from convnetlab.errors import InputError


def embed(cfg: DictConfig, output_dir: Path) -> dict:
    """Write ``embeddings_<split>.npz`` for train/val/test into ``output_dir`` and return the probe metrics."""
    ckpt_path = check_checkpoint_path(cfg.ckpt_path)
    pl.seed_everything(cfg.seed, workers=True)
    data_cfg = run_data_config(cfg.get("data"), ckpt_path, run_dir_of_checkpoint(ckpt_path))
    datamodule = instantiate(data_cfg)
    module = load_classifier(ckpt_path)
    channels = module.mean.shape[1]
    if channels != datamodule.channels:
        raise InputError(f"{ckpt_path} takes {channels}-channel images but data '{data_cfg.name}' has "
                         f"{datamodule.channels}; set data.channels={channels}")
    datamodule.setup()
    datamodule.train_dataset.transform = datamodule.eval_transform
    if isinstance(datamodule.train_dataset, IterableDataset):
        datamodule.train_dataset.shuffle = False  # streaming: in stored order, like val and test
    splits = {"train": datamodule.train_dataset, "val": datamodule.val_dataset, "test": datamodule.test_dataset}
    arrays = {}
    for split, dataset in splits.items():
        features, labels = extract_embeddings(module, dataset, cfg.batch_size, cfg.device)
        paths = ([p for p, _ in dataset.samples] if hasattr(dataset, "samples")
                 else [f"{split}#{i}" for i in range(len(labels))])
        save_embeddings(output_dir / f"embeddings_{split}.npz", features, labels, paths, datamodule.classes)
        arrays[split] = (features, labels)
    (train_x, train_y), (test_x, test_y) = arrays["train"], arrays["test"]
    metrics = {
        "model": module.hparams.backbone.get("arch"), "data": data_cfg.name, "ckpt": str(ckpt_path),
        "num_classes": datamodule.num_classes, "embed/dim": int(train_x.shape[1]),
        "embed/linear_acc1": linear_probe_accuracy(train_x, train_y, test_x, test_y),
        "embed/knn_acc1": knn_accuracy(train_x, train_y, test_x, test_y, k=cfg.knn_k),
    }
    return update_metrics(output_dir, metrics)


def print_summary(metrics: dict, output_dir: Path) -> None:
    print("\n".join([
        "", f"embeddings of {metrics['data']} by {metrics['model']} ({metrics['embed/dim']} features):",
        f"  linear probe top-1  {metrics['embed/linear_acc1']:.2%}",
        f"  k-NN top-1          {metrics['embed/knn_acc1']:.2%}",
        f"  run_dir             {output_dir}",
        "train a new head on them:",
        f"  convnetlab-train data=embeddings data.root={output_dir} data.num_classes={metrics['num_classes']} "
        f"data.feature_dim={metrics['embed/dim']} model=linear_head", "",
    ]), flush=True)


main = entry_point("embed", embed, report=print_summary)


if __name__ == "__main__":
    main()

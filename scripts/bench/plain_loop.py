"""The baseline of `overhead.py`: the same model, data, optimizer and schedule in a plain PyTorch loop.

Usage: python scripts/bench/plain_loop.py OUT.json CKPT_DIR <convnetlab-train overrides...>

It composes the same Hydra config as `convnetlab-train` and builds the same DataLoader, backbone,
optimizer (over all parameters), per-step schedule, input normalisation and memory format (the one
`module.channels_last` gives, for "auto" the same cached per-machine answer); it tracks
loss and top-1 accuracy on the device, prints one line per epoch and saves model + optimizer state at
every epoch end, as a careful hand-written loop would. Timed from the first batch fetch to the last save.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from convnetlab.cli.hydra_app import config_dir, register_resolvers
from convnetlab.lit import memory_format
from convnetlab.lit.hparams import backbone_spec


def compose_config(overrides: list[str]):
    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def plain_memory_format(cfg, model: torch.nn.Module, datamodule) -> torch.memory_format:
    """The memory format `convnetlab-train` trains this config in: the module's setting, or for "auto" the
    answer cached (or measured) for this model, input and machine, so both sides do the same work."""
    setting = cfg.module.channels_last
    if setting == "auto":
        spec = backbone_spec(cfg.model)
        spec.pop("weights", None), spec.pop("pretrained", None)
        shape = memory_format.input_shape(datamodule, train=True)
        setting = memory_format.choose(model, spec, shape, torch.device("cpu")).channels_last
    return torch.channels_last if setting else torch.contiguous_format


def main(out: str, ckpt_dir: str, overrides: list[str]) -> None:
    cfg = compose_config([*overrides, "paths.root_dir=.", "paths.output_dir=."])
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    model = instantiate(cfg.model)
    fmt = plain_memory_format(cfg, model, datamodule)
    model = model.to(memory_format=fmt)
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    epochs = cfg.trainer.max_epochs
    limit = cfg.trainer.limit_train_batches  # as Lightning reads it: a batch count (int) or a fraction (float)
    steps_per_epoch = len(loader) if limit is None else limit if isinstance(limit, int) else int(len(loader) * limit)
    scheduler = instantiate(cfg.scheduler)(optimizer, steps_per_epoch=steps_per_epoch, max_epochs=epochs)
    mean = torch.tensor(datamodule.mean).view(1, -1, 1, 1) * 255
    std = torch.tensor(datamodule.std).view(1, -1, 1, 1) * 255
    Path(ckpt_dir).mkdir(parents=True, exist_ok=True)

    images_seen = 0
    start = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
        for step, (images, targets) in enumerate(loader):
            if step == steps_per_epoch:
                break
            images = ((images.float() - mean) / std).contiguous(memory_format=fmt)
            logits = model(images)
            loss = F.cross_entropy(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach() * len(targets)
            correct += (logits.detach().argmax(1) == targets).sum()
            images_seen += len(targets)
        n = steps_per_epoch * loader.batch_size
        print(f"epoch {epoch + 1}/{epochs}  loss {loss_sum.item() / n:.4f}  acc1 {correct.item() / n:.4f}")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch},
                   Path(ckpt_dir) / "last.pt")
    seconds = time.perf_counter() - start
    Path(out).write_text(json.dumps({"seconds": seconds, "images": images_seen, "steps": epochs * steps_per_epoch}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])

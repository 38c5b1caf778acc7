"""The epoch's training loss, top-1 and top-5: exact over the batches, logged once per epoch (on its last batch,
or at its end when the length is unknown), and what MixUp's soft targets mean."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from conftest import random_image_loader as loader
from convnetlab.lit import ImageClassifier
from convnetlab.lit.epoch_sums import TrainEpochSums

LENET = {"arch": "lenet5", "num_classes": 6, "in_channels": 3, "input_size": 32}
SGD = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.05}


def module() -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier(backbone=LENET, num_classes=6, optimizer=SGD, mean=[0.5] * 3, std=[0.25] * 3)


def test_epoch_sums_give_the_exact_loss_top1_and_top5_over_uneven_batches():
    sums = TrainEpochSums(top_k=5)
    logits = torch.tensor([[9, 8, 7, 6, 5, 0], [5, 9, 8, 7, 6, 0], [5, 6, 7, 8, 9, 0.0]])
    targets = torch.tensor([0, 0, 5])  # hit top-1; in the top 5 but not first; outside the top 5
    sums.add(logits[:2], targets[:2], torch.tensor(1.0), 2)
    sums.add(logits[2:], targets[2:], torch.tensor(4.0), 1)
    epoch = {k: float(v) for k, v in sums.pop().items()}
    assert epoch == pytest.approx({"loss": (1.0 * 2 + 4.0) / 3, "acc1": 1 / 3, "acck": 2 / 3})
    assert sums.pop() is None  # the sums were reset: nothing more for this epoch


def test_epoch_sums_are_reduced_over_ranks_before_dividing():
    """Two ranks with different hit rates: the epoch value is over all images, not a mean of rank means."""
    sums = TrainEpochSums(top_k=1)
    sums.add(torch.tensor([[1.0, 0]]), torch.tensor([0]), torch.tensor(2.0), 1)  # this rank: 1 image, 1 hit
    other_rank = torch.tensor([0.0, 0.0, 0.0, 3.0])  # 3 images, no hits, loss 0
    epoch = sums.pop(lambda t: t + other_rank)
    assert float(epoch["acc1"]) == pytest.approx(1 / 4) and float(epoch["loss"]) == pytest.approx(2 / 4)


def test_soft_targets_count_their_most_likely_class():
    sums = TrainEpochSums(top_k=5)
    soft = torch.tensor([[0.7, 0.3, 0, 0, 0, 0], [0, 0.2, 0, 0, 0, 0.8]])
    logits = torch.tensor([[5.0, 1, 0.5, 0.4, 0.3, 0.2], [5.0, 4, 3, 2, 1, 0]])
    sums.add(logits, soft, torch.tensor(0.5), 2)
    epoch = sums.pop()
    assert (float(epoch["acc1"]), float(epoch["acck"])) == (0.5, 0.5)


class Stream(IterableDataset):
    """Batches of unknown number: Lightning cannot tell which is the epoch's last."""

    def __iter__(self):
        for images, labels in loader(24):
            yield from zip(images, labels)


@pytest.mark.parametrize("known_length", [True, False])
def test_the_training_metrics_are_logged_once_per_epoch(tmp_path, known_length):
    classifier, calls = module(), []
    original = classifier._log_train_epoch

    def counting():
        calls.append(classifier._train_epoch._count > 0)
        original()

    classifier._log_train_epoch = counting
    data = loader(24) if known_length else DataLoader(Stream(), batch_size=8)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(classifier, train_dataloaders=data)
    assert calls.count(True) == 2  # one log with data per epoch
    assert {"train/acc1", "train/acc5", "train/loss_epoch"} <= set(trainer.callback_metrics)
    assert 0.0 <= float(trainer.callback_metrics["train/acc1"]) <= float(trainer.callback_metrics["train/acc5"]) <= 1.0

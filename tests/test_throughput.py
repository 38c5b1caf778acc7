"""TrainThroughput times training batches only: not the warm-up batches, not validation, not epoch-end work."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from convnetlab.callbacks import TrainThroughput

STEP_S, VAL_S, EPOCH_END_S = 0.1, 10.0, 5.0


class Clock:
    now = 0.0

    def perf_counter(self) -> float:
        return self.now


class Timed(pl.LightningModule):
    """Each training step takes STEP_S on the fake clock, each validation batch VAL_S."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock, self.layer = clock, torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        self.clock.now += STEP_S
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        self.clock.now += VAL_S

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class SlowEpochEnd(pl.Callback):
    """Stands for the epoch-end checkpoint save."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.clock.now += EPOCH_END_S


def loader(batches: int, batch_size: int = 4) -> DataLoader:
    return DataLoader(TensorDataset(torch.zeros(batches * batch_size, 2)), batch_size=batch_size)


@pytest.mark.parametrize("val_check_interval", [1.0, 0.5])
def test_throughput_counts_training_batches_after_warmup_and_nothing_else(tmp_path, monkeypatch, val_check_interval):
    clock = Clock()
    monkeypatch.setattr("convnetlab.callbacks.throughput.time", SimpleNamespace(perf_counter=clock.perf_counter))
    meter = TrainThroughput(warmup_batches=2)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
                         val_check_interval=val_check_interval, default_root_dir=tmp_path,
                         callbacks=[SlowEpochEnd(clock), meter])
    trainer.fit(Timed(clock), train_dataloaders=loader(8), val_dataloaders=loader(2))
    # 8 batches per epoch, the first 2 not timed: 6 x 4 images in 6 x STEP_S, twice
    assert meter.images == 2 * 6 * 4
    assert meter.seconds == pytest.approx(2 * 6 * STEP_S)
    assert meter.images_per_second == pytest.approx(4 / STEP_S)

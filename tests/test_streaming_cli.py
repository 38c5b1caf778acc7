"""Streaming data end to end: DDP ranks see disjoint samples, every one once per epoch, in equal steps; a run
stopped mid-epoch (SIGTERM, kill -9) and resumed from last.ckpt ends with the weights of an uninterrupted one,
with and without DataLoader workers and with epochs shortened by limit_train_batches."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import REPO, clean_env, cli_process, run_cli
from convnetlab.data.datamodule import DigitsDataModule
from convnetlab.data.streaming_writer import optimize_folder
from test_fault_tolerance import assert_same_result, batches, resume, train
from test_streaming import N, numbered_tree

RECORDER = """
import json, sys
from pathlib import Path
import pytorch_lightning as pl, torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from convnetlab.data.streaming import StreamingDataModule

root, out, conf = sys.argv[1:4]

class Recorder(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer, self.seen = torch.nn.Linear(1, 1), []

    def training_step(self, batch, batch_idx):
        self.seen += [round(v / 10) for v in batch[0][:, 0, 0, 0].float().tolist()]
        return self.layer(batch[0][:, :1, 0, 0].float()).sum()

    def on_train_epoch_end(self):
        Path(out, f"rank{self.global_rank}-epoch{self.current_epoch}.json").write_text(json.dumps(self.seen))
        self.seen = []

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

with initialize_config_dir(conf, version_base="1.3"):
    cfg = compose("train", overrides=["trainer=ddp_cpu"])
trainer = instantiate(cfg.trainer, default_root_dir=out, max_epochs=2, logger=False, enable_checkpointing=False,
                      limit_val_batches=0, num_sanity_val_steps=0, enable_progress_bar=False, callbacks=[])
dm = StreamingDataModule(root, image_size=8, resize_size=8, batch_size=2, num_workers=2, augment={"name": "none"})
trainer.fit(Recorder(), datamodule=dm)
"""


@pytest.mark.slow
def test_ddp_cpu_ranks_see_disjoint_samples_and_every_sample_once_per_epoch(tmp_path):
    root = numbered_tree(tmp_path / "folder")
    chunks = optimize_folder(root, tmp_path / "streaming", chunk_size=4)
    script = tmp_path / "record.py"
    script.write_text(textwrap.dedent(RECORDER))
    args = [sys.executable, str(script), chunks, str(tmp_path), str(REPO / "conf")]
    proc = subprocess.run(args, cwd=tmp_path, env=clean_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    orders = []
    for epoch in (0, 1):
        ranks = [json.loads((tmp_path / f"rank{r}-epoch{epoch}.json").read_text()) for r in (0, 1)]
        assert len(ranks[0]) == len(ranks[1]) == N // 2  # equal step counts, as DDP needs
        assert not set(ranks[0]) & set(ranks[1])
        assert sorted(ranks[0] + ranks[1]) == list(range(N))
        orders.append(ranks)
    assert orders[0] != orders[1]  # a new order every epoch


@pytest.mark.slow
def test_convnetlab_data_optimize_writes_the_chunks_and_data_shards_answers_with_the_migration_hint(tmp_path, data_dir):
    root = numbered_tree(tmp_path / "folder")
    proc = run_cli("data", "action=optimize", f"root={root}", f"out={tmp_path / 'chunks'}", cwd=tmp_path,
                   data_dir=data_dir)
    assert f"train with data=streaming data.root={tmp_path / 'chunks'}" in proc.stdout
    info = json.loads((tmp_path / "chunks" / "classes.json").read_text())
    assert info == {"classes": ["even", "odd"], "splits": {"train": N, "val": N}}
    assert (tmp_path / "chunks" / "train" / "index.json").is_file() and (tmp_path / "chunks" / "val").is_dir()
    proc = cli_process("train", "data=shards", f"data.root={tmp_path / 'shards'}", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: data=shards was removed in 0.2: rewrite shards with `convnetlab-data action=optimize "
        "root=<the original folder> out=<dir>` and train with data=streaming data.root=<dir>; WebDataset tars can "
        "still be read with the webdataset library"]


# --- exact resume: LeNet-5 on digits written as litdata chunks --------------------------------------------

@pytest.fixture(scope="module")
def digits_chunks(data_dir) -> str:
    folder = DigitsDataModule(root=data_dir)
    folder.prepare_data()
    return optimize_folder(folder.root, data_dir / "digits-streaming", chunk_bytes="64kb")


def run_overrides(chunks: str, workers: int) -> list[str]:
    return ["model=lenet5", "data=streaming", f"data.root={chunks}", "data.image_size=32", "data.resize_size=32",
            "data.channels=1", "data.hflip=false", "data.scale=[0.6,1.0]", "data.mean=[0.31]", "data.std=[0.32]",
            "data.batch_size=64", f"data.num_workers={workers}", "trainer.max_epochs=2", "trainer.deterministic=true",
            "logger=csv", "callbacks.step_checkpoint.every_n_train_steps=5"]


def recorded(run: Path, chunks: str, workers: int, *extra: str, data_dir: Path) -> subprocess.CompletedProcess:
    return train(run, *run_overrides(chunks, workers), "+callbacks.record._target_=fault_injection.RecordBatches",
                 f"+callbacks.record.path={run.parent / (run.name + '-batches.txt')}", *extra, data_dir=data_dir)


def stopped_at(run: Path, chunks: str, workers: int, step: int, sig: str, *extra: str,
               data_dir: Path) -> subprocess.CompletedProcess:
    return recorded(run, chunks, workers, "+callbacks.fault._target_=fault_injection.SignalAtStep",
                    f"+callbacks.fault.step={step}", f"+callbacks.fault.signal={sig}",
                    f"+callbacks.fault.marker={run.parent / (run.name + '.killed')}", *extra, data_dir=data_dir)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_sigterm_mid_epoch_then_resume_ends_with_the_weights_of_an_uninterrupted_run(
        digits_chunks, data_dir, tmp_path, workers):
    reference = tmp_path / "reference"
    proc = recorded(reference, digits_chunks, workers, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "sigterm"
    proc = stopped_at(run, digits_chunks, workers, 13, "SIGTERM", data_dir=data_dir)
    assert proc.returncode == 0 and "SIGTERM at global step 14" in proc.stdout + proc.stderr, proc.stderr[-3000:]
    assert len(batches(run)) == 14  # the prefetched 15th batch was never trained on
    resume(run, data_dir)
    assert batches(run) == batches(reference)  # no batch repeated or skipped, same order, same augmentation
    assert_same_result(run, reference)


@pytest.mark.slow
def test_a_kill_mid_way_through_an_epoch_shortened_by_limit_train_batches_resumes_exactly(
        digits_chunks, data_dir, tmp_path):
    shorter = ["trainer.limit_train_batches=6", "trainer.max_epochs=3", "callbacks.step_checkpoint.every_n_train_steps=4"]
    reference = tmp_path / "reference"
    assert recorded(reference, digits_chunks, 2, *shorter, data_dir=data_dir).returncode == 0
    run = tmp_path / "killed"
    proc = stopped_at(run, digits_chunks, 2, 10, "SIGKILL", *shorter, data_dir=data_dir)
    assert proc.returncode == -9
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 8  # epoch 1, batch 2
    before_kill = batches(run)
    resume(run, data_dir)
    assert before_kill[:8] + batches(run)[len(before_kill):] == batches(reference)  # epochs 1 and 2 as never stopped
    assert_same_result(run, reference)

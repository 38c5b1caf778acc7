"""Fault tolerance end to end: kill -9 (after an epoch-end or a mid-epoch checkpoint) or SIGTERM, then
resume, matches an uninterrupted run exactly; a non-finite loss stops naming the step; a crash while
writing never corrupts last.ckpt."""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, clean_env, cli_process, read_metrics
from convnetlab.callbacks import RNGState
from convnetlab.data.datamodule import DigitsDataModule

# LeNet-5 on digits, 20 steps per epoch, 2 epochs, deterministic, in-process data loading.
RUN = ["model=lenet5", "data=digits", "data.batch_size=64", "data.num_workers=0", "trainer.max_epochs=2",
       "trainer.deterministic=true", "logger=csv", "callbacks.step_checkpoint.every_n_train_steps=5"]
STEPS_PER_EPOCH = 20
COMPARED = ("val/acc1", "val/loss", "test/acc1", "test/loss")


def train(run_dir: Path, *overrides: str, data_dir: Path, new_session: bool = False) -> subprocess.CompletedProcess:
    env = clean_env(run_dir.parent)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), env.get("PYTHONPATH", "")])
    args = [*overrides, f"paths.data_dir={data_dir}"]
    if not any(o.startswith("ckpt_path=") for o in overrides):
        args.append(f"hydra.run.dir={run_dir}")
    return cli_process("train", *args, cwd=run_dir.parent, env=env, new_session=new_session)


def recorded(run_dir: Path, *extra: str, data_dir: Path, new_session: bool = False) -> subprocess.CompletedProcess:
    return train(run_dir, *RUN, "+callbacks.record._target_=fault_injection.RecordBatches",
                 f"+callbacks.record.path={run_dir.parent / (run_dir.name + '-batches.txt')}", *extra, data_dir=data_dir,
                 new_session=new_session)


def batches(run_dir: Path) -> list[str]:
    return (run_dir.parent / (run_dir.name + "-batches.txt")).read_text().splitlines()


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def assert_same_result(run: Path, reference: Path) -> None:
    ours, theirs = weights(run / "checkpoints" / "last.ckpt"), weights(reference / "checkpoints" / "last.ckpt")
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours), "resumed weights differ from the uninterrupted run"
    ours, theirs = read_metrics(run), read_metrics(reference)
    assert {k: ours[k] for k in COMPARED} == {k: theirs[k] for k in COMPARED}


def resume(run: Path, data_dir: Path) -> subprocess.CompletedProcess:
    proc = train(run, f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
    run = tmp_path_factory.mktemp("ft") / "reference"
    proc = recorded(run, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def kill_at(run: Path, step: int, sig: str, *extra: str, data_dir: Path) -> subprocess.CompletedProcess:
    return recorded(run, "+callbacks.fault._target_=fault_injection.SignalAtStep", f"+callbacks.fault.step={step}",
                    f"+callbacks.fault.signal={sig}", f"+callbacks.fault.marker={run.parent / (run.name + '.killed')}",
                    *extra, data_dir=data_dir)


@pytest.mark.slow
def test_kill9_after_an_epoch_end_checkpoint_then_resume_equals_the_uninterrupted_run(uninterrupted, data_dir):
    run = uninterrupted.parent / "epoch_kill"
    proc = kill_at(run, STEPS_PER_EPOCH + 3, "SIGKILL", "callbacks.step_checkpoint=null", data_dir=data_dir)
    assert proc.returncode == -9
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == STEPS_PER_EPOCH
    resume(run, data_dir)
    assert_same_result(run, uninterrupted)


@pytest.mark.slow
def test_kill9_mid_epoch_loses_at_most_n_steps_and_resumes_at_the_next_batch(uninterrupted, data_dir):
    run = uninterrupted.parent / "mid_kill"
    proc = kill_at(run, 28, "SIGKILL", data_dir=data_dir)
    assert proc.returncode == -9
    saved_step = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert saved_step == 25  # checkpoints every 5 steps: the kill at step 28 lost 3
    before_kill = batches(run)
    resume(run, data_dir)
    seen = before_kill[:saved_step] + batches(run)[len(before_kill):]
    assert seen == batches(uninterrupted)  # no batch repeated or skipped, same order, same augmentation
    assert_same_result(run, uninterrupted)


@pytest.mark.slow
def test_a_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, data_dir):
    run = tmp_path / "nan"
    proc = train(run, *RUN, "+callbacks.poison._target_=fault_injection.PoisonAtStep", "+callbacks.poison.step=12",
                 data_dir=data_dir)
    assert proc.returncode != 0
    assert "not finite at global step 12 (epoch 0, batch 12)" in proc.stderr
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 10
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())
    assert not (run / "metrics.json").exists()


CRASH_MID_WRITE = """
import os, signal, sys, torch
from fsspec.implementations.local import LocalFileOpener
from lightning_fabric.utilities.cloud_io import _atomic_save
path = sys.argv[1]
_atomic_save({"version": 1, "w": torch.zeros(10)}, path)
real_write = LocalFileOpener.write
def write_half_then_die(self, data):
    real_write(self, bytes(data)[: len(data) // 2])
    self.flush()
    os.kill(os.getpid(), signal.SIGKILL)
LocalFileOpener.write = write_half_then_die
_atomic_save({"version": 2, "w": torch.ones(1_000_000)}, path)
"""


@pytest.mark.slow
def test_a_kill_while_writing_leaves_the_previous_last_ckpt_readable(tmp_path):
    """Lightning writes checkpoints through an fsspec transaction: a temporary file renamed on success."""
    path = tmp_path / "last.ckpt"
    proc = subprocess.run([sys.executable, "-c", CRASH_MID_WRITE, str(path)], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert torch.load(path, weights_only=True)["version"] == 1
    assert len(list(tmp_path.iterdir())) >= 1  # the half-written temporary file may remain beside it


def draws() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_rng_state_round_trips_every_generator_through_a_weights_only_checkpoint(tmp_path):
    torch.save({"rng": RNGState().state_dict()}, tmp_path / "rng.ckpt")
    expected = draws()
    draws()  # move every stream on
    RNGState().load_state_dict(torch.load(tmp_path / "rng.ckpt", weights_only=True)["rng"])
    assert draws() == expected


def epoch_batches(dm: DigitsDataModule, loader: torch.utils.data.DataLoader, epoch: int) -> list[tuple[int, list]]:
    """(pixel sum, labels) per batch of one training epoch, as the fit loop would fetch them."""
    dm.train_sampler.set_epoch(epoch)  # what Lightning's fit loop does before every epoch
    return [(int(images.sum()), labels.tolist()) for images, labels in loader]


@pytest.mark.parametrize("workers", [0, 1])
def test_training_data_resumes_mid_epoch_at_the_next_batch_also_with_persistent_workers(data_dir, workers):
    """Order and augmentation depend on (seed, epoch, position) only, not on RNG streams or worker processes."""
    def datamodule() -> DigitsDataModule:
        torch.manual_seed(7)  # the run seed, as pl.seed_everything sets it before the datamodule is built
        dm = DigitsDataModule(root=data_dir, batch_size=64, num_workers=workers, persistent_workers=True)
        dm.setup("fit")
        return dm

    reference = datamodule()
    loader = reference.train_dataloader()
    assert loader.persistent_workers == (workers > 0)
    full = [epoch_batches(reference, loader, epoch) for epoch in (0, 1)]  # one loader: workers persist
    assert full[0] != full[1]  # a new order and new augmentation each epoch
    resumed = datamodule()
    resumed.load_state_dict({"epoch": 1, "batches": 3})  # a checkpoint taken after 3 batches of epoch 1
    torch.rand(5)  # the global RNG stands elsewhere after a resume
    assert epoch_batches(resumed, resumed.train_dataloader(), 1) == full[1][3:]


@pytest.mark.slow
@pytest.mark.parametrize("sig, status, workers", [("SIGTERM", 0, 2), ("SIGINT", 130, 0)])
def test_a_signal_to_the_whole_process_group_stops_between_steps_and_resumes_exactly(
        uninterrupted, data_dir, sig, status, workers):
    """As a cluster preempts (SIGTERM to every process of the job) or a terminal's Ctrl-C (SIGINT to the
    foreground group): DataLoader workers get the signal too and must not take the run down with them."""
    run = uninterrupted.parent / f"group_{sig}"
    proc = recorded(run, "+callbacks.fault._target_=fault_injection.SignalAtStep", "+callbacks.fault.step=13",
                    f"+callbacks.fault.signal={sig}", "+callbacks.fault.group=true",
                    f"+callbacks.fault.marker={run.parent / (run.name + '.killed')}", f"data.num_workers={workers}",
                    f"data.persistent_workers={workers > 0}", data_dir=data_dir, new_session=True)
    output = proc.stdout + proc.stderr
    assert proc.returncode == status, output[-3000:]
    assert "Traceback" not in output and "killed by signal" not in output
    assert f"{sig} at global step 14" in output and f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}" in output
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 14
    assert not (run / "metrics.json").exists() and len(batches(run)) == 14  # stopped, not finished
    resume(run, data_dir)
    assert batches(run) == batches(uninterrupted)  # the same batches as a run never stopped, workers or not
    assert_same_result(run, uninterrupted)


@pytest.mark.slow
def test_a_signal_during_validation_lets_it_finish_then_stops_at_the_epoch_boundary_and_resumes_exactly(
        uninterrupted, data_dir):
    """SIGTERM to the group at the second batch of epoch 0's validation, workers on, weight average on (the
    default run's): the run ends (no worker left waiting), the checkpoint holds the finished epoch with its
    raw weights, and the resume (which validates epoch 0 once, as the uninterrupted run did) ends equal."""
    run = uninterrupted.parent / "during_validation"
    proc = recorded(run, "+callbacks.fault._target_=fault_injection.SignalAtStep", f"+callbacks.fault.step={STEPS_PER_EPOCH}",
                    "+callbacks.fault.signal=SIGTERM", "+callbacks.fault.group=true", "+callbacks.fault.phase=validate",
                    "+callbacks.fault.batch=1", f"+callbacks.fault.marker={run.parent / (run.name + '.killed')}",
                    "data.num_workers=2", "data.persistent_workers=true", data_dir=data_dir, new_session=True)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in output, output[-3000:]
    assert f"SIGTERM at global step {STEPS_PER_EPOCH}" in output
    resume(run, data_dir)
    assert batches(run) == batches(uninterrupted)
    assert_same_result(run, uninterrupted)
    assert validations(run) == validations(uninterrupted)  # epoch 0's validation was finished, not lost


def validations(run: Path) -> list[tuple[str, str]]:
    """(epoch, val/acc1) of every validation metrics.csv logged."""
    with (run / "metrics.csv").open() as f:
        return [(row["epoch"], row["val/acc1"]) for row in csv.DictReader(f) if row.get("val/acc1")]


@pytest.mark.slow
def test_ctrl_c_while_testing_the_best_checkpoint_keeps_last_ckpt_and_the_resume_only_evaluates(uninterrupted, data_dir):
    run = uninterrupted.parent / "during_test"
    proc = recorded(run, "+callbacks.fault._target_=fault_injection.SignalAtStep", "+callbacks.fault.step=0",
                    "+callbacks.fault.signal=SIGINT", "+callbacks.fault.group=true", "+callbacks.fault.phase=test",
                    "+callbacks.fault.batch=1", f"+callbacks.fault.marker={run.parent / (run.name + '.killed')}",
                    "data.num_workers=2", data_dir=data_dir, new_session=True)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 130 and "Traceback" not in output, output[-3000:]
    assert "SIGINT while evaluating the best checkpoint" in output
    finished = weights(uninterrupted / "checkpoints" / "last.ckpt")
    assert all(torch.equal(finished[k], v) for k, v in weights(run / "checkpoints" / "last.ckpt").items())
    resume(run, data_dir)
    assert batches(run) == batches(uninterrupted)  # nothing trained again
    assert_same_result(run, uninterrupted)


@pytest.mark.slow
def test_epochs_shortened_by_limit_train_batches_resume_at_the_next_epoch(tmp_path_factory, data_dir):
    """``trainer.limit_train_batches`` ends each epoch before the sampler's order is used up (a shorter
    ImageNet "epoch"): a resume after such an epoch must start the next epoch, not finish this one."""
    root = tmp_path_factory.mktemp("ft_limit")
    shorter = ["trainer.limit_train_batches=6", "trainer.max_epochs=3", "callbacks.last_checkpoint=null",
               "callbacks.step_checkpoint.every_n_train_steps=6", "data.num_workers=2"]  # saved at each epoch end
    reference = root / "reference"
    assert recorded(reference, *shorter, data_dir=data_dir).returncode == 0
    run = root / "killed"
    proc = kill_at(run, 6 + 2, "SIGKILL", *shorter, data_dir=data_dir)  # during epoch 1, after epoch 0's last.ckpt
    assert proc.returncode == -9
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6
    before_kill = batches(run)
    resume(run, data_dir)
    assert before_kill[:6] + batches(run)[len(before_kill):] == batches(reference)  # epochs 1 and 2 as never stopped
    assert_same_result(run, reference)


@pytest.mark.parametrize("sig, status", [("SIGTERM", 0), ("SIGINT", 130)])
def test_a_signal_before_training_starts_ends_with_one_line_and_the_status(sig, status, monkeypatch, capsys):
    import signal
    import time

    from convnetlab import stop_signals

    saved = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(stop_signals, "_training_done", False)
    try:
        stop_signals.stop_cleanly_until_training()
        with pytest.raises(SystemExit) as stopped:
            os.kill(os.getpid(), getattr(signal, sig))
            time.sleep(5)  # importing torch, reading data, building the model...
        assert stopped.value.code == status
        assert capsys.readouterr().err == (f"{sig} before training started: nothing was trained or saved; "
                                           "run the command again to start\n")
        flagged = []  # a trainer's handler in place, calling the one it found as Lightning does: ours stands back
        signal.signal(signal.SIGTERM, lambda n, f: (flagged.append(n), stop_signals._stop(n, f)))
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        assert flagged == [signal.SIGTERM]
        stop_signals.stop_cleanly_until_training()  # the trainer put ours back at teardown
        stop_signals.training_finished()
        with pytest.raises(SystemExit) as stopped:
            os.kill(os.getpid(), getattr(signal, sig))
            time.sleep(5)
        assert stopped.value.code == status and "after training: the checkpoints are saved" in capsys.readouterr().err
    finally:
        signal.signal(signal.SIGTERM, saved[0])
        signal.signal(signal.SIGINT, saved[1])

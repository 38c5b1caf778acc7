"""Shared fixtures: a tiny embedded dataset generated once per session and CLI runners."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from forkserver import ForkServer

REPO = Path(__file__).resolve().parents[1]
# One memory-format cache (module.channels_last=auto) per test session, shared by its CLI runs and in-process
# trainers: runs of one test agree on the format (the first probe wins; the file is locked), a model is probed
# once per session (seconds for a GoogLeNet), and ~/.cache stays untouched. The xdist controller makes it
# before its workers start, so they inherit it; it removes it at exit.
if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get("CONVNETLAB_TEST_SESSION_CACHE"):
    os.environ["CONVNETLAB_CACHE_DIR"] = os.environ["CONVNETLAB_TEST_SESSION_CACHE"]
else:
    os.environ["CONVNETLAB_CACHE_DIR"] = os.environ["CONVNETLAB_TEST_SESSION_CACHE"] = tempfile.mkdtemp(
        prefix="convnetlab-cache-")
    atexit.register(shutil.rmtree, os.environ["CONVNETLAB_CACHE_DIR"], ignore_errors=True)

# A 4-class, 32 px shapes set small enough that a run takes seconds on 2 CPU cores.
TINY_DATA = [
    "data=shapes", "data.num_classes=4", "data.per_class_train=24", "data.per_class_val=8",
    "data.per_class_test=8", "data.batch_size=16", "data.num_workers=0",
]
TINY_MODEL = ["model=resnet18", "model.width=0.125"]


def random_image_loader(n: int = 16, seed: int = 0):
    """Seeded random uint8 32x32 RGB images with 4 labels, batches of 8: for unit tests of training code."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(seed)
    data = TensorDataset(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                         torch.randint(0, 4, (n,), generator=g))
    return DataLoader(data, batch_size=8)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread, and far faster than two when the CPUs are shared."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


def clean_env(home: Path) -> dict:
    """Environment without W&B credentials or a tty, as on CI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(home), WANDB_SILENT="true", PYTHONWARNINGS="ignore", CUDA_VISIBLE_DEVICES="")
    return env


# One fork server per test session: every CLI run is a real process forked from an interpreter that has
# already imported torch, Lightning and convnetlab (see forkserver.py).
CLI = ForkServer()


def pytest_sessionfinish(session, exitstatus):
    CLI.close()


def cli_process(command: str, *args: str, cwd: Path, env: dict | None = None, timeout: float = 600,
                new_session: bool = False) -> subprocess.CompletedProcess:
    """``python -m convnetlab.cli.<command> *args`` as a real process (through the fork server);
    ``new_session``: in a process group of its own, so a test may signal the whole group."""
    return CLI.run(f"convnetlab.cli.{command}", list(args), cwd, env or clean_env(cwd), timeout=timeout,
                   new_session=new_session)


def run_cli(command: str, *overrides: str, cwd: Path, data_dir: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m convnetlab.cli.<command>`` with overrides; fail with its output on error."""
    args = [*overrides, f"paths.data_dir={data_dir}"]
    proc = cli_process(command, *args, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())

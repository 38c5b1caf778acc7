"""One training job's process-wide state, restored when the job ends so the next multirun job starts clean."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

DDP_LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextmanager
def isolated_job(threads: int | None = None) -> Iterator[None]:
    """Run a job with ``threads`` intra-op threads (None: PyTorch's default), then restore the thread count,
    tear down DDP and put back the DDP launch variables.

    Lightning's launcher leaves ``LOCAL_RANK`` & co. in ``os.environ``; the next job in the same process
    would then believe an external launcher started it and wait forever for ranks that never come.
    """
    env_before = {key: os.environ.get(key) for key in DDP_LAUNCH_ENV}
    threads_before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(threads_before)

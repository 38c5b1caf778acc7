"""Complexity measurements: inference speed and peak memory behave as their names say."""

from __future__ import annotations

import subprocess
import sys
import time

import torch
from torch import nn

from convnetlab.analysis.complexity import inference_images_per_second, peak_memory_mb


class _Sleepy(nn.Module):
    """Takes a known time per forward pass, so the throughput is known."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.02)
        return x


def test_inference_throughput_is_batch_size_over_the_time_per_pass():
    model = _Sleepy().train()
    ips = inference_images_per_second(model, torch.zeros(8, 3, 4, 4), warmup=1, iters=5)
    assert 8 / 0.04 < ips <= 8 / 0.02  # sleep(0.02) is a lower bound on the pass time
    assert model.training  # mode restored


def test_peak_memory_grows_when_a_big_tensor_is_touched():
    # In a fresh process; the peak must cover what is resident now plus the new 1 GiB (an earlier,
    # higher peak from imports may hide part of the growth, so compare with the current resident set).
    code = (
        "import re, torch; from convnetlab.analysis.complexity import peak_memory_mb as p; d = torch.device('cpu'); "
        "rss = int(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024; "
        "big = torch.ones(256 * 2**20); print(rss, p(d))"  # 1 GiB of float32, all pages written
    )
    resident, peak = map(float, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                               check=True).stdout.split())
    assert resident + 900 < peak < resident + 1024 + 400

"""Complexity measurements: inference speed and peak memory behave as their names say."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from convnetlab.analysis.complexity import inference_images_per_second, peak_memory_mb


class _Timed(nn.Module):
    """Each forward pass advances a fake clock by the next of ``durations`` seconds, so throughput is known."""

    def __init__(self, durations: list[float]) -> None:
        super().__init__()
        self.now, self.durations = 0.0, list(durations)

    def clock(self) -> float:
        return self.now

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.now += self.durations.pop(0)
        return x


def test_inference_throughput_is_batch_size_over_the_median_time_per_pass(monkeypatch):
    # one warm-up pass (not timed), then five timed passes with one outlier: median 0.03 s
    model = _Timed([9.0, 0.02, 0.03, 0.5, 0.02, 0.04]).train()
    monkeypatch.setattr("convnetlab.analysis.complexity.time", SimpleNamespace(perf_counter=model.clock))
    ips = inference_images_per_second(model, torch.zeros(8, 3, 4, 4), warmup=1, iters=5)
    assert ips == pytest.approx(8 / 0.03) and not model.durations  # every planned pass ran, no more
    assert model.training  # mode restored


def test_inference_throughput_stops_timing_after_max_seconds(monkeypatch):
    model = _Timed([1.0, 2.5, 7.0])  # 3.5 s after two passes: the budget of 3 s is spent
    monkeypatch.setattr("convnetlab.analysis.complexity.time", SimpleNamespace(perf_counter=model.clock))
    ips = inference_images_per_second(model, torch.zeros(8, 3, 4, 4), warmup=0, iters=10, max_seconds=3.0)
    assert ips == pytest.approx(8 / 1.75) and model.durations == [7.0]


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

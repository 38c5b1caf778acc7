"""Training-step throughput with NCHW vs channels-last tensors on this machine's CPU.

Run: python scripts/bench/channels_last.py   (prints a table; ratio > 1 means channels-last is faster)
Measured in one process, alternating the two layouts, median of several repetitions.
"""

from __future__ import annotations

import statistics
import time

import torch

from convnetlab.models import build_model

CASES = [("resnet18", {"width": 0.25}), ("resnet18", {"width": 0.5}), ("vgg11_bn", {"width": 0.25}),
         ("googlenet", {"width": 0.25}), ("lenet5", {"in_channels": 3})]


def step_seconds(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    start = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(images), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main(batch: int = 128, repeats: int = 7) -> None:
    torch.manual_seed(0)
    print(f"{'model':<28} {'NCHW img/s':>11} {'NHWC img/s':>11} {'ratio':>6}")
    for arch, kwargs in CASES:
        model = build_model(arch, 10, input_size=32, **kwargs)
        images, labels = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
        times = {False: [], True: []}
        for _ in range(repeats):
            for channels_last in (False, True):
                fmt = torch.channels_last if channels_last else torch.contiguous_format
                times[channels_last].append(step_seconds(model.to(memory_format=fmt), images.contiguous(memory_format=fmt), labels))
        nchw, nhwc = (batch / statistics.median(times[k][1:]) for k in (False, True))
        name = f"{arch} {kwargs}"
        print(f"{name:<28} {nchw:>11.0f} {nhwc:>11.0f} {nhwc / nchw:>6.2f}")


if __name__ == "__main__":
    main()

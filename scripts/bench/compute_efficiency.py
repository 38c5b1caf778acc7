"""Compute efficiency: achieved training FLOP/s per model against this CPU's measured matmul peak,
in both memory formats (NCHW and channels-last).

Run: python scripts/bench/compute_efficiency.py [--reps 5] [--json FILE]

Peak: the best median rate of repeated float32 matrix multiplies (``torch.mm`` of n x n matrices and
1x1 convolutions, i.e. MKL's and oneDNN's GEMM), with the thread count training uses. Training FLOPs per image: 3 x the forward FLOPs (forward, plus
backward ~ 2 x forward), where forward FLOPs = 2 x the multiply-adds that ``forward_gflops`` reports
in torchvision's convention (weights ``.meta`` ``_ops``). Step time: median of timed SGD steps (forward, backward,
update) on a random batch after warm-up, the two memory formats alternating. Efficiency = achieved /
peak; "NHWC speed-up" says how much faster channels-last trains (> 1: faster). "auto picks" is what
``module.channels_last=auto``'s short start-up probe (``convnetlab.lit.memory_format.probe``, run here
without its cache) chooses for the same model and batch, to check it agrees with this longer measurement.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from convnetlab.analysis.complexity import forward_gflops
from convnetlab.lit import memory_format
from convnetlab.models import build_model

# (label, build_model kwargs, input size, batch): the CPU-sized models of `experiment=mini_ilsvrc` plus
# full-width ResNets, whose convolutions are large enough to be GEMM-bound (ResNet-50 at a small batch
# to keep the run short: 5 GMACs per 64 px image).
CASES = [
    ("LeNet-5 (digits)", {"arch": "lenet5", "in_channels": 1}, 32, 64),
    ("AlexNet (cpu)", {"arch": "alexnet", "width": 0.25, "dropout": 0.0}, 32, 64),
    ("VGG-11-BN (cpu)", {"arch": "vgg11_bn", "width": 0.25, "dropout": 0.0}, 32, 64),
    ("GoogLeNet (cpu)", {"arch": "googlenet", "width": 0.125}, 32, 64),
    ("ResNet-18 w0.25 (default)", {"arch": "resnet18", "width": 0.25}, 32, 64),
    ("ResNet-18 w1", {"arch": "resnet18", "width": 1.0}, 32, 64),
    ("ResNet-50 w1 @64px", {"arch": "resnet50", "width": 1.0}, 64, 8),
]


def _median_rate(fn, flops: float, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return flops / statistics.median(times) / 1e9


def matmul_peak_gflops(reps: int = 7) -> float:
    """The best median float32 matrix-multiply rate of two libraries: MKL's sgemm (``torch.mm`` into a
    preallocated output, n = 1024..3072) and oneDNN's (a 1x1 convolution over channels-last maps is the
    same GEMM). oneDNN's kernels can beat MKL's on a CPU, and convolutions run on oneDNN, so
    ``torch.mm`` alone could understate the peak they can reach."""
    rates = []
    for n in (1024, 2048, 3072):
        a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
        rates.append(_median_rate(lambda: torch.mm(a, b, out=c), 2 * n**3, reps))
    for channels, side, batch in ((512, 32, 16), (1024, 16, 16), (2048, 8, 64)):
        x = torch.randn(batch, channels, side, side).contiguous(memory_format=torch.channels_last)
        w = torch.randn(channels, channels, 1, 1).contiguous(memory_format=torch.channels_last)
        rates.append(_median_rate(lambda: F.conv2d(x, w), 2 * batch * side * side * channels**2, reps))
    return max(rates)


def step_seconds(model: torch.nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                 labels: torch.Tensor) -> float:
    start = time.perf_counter()
    loss = F.cross_entropy(model(images), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def measure(label: str, kwargs: dict, size: int, batch: int, reps: int) -> dict:
    """Achieved training GFLOP/s in both memory formats, alternating them, median over ``reps``."""
    torch.manual_seed(0)
    channels = kwargs.get("in_channels", 3)
    model = build_model(num_classes=10, input_size=size, **kwargs)
    macs = forward_gflops(model, (channels, size, size))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images, labels = torch.randn(batch, channels, size, size), torch.randint(0, 10, (batch,))
    times: dict[bool, list[float]] = {False: [], True: []}
    for rep in range(reps + 1):
        for channels_last in (False, True) if rep % 2 else (True, False):
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            model.to(memory_format=fmt)
            seconds = step_seconds(model, optimizer, images.contiguous(memory_format=fmt), labels)
            if rep > 0:  # repetition 0 warms up both formats
                times[channels_last].append(seconds)
    model.to(memory_format=torch.contiguous_format)
    probe_nchw_ms, probe_last_ms = memory_format.probe(model, (batch, channels, size, size), torch.device("cpu"))
    train_gflop = 3 * 2 * macs * batch  # per step: 3 x forward, forward = 2 x multiply-adds
    nchw, nhwc = (train_gflop / statistics.median(times[k]) for k in (False, True))
    return {"model": label, "input": size, "batch": batch, "forward_gmacs": macs, "nchw_gflops": nchw, "channels_last_gflops": nhwc,
            "channels_last_speedup": nhwc / nchw, "auto_channels_last": probe_last_ms < probe_nchw_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    peak = matmul_peak_gflops()
    rows = [measure(label, kwargs, size, batch, args.reps) for label, kwargs, size, batch in CASES]
    peak_after = matmul_peak_gflops()  # bracket the models: a drifting machine shows up as two peaks
    print(f"matmul peak: {peak:.1f} GFLOP/s before, {peak_after:.1f} after ({torch.get_num_threads()} threads, float32)")
    print(f"{'model':<26} {'fwd GMACs':>9} {'NCHW GFLOP/s':>13} {'NHWC GFLOP/s':>13} {'best/peak':>9} {'NHWC speed-up':>13} {'auto picks':>11}")
    for r in rows:
        best = max(r["nchw_gflops"], r["channels_last_gflops"])
        r["efficiency"] = best / peak
        print(f"{r['model']:<26} {r['forward_gmacs']:>9.4f} {r['nchw_gflops']:>13.1f} {r['channels_last_gflops']:>13.1f} "
              f"{r['efficiency']:>9.1%} {r['channels_last_speedup']:>12.2f}x "
              f"{'NHWC' if r['auto_channels_last'] else 'NCHW':>11}")
    if args.json:
        Path(args.json).write_text(json.dumps({"peak_gflops": peak, "peak_gflops_after": peak_after, "rows": rows},
                                              indent=2))


if __name__ == "__main__":
    main()

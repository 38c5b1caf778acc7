"""The cost of one weight-EMA update on the default model: Lightning's per-tensor ``avg_fn`` (what
``EMAWeightAveraging`` passes to ``AveragedModel``) vs one foreach ``lerp`` (``multi_avg_fn``, what
``convnetlab.callbacks.ema.WeightEMA`` uses), and both next to a training step.

Run: python scripts/bench/ema_update.py [--reps 7] [--updates 100]

Both averages hold the parameters and BatchNorm buffers (``use_buffers=True``, as the callback does) of
the default run's network (ResNet-18 width 0.25, CIFAR stem, channels-last). Each repetition times
``--updates`` updates of each kind in turn, alternating which goes first; medians over ``--reps``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_avg_fn, get_ema_multi_avg_fn

from default_model import default_model_and_batch

DECAY = 0.98


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--updates", type=int, default=100)
    args = parser.parse_args()
    model, images, labels = default_model_and_batch()
    averages = {"per-tensor avg_fn": AveragedModel(model, use_buffers=True, avg_fn=get_ema_avg_fn(DECAY)),
                "foreach multi_avg_fn": AveragedModel(model, use_buffers=True, multi_avg_fn=get_ema_multi_avg_fn(DECAY))}
    optimizer = torch.optim.AdamW(model.parameters(), lr=8e-3)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()

    for average in averages.values():
        for _ in range(3):
            average.update_parameters(model)
    times: dict[str, list[float]] = {name: [] for name in averages}
    steps = []
    for rep in range(args.reps):
        for name in (list(averages) if rep % 2 == 0 else list(averages)[::-1]):
            start = time.perf_counter()
            for _ in range(args.updates):
                averages[name].update_parameters(model)
            times[name].append((time.perf_counter() - start) / args.updates * 1e3)
        start = time.perf_counter()
        for _ in range(5):
            train_step()
        steps.append((time.perf_counter() - start) / 5 * 1e3)
    step = statistics.median(steps)
    tensors = len(list(model.parameters())) + len(list(model.buffers()))
    print(f"{tensors} tensors averaged; training step (batch 64): {step:.1f} ms")
    for name, values in times.items():
        update = statistics.median(values)
        print(f"{name:>22}: {update:.2f} ms per update ({update / step:.1%} of a step)")
    ratio = statistics.median(a / b for a, b in zip(*times.values(), strict=True))
    print(f"per-tensor / foreach: {ratio:.2f}x (median of per-repetition ratios)")


if __name__ == "__main__":
    main()

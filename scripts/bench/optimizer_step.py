"""AdamW implementations on the default model: training-step time with the for-loop (PyTorch's CPU
default), ``foreach=True`` and ``fused=True``.

Run: python scripts/bench/optimizer_step.py [--reps 10] [--steps 5]

The default run's network (ResNet-18 width 0.25, CIFAR stem, 32 px, batch 64, channels-last) in three
copies with the same weights, each with AdamW (lr 8e-3, weight decay 0.05 on weights only, as the
default) in one implementation. Each repetition times ``--steps`` training steps (forward,
cross-entropy, backward, update) of every copy in turn on one fixed random batch, then 20 optimizer
steps alone; medians over ``--reps``; the ratio is taken within each repetition.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from default_model import default_model_and_batch

IMPLEMENTATIONS = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def param_groups(model: torch.nn.Module) -> list[dict]:
    """Weight decay on weights only, as ``module.exclude_norm_and_bias_from_weight_decay`` does."""
    params = list(model.parameters())
    return [{"params": [p for p in params if p.ndim > 1], "weight_decay": 0.05},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    base, images, labels = default_model_and_batch()
    runs = {}
    for name, options in IMPLEMENTATIONS.items():
        model = copy.deepcopy(base)
        runs[name] = (model, torch.optim.AdamW(param_groups(model), lr=8e-3, **options))

    def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()

    for model, optimizer in runs.values():  # warm-up
        for _ in range(3):
            step(model, optimizer)
    step_ms = {name: [] for name in runs}
    update_ms = {name: [] for name in runs}
    for _ in range(args.reps):
        for name, (model, optimizer) in runs.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step(model, optimizer)
            step_ms[name].append((time.perf_counter() - start) / args.steps * 1e3)
            start = time.perf_counter()
            for _ in range(20):
                optimizer.step()
            update_ms[name].append((time.perf_counter() - start) / 20 * 1e3)
    print(f"command: python scripts/bench/optimizer_step.py --reps {args.reps} --steps {args.steps}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| AdamW | training step ms | optimizer step ms | for-loop / this (median) |")
    print("|---|---|---|---|")
    for name in runs:
        ratio = statistics.median(a / b for a, b in zip(step_ms["for-loop"], step_ms[name]))
        print(f"| {name} | {statistics.median(step_ms[name]):.1f} | {statistics.median(update_ms[name]):.2f} | "
              f"{ratio:.3f} |")


if __name__ == "__main__":
    main()

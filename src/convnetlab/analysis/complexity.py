"""Model size and cost: parameters, forward FLOPs in torchvision's convention, inference speed, memory."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def forward_gflops(model: nn.Module, input_shape: tuple[int, int, int]) -> float:
    """GFLOPs of one eval-mode forward pass of a single ``(C, H, W)`` image.

    torchvision's weights ``.meta`` (``_ops``) report multiply-adds, i.e. ``FlopCounterMode`` total / 2, so we
    do the same. The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        image = torch.zeros(1, *input_shape, device=device)
        with FlopCounterMode(display=False) as counter:
            model(image)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2 / 1e9


@torch.no_grad()
def inference_images_per_second(
    model: nn.Module, batch: torch.Tensor, warmup: int = 2, iters: int = 10, max_seconds: float = 3.0
) -> float:
    """Eval-mode forward throughput on ``batch`` (already on the model's device), after ``warmup`` passes.

    The median batch time of up to ``iters`` timed passes (stopping early after ``max_seconds``) is
    used, so one slow pass (another process, a page fault) does not move the number much.
    """
    was_training = model.training
    model.eval()
    sync = torch.cuda.synchronize if batch.device.type == "cuda" else (lambda: None)
    times: list[float] = []
    try:
        for _ in range(warmup):
            model(batch)
        sync()
        budget_start = time.perf_counter()
        while len(times) < max(1, iters) and (not times or time.perf_counter() - budget_start < max_seconds):
            start = time.perf_counter()
            model(batch)
            sync()
            times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return len(batch) / statistics.median(times)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory in MiB: allocated tensors on a CUDA device, else the process's peak resident set.

    On CPU this includes Python, the libraries and decoded data, not only tensors; it is still what
    decides whether a run fits a machine.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB

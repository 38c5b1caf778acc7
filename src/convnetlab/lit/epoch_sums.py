"""The epoch's training loss, top-1 and top-k as running sums on the device.

One small tensor op per step and no host sync: three torchmetrics updates per step were a measurable share
of a small network's step (scripts/bench/overhead.py, LeNet-5 on digits). The image count is a Python int,
so the hot path never copies a number to the device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class TrainEpochSums:
    """Sums of (loss x images, top-1 hits, top-k hits) and the image count since the last ``pop``."""

    def __init__(self, top_k: int) -> None:
        self.top_k = top_k
        self._sums: torch.Tensor | None = None
        self._count = 0

    @torch.no_grad()
    def add(self, logits: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor, n: int) -> None:
        """One batch; soft (N, classes) targets count their most likely class."""
        hard = targets.argmax(dim=1) if targets.ndim == 2 else targets
        hits = logits.detach().topk(self.top_k, dim=1).indices == hard[:, None]
        batch = torch.stack([loss.detach().float() * n, hits[:, 0].sum().float(), hits.any(dim=1).sum().float()])
        self._sums = batch if self._sums is None else self._sums + batch
        self._count += n

    def pop(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor] | None:
        """``{"loss", "acc1", "acck"}`` of the batches added so far (summed over ranks by ``reduce``), then
        start again; None when nothing was added."""
        if self._sums is None:
            return None
        sums = torch.cat([self._sums, self._sums.new_tensor([float(self._count)])])
        if reduce is not None:
            sums = reduce(sums)
        self._sums, self._count = None, 0
        loss, top1, topk = sums[:3] / sums[3].clamp(min=1)
        return {"loss": loss, "acc1": top1, "acck": topk}
